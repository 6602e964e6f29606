"""Turn a model reference into a :class:`~geometry.classifier.Classifier`, safely.

Accepted references:

- a bundled zoo name (``mnist_lenet_gelu``);
- a TorchScript file (``.pt``/``.ts``/``.jit``/``.pth`` holding ``torch.jit.save`` output);
- a ``torch.export`` program (``.pt2``);
- a state dict as ``.safetensors`` (preferred) or a ``torch.save`` dict of tensors
  (read with ``weights_only=True``), for a zoo architecture or a torchvision one.

Facts a file does not carry (input shape, pixel range, class names, mean/std,
architecture) come from a JSON sidecar (``model.json`` next to ``model.pt``, or
given explicitly) or from keyword arguments, which win. No uploaded file is ever
unpickled: ``torch.load`` runs with ``weights_only=True`` only, and loading a
``.pt2`` refuses the pickle fallbacks inside ``torch.export.load``.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .classifier import Classifier, pick_device
from .errors import GeometryError, ModelLoadError
from .zoo import build_architecture, zoo_card, zoo_names, zoo_weights_path

SIDECAR_KEYS = ("input_shape", "pixel_range", "class_names", "mean", "std", "architecture", "arch_kwargs",
                "num_classes", "name", "dataset")
MAX_MODEL_BYTES = 512 * 2**20


def parse_shape(text: str | list | tuple | None) -> tuple[int, ...] | None:
    """"1,28,28" / "1x28x28" / [1, 28, 28] -> (1, 28, 28)."""
    if text is None or text == "":
        return None
    if isinstance(text, str):
        parts = [p for p in text.replace("x", ",").replace(" ", "").split(",") if p]
    else:
        parts = list(text)
    try:
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise GeometryError(f"input shape {text!r} is not a list of integers such as 1,28,28") from None
    if not shape or any(s <= 0 for s in shape):
        raise GeometryError(f"input shape {text!r} must be positive integers such as 1,28,28")
    return shape


def parse_range(text: str | list | tuple | None) -> tuple[float, float] | None:
    """"0,1" / [0, 255] -> (0.0, 1.0)."""
    if text is None or text == "":
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        lo, hi = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise GeometryError(f"pixel range {text!r} must be two numbers such as 0,1") from None
    if not lo < hi:
        raise GeometryError(f"pixel range {text!r} must have low < high")
    return lo, hi


def parse_classes(text: str | list | None) -> list[str] | None:
    """"cat,dog" / a path to a text file with one name a line / a list -> names."""
    if text is None or text == "":
        return None
    if isinstance(text, (list, tuple)):
        return [str(t) for t in text]
    p = Path(text)
    if p.suffix in (".txt", ".json") and p.exists():
        if p.suffix == ".json":
            return [str(t) for t in json.loads(p.read_text())]
        return [line.strip() for line in p.read_text().splitlines() if line.strip()]
    return [t.strip() for t in text.split(",") if t.strip()]


def read_sidecar(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"sidecar {path.name} is not valid JSON ({exc}); it should hold keys such as "
                             "input_shape, pixel_range, class_names") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"sidecar {path.name} must be a JSON object with keys such as input_shape")
    unknown = set(data) - set(SIDECAR_KEYS) - {"activation", "recipe", "seed", "held_out_accuracy", "notes",
                                               "robust_accuracy", "attack", "format", "description", "train_size",
                                               "held_out_size", "epochs"}
    if unknown:
        raise ModelLoadError(f"sidecar {path.name} has unknown keys {sorted(unknown)}; allowed: {', '.join(SIDECAR_KEYS)}")
    return data


@contextlib.contextmanager
def _refuse_unpickling():
    """Inside this block torch.load is forced to weights_only=True and raw pickle loads raise."""
    import torch.export.pt2_archive._package as pkg

    real_load = torch.load

    def safe_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    class _NoPickle:
        def __getattr__(self, name):
            if name in ("loads", "load"):
                raise ModelLoadError("the .pt2 archive holds pickled Python objects, which are never loaded; "
                                     "export a model whose constants are plain tensors")
            return getattr(pickle, name)

    saved = (torch.load, pkg.pickle, torch._C._pickle_load_obj)

    def no_obj(*a, **k):
        raise ModelLoadError("the .pt2 archive holds pickled script objects, which are never loaded")

    torch.load, pkg.pickle, torch._C._pickle_load_obj = safe_load, _NoPickle(), no_obj
    try:
        yield
    finally:
        torch.load, pkg.pickle, torch._C._pickle_load_obj = saved


def _is_zip(path: Path) -> bool:
    return zipfile.is_zipfile(path)


def _zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as z:
        return z.namelist()


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"{path.name} is not a readable safetensors file ({exc}); it may be truncated "
                                 "or not a model") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(f"{path.name} holds pickled Python objects, which are never loaded for safety "
                             f"({str(exc).splitlines()[0][:120]}); save a state dict as safetensors, or the model "
                             "with torch.jit.save or torch.export.save") from None
    except Exception as exc:
        raise ModelLoadError(f"{path.name} could not be read as a PyTorch file ({type(exc).__name__}); it may be "
                             "truncated or not a model") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelLoadError(f"{path.name} is not a state dict of tensors; save model.state_dict() as safetensors")
    return obj


def _net_from_state_dict(path: Path, facts: dict) -> torch.nn.Module:
    arch = facts.get("architecture")
    if not arch:
        raise ModelLoadError(f"{path.name} holds only weights; name the architecture (--architecture, e.g. lenet "
                             "or resnet18, or 'architecture' in the sidecar JSON)")
    state = _load_state_dict(path)
    num_classes = facts.get("num_classes") or (len(facts["class_names"]) if facts.get("class_names") else None)
    if num_classes is None:
        # the last 2-D weight's rows are the number of logits in every architecture we build
        mats = [v for v in state.values() if v.dim() == 2]
        if not mats:
            raise ModelLoadError(f"cannot tell the number of classes of {path.name}; pass --classes")
        num_classes = mats[-1].shape[0]
    net = build_architecture(arch, int(num_classes), facts.get("arch_kwargs"))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).split("\n")[0:3]
        raise ModelLoadError(f"the weights in {path.name} do not fit architecture {arch!r}: "
                             f"{' '.join(s.strip() for s in first)[:300]}") from None
    return net


def _net_from_torchscript(path: Path, device) -> torch.nn.Module:
    try:
        return torch.jit.load(str(path), map_location=device)
    except Exception as exc:
        raise ModelLoadError(f"{path.name} is not a loadable TorchScript file ({str(exc).splitlines()[0][:160]}); "
                             "it may be truncated or not a model") from None


def _net_from_export(path: Path) -> torch.nn.Module:
    try:
        with _refuse_unpickling():
            ep = torch.export.load(str(path))
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{path.name} is not a loadable torch.export program ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:160] if str(exc) else ''}); it may be truncated") from None
    return ep.module()


def _load_net(path: Path, facts: dict, device) -> torch.nn.Module:
    if not path.exists():
        raise ModelLoadError(f"model file {str(path)!r} does not exist; give a zoo name ({', '.join(zoo_names())}) "
                             "or a path")
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{path.name} is empty")
    if size > MAX_MODEL_BYTES:
        raise ModelLoadError(f"{path.name} is {size / 2**20:.0f} MiB; the limit is {MAX_MODEL_BYTES / 2**20:.0f} MiB")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _net_from_state_dict(path, facts)
    if suffix == ".pt2":
        return _net_from_export(path)
    if suffix in (".pt", ".pth", ".ts", ".jit", ".bin"):
        if not _is_zip(path):
            raise ModelLoadError(f"{path.name} is not a PyTorch archive (not a zip file); it may be truncated, or "
                                 "saved with an old pickle format, which is never loaded")
        names = _zip_names(path)
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return _net_from_torchscript(path, device)
        if any(n.endswith("serialized_exported_program.json") or "/models/" in n for n in names):
            return _net_from_export(path)
        return _net_from_state_dict(path, facts)
    raise ModelLoadError(f"unsupported model file type {suffix!r}; use .safetensors (+ architecture), a TorchScript "
                         ".pt, or a torch.export .pt2")


def load_classifier(ref: str | Path, *, input_shape=None, pixel_range=None, class_names=None, mean=None, std=None,
                    architecture: str | None = None, arch_kwargs: dict | None = None, sidecar: str | Path | None = None,
                    device=None, dtype: torch.dtype = torch.float32, name: str | None = None) -> Classifier:
    """Load a classifier from a zoo name or a model file.

    Keyword arguments override the sidecar, which overrides what a zoo card says.
    ``device=None`` picks CUDA when available; ``dtype=torch.float64`` for exact tests.
    Raises :class:`ModelLoadError` (a ``ValueError``) with a message naming the problem.
    """
    dev = pick_device(device)
    ref_s = str(ref)
    overrides: dict[str, Any] = {k: v for k, v in dict(
        input_shape=parse_shape(input_shape), pixel_range=parse_range(pixel_range),
        class_names=parse_classes(class_names), mean=mean, std=std, architecture=architecture,
        arch_kwargs=arch_kwargs, name=name).items() if v is not None}
    path = Path(ref_s)
    if ref_s in zoo_names() and not path.exists():
        facts = dict(zoo_card(ref_s))
        facts.update(overrides)
        net = _net_from_state_dict(zoo_weights_path(ref_s), facts)
        card = zoo_card(ref_s)
    else:
        if not path.suffix and not path.exists():
            raise ModelLoadError(f"{ref_s!r} is neither a bundled model ({', '.join(zoo_names()) or 'none'}) nor a "
                                 "model file")
        facts = {}
        side = Path(sidecar) if sidecar else path.with_suffix(".json")
        if side.exists():
            facts.update(read_sidecar(side))
        facts.update(overrides)
        facts.setdefault("name", path.stem)
        net = _load_net(path, facts, dev)
        card = {k: v for k, v in facts.items() if k in SIDECAR_KEYS}
    return _finish(net, facts, dev, dtype, card)


def _finish(net: torch.nn.Module, facts: dict, device, dtype, card: dict) -> Classifier:
    shape = parse_shape(facts.get("input_shape"))
    if shape is None:
        raise ModelLoadError("the model does not say its input shape; pass --input-shape C,H,W (e.g. 1,28,28) or "
                             "put input_shape in the sidecar JSON")
    pixel_range = parse_range(facts.get("pixel_range")) or (0.0, 1.0)
    names = parse_classes(facts.get("class_names"))
    try:
        net = net.to(device=device, dtype=dtype)
    except Exception as exc:
        raise ModelLoadError(f"the model cannot be moved to {device}/{dtype} ({exc})") from None
    if names is None:
        with torch.no_grad():
            try:
                out = net(torch.full((1, *shape), sum(pixel_range) / 2, device=device, dtype=dtype))
            except Exception as exc:
                raise ModelLoadError(f"the model failed on an input of shape {(1, *shape)} ({type(exc).__name__}); "
                                     "check --input-shape") from None
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise ModelLoadError("the model does not return (batch, classes) logits; it is not a classifier")
        names = [str(i) for i in range(out.shape[1])]
    mean, std = facts.get("mean"), facts.get("std")
    clf = Classifier.from_module(net, shape, names, pixel_range=pixel_range, mean=mean, std=std, device=device,
                                 dtype=dtype, name=str(facts.get("name", "model")), dataset=facts.get("dataset"),
                                 card=card)
    try:
        clf.check_output()
    except GeometryError as exc:
        raise ModelLoadError(str(exc)) from None
    return clf
