"""Turn a model reference into a :class:`~geometry.classifier.Classifier`, safely.

Accepted references:

- a bundled zoo name (``mnist_lenet_gelu``);
- a TorchScript file (``.pt``/``.ts``/``.jit``/``.pth`` holding ``torch.jit.save`` output);
- a ``torch.export`` program (``.pt2``);
- a state dict as ``.safetensors`` (preferred) or a ``torch.save`` dict of tensors
  (read with ``weights_only=True``), for a zoo architecture or a torchvision one.

Facts a file does not carry (input shape, pixel range, class names, mean/std,
architecture) come from a JSON sidecar (``model.json`` next to ``model.pt``, or
given explicitly) or from keyword arguments, which win.

Nothing from a file runs as Python or native code, and nothing is allocated from
a size the file merely declares. In order, before torch opens anything:

1. the limits in force are read (:mod:`geometry.limits`) and every fact (options,
   sidecar, model card) is checked: types, values, and the input shape against the
   input-element limit;
2. the file's size is checked; a zip archive is inspected member by member by
   :func:`geometry.archive.inspect_archive` (only the members torch writes; no
   native libraries, no pickled objects, storages matching their bytes), a
   safetensors header by :func:`geometry.archive.inspect_safetensors`; the tensor
   elements stored are checked against the parameter limit;
3. for a state dict, ``arch_kwargs`` are checked against the architecture's signature
   and the architecture is built on the ``meta`` device (no memory) and its parameters
   counted against the parameter limit before the real one is built;
4. torch loads the file (``torch.load`` only with ``weights_only=True``; the pickle
   fall-backs inside ``torch.export.load`` raise);
5. the model is probed with a batch of two images: logits must be floating point,
   of shape (2, classes) with at least two classes, and finite.
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
from pathlib import Path
from typing import Any

import torch

from . import limits
from .archive import inspect_archive, inspect_safetensors
from .classifier import Classifier, pick_device, probe_logits
from .errors import GeometryError, ModelLoadError
from .zoo import architecture_parameters, build_architecture, zoo_card, zoo_names, zoo_weights_path

SIDECAR_KEYS = ("input_shape", "pixel_range", "class_names", "mean", "std", "architecture", "arch_kwargs",
                "num_classes", "name", "dataset")
INFORMATIONAL_KEYS = ("activation", "recipe", "seed", "held_out_accuracy", "notes", "robust_accuracy", "attack",
                      "format", "description", "train_size", "held_out_size", "epochs")
MAX_MODEL_BYTES = limits.MODEL_BYTES.default
MAX_SIDECAR_BYTES = 1 * 2**20
MAX_DIMS = 8
MODEL_SUFFIXES = (".safetensors", ".pt2", ".pt", ".pth", ".ts", ".jit", ".bin")
# how each fact is called in messages when it comes from a keyword argument / CLI option
OPTION_LABELS = {"input_shape": "input shape", "pixel_range": "pixel range", "class_names": "class names",
                 "mean": "mean", "std": "std", "architecture": "architecture", "arch_kwargs": "arch_kwargs",
                 "name": "name", "num_classes": "num_classes", "dataset": "dataset"}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _whole(v) -> int | None:
    """An int from an int, an integral float or a string of digits; None for anything else (1.5, True, 'x')."""
    if _is_int(v):
        return v
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    if isinstance(v, str) and v.strip().isdigit():
        return int(v.strip())
    return None


def parse_shape(text: str | list | tuple | None, label: str = "input shape") -> tuple[int, ...] | None:
    """"1,28,28" / "1x28x28" / [1, 28, 28] -> (1, 28, 28); fractions, signs, words and bools are refused."""
    if text is None or text == "":
        return None
    if isinstance(text, str):
        parts: list = [p for p in text.replace("x", ",").replace(" ", "").split(",") if p]
    elif isinstance(text, (list, tuple)):
        parts = list(text)
    else:
        raise GeometryError(f"{label} {text!r} is not a list of whole numbers such as 1,28,28")
    dims = [_whole(p) for p in parts]
    if not dims or any(d is None for d in dims):
        raise GeometryError(f"{label} {text!r} is not a list of whole numbers such as 1,28,28")
    if any(d <= 0 for d in dims):
        raise GeometryError(f"{label} {text!r} must be positive whole numbers such as 1,28,28")
    if len(dims) > MAX_DIMS:
        raise GeometryError(f"{label} {text!r} has {len(dims)} dimensions; at most {MAX_DIMS} are accepted")
    return tuple(dims)


def parse_range(text: str | list | tuple | None, label: str = "pixel range") -> tuple[float, float] | None:
    """"0,1" / [0, 255] -> (0.0, 1.0); both finite, low < high."""
    if text is None or text == "":
        return None
    if isinstance(text, str):
        parts: list = text.split(",")
    elif isinstance(text, (list, tuple)):
        parts = list(text)
    else:
        parts = [text]
    try:
        if len(parts) != 2 or any(isinstance(p, bool) or not isinstance(p, (int, float, str)) for p in parts):
            raise ValueError
        lo, hi = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise GeometryError(f"{label} {text!r} must be two numbers such as 0,1") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise GeometryError(f"{label} {text!r} must be finite numbers such as 0,1")
    if not lo < hi:
        raise GeometryError(f"{label} {text!r} must have low < high")
    return lo, hi


def parse_classes(text: str | list | tuple | None, label: str = "class names") -> list[str] | None:
    """"cat,dog" or a list -> names. Never reads a file (the CLI reads ``--classes FILE`` itself)."""
    if text is None or text == "":
        return None
    if isinstance(text, (list, tuple)):
        if not all(isinstance(t, (str, int, float)) and not isinstance(t, bool) for t in text):
            raise GeometryError(f"{label} must be a list of names (strings), got {str(text)[:80]}")
        names = [str(t) for t in text]
    elif isinstance(text, str):
        names = [t.strip() for t in text.split(",") if t.strip()]
    else:
        raise GeometryError(f"{label} must be a list of names or comma-separated text, got {type(text).__name__}")
    return names or None


def read_class_file(path: str | Path) -> list[str]:
    """Names from a ``.txt`` file (one a line) or a ``.json`` list, at most 1 MiB (the CLI's ``--classes FILE``)."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_SIDECAR_BYTES:
            raise GeometryError(f"class-name file {p.name} is larger than {MAX_SIDECAR_BYTES // 2**20} MiB")
        text = p.read_text()
        names = json.loads(text) if p.suffix == ".json" else [ln.strip() for ln in text.splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GeometryError(f"class-name file {p.name} cannot be read ({type(exc).__name__}); give one name a line "
                            "(.txt) or a JSON list") from None
    if not isinstance(names, list):
        raise GeometryError(f"class-name file {p.name} must hold a JSON list of names")
    return parse_classes(names, f"class-name file {p.name}") or []


def _parse_stats(value, label: str) -> list[float] | None:
    """mean/std: a number or a list of finite numbers."""
    if value is None:
        return None
    vals = value if isinstance(value, (list, tuple)) else [value]
    if not vals or len(vals) > 64 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        raise GeometryError(f"{label} must be a number or a list of numbers (one per channel) such as "
                            f"[0.5, 0.5, 0.5], got {str(value)[:80]}")
    out = [float(v) for v in vals]
    if not all(math.isfinite(v) for v in out):
        raise GeometryError(f"{label} must be finite numbers, got {str(value)[:80]}")
    return out


def _parse_arch_kwargs(value, label: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise GeometryError(f"{label} must be an object of keyword arguments such as {{\"width\": 32}}, "
                            f"got {str(value)[:80]}")
    for k, v in value.items():
        scalars = (str, int, float, bool, type(None))
        if not (isinstance(v, scalars) or (isinstance(v, list) and all(isinstance(x, scalars) for x in v))):
            raise GeometryError(f"{label}: {k!r} must be a number, string, boolean or a list of them, "
                                f"got {str(v)[:80]}")
    return dict(value)


def _check_facts(facts: dict, where: str) -> dict:
    """Check and normalise the facts from one source; ``where`` prefixes field names ("sidecar m.json: ")."""
    def name(key):
        return f"{where}{key}" if where else OPTION_LABELS.get(key, key)

    out = dict(facts)
    if out.get("input_shape") is not None:
        out["input_shape"] = parse_shape(out["input_shape"], name("input_shape"))
    if out.get("pixel_range") is not None:
        out["pixel_range"] = parse_range(out["pixel_range"], name("pixel_range"))
    if out.get("class_names") is not None:
        out["class_names"] = parse_classes(out["class_names"], name("class_names"))
    for key in ("mean", "std"):
        if out.get(key) is not None:
            out[key] = _parse_stats(out[key], name(key))
    if out.get("std") is not None and any(s <= 0 for s in out["std"]):
        raise GeometryError(f"{name('std')} must be positive, got {out['std']}")
    if out.get("arch_kwargs") is not None:
        out["arch_kwargs"] = _parse_arch_kwargs(out["arch_kwargs"], name("arch_kwargs"))
    for key in ("architecture", "name", "dataset"):
        if out.get(key) is not None and not (isinstance(out[key], str) and 0 < len(out[key]) <= 200):
            raise GeometryError(f"{name(key)} must be a short text, got {str(out[key])[:80]}")
    if out.get("num_classes") is not None:
        n = _whole(out["num_classes"])
        if n is None or n < 2 or isinstance(out["num_classes"], str):
            raise GeometryError(f"{name('num_classes')} must be a whole number >= 2, got {out['num_classes']!r}")
        out["num_classes"] = n
    return out


def _check_input_limit(facts: dict, source: dict, limit: int) -> None:
    shape = facts.get("input_shape")
    if shape is not None:
        limits.check_input_shape(tuple(shape), source.get("input_shape", "input shape"), limit)


def read_sidecar(path: str | Path) -> dict:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise ModelLoadError(f"sidecar {path.name} is larger than {MAX_SIDECAR_BYTES // 2**20} MiB; it should "
                                 "hold a few keys such as input_shape, pixel_range, class_names")
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"sidecar {path.name} is not valid JSON ({detail}); it should hold keys such as "
                             "input_shape, pixel_range, class_names") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"sidecar {path.name} must be a JSON object with keys such as input_shape")
    unknown = set(data) - set(SIDECAR_KEYS) - set(INFORMATIONAL_KEYS)
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


def _net_from_state_dict(path: Path, facts: dict, param_limit: int) -> torch.nn.Module:
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
    architecture_parameters(arch, int(num_classes), facts.get("arch_kwargs"), param_limit)
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
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        if "warnings above" in detail:  # torch logged the real cause; the CLI shows it with --verbose
            detail = "torch could not deserialize the program (--verbose shows torch's own report)"
        raise ModelLoadError(f"{path.name} is not a loadable torch.export program ({type(exc).__name__}"
                             f"{': ' + detail if detail else ''}); it may be truncated or corrupt") from None
    try:
        return ep.module()
    except Exception as exc:
        raise ModelLoadError(f"{path.name}: the torch.export program cannot be turned into a module "
                             f"({type(exc).__name__}); it may be corrupt") from None


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _load_net(path: Path, facts: dict, device, param_limit: int) -> torch.nn.Module:
    if not path.exists():
        raise ModelLoadError(f"model file {str(path)!r} does not exist; give a zoo name ({', '.join(zoo_names())}) "
                             "or a path")
    if not path.is_file():
        raise ModelLoadError(f"{str(path)!r} is not a file; give a model file or a zoo name")
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{path.name} is empty")
    byte_limit = limits.max_model_bytes()
    if size > byte_limit:
        raise ModelLoadError(f"{path.name} is {size:,} bytes; the model-file limit is {byte_limit:,} bytes (raise it "
                             f"deliberately with {limits.MODEL_BYTES.env})")
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ModelLoadError(f"unsupported model file type {suffix!r}; use .safetensors (+ architecture), a "
                             "TorchScript .pt, or a torch.export .pt2")
    if suffix == ".safetensors":
        header = inspect_safetensors(path)
        limits.check_parameters(header.stored_elements, f"{path.name} (tensors stored)", param_limit)
        return _net_from_state_dict(path, facts, param_limit)
    if not _is_zip(path):
        raise ModelLoadError(f"{path.name} is not a PyTorch archive (not a zip file); it may be truncated, or "
                             "saved with an old pickle format, which is never loaded")
    info = inspect_archive(path, total_limit=byte_limit, expect="export" if suffix == ".pt2" else None)
    limits.check_parameters(info.stored_elements, f"{path.name} (tensors stored)", param_limit)
    if info.kind == "torchscript":
        return _net_from_torchscript(path, device)
    if info.kind == "export":
        return _net_from_export(path)
    return _net_from_state_dict(path, facts, param_limit)


def load_classifier(ref: str | Path, *, input_shape=None, pixel_range=None, class_names=None, mean=None, std=None,
                    architecture: str | None = None, arch_kwargs: dict | None = None, sidecar: str | Path | None = None,
                    device=None, dtype: torch.dtype = torch.float32, name: str | None = None,
                    max_input_elements: int | None = None, max_parameters: int | None = None) -> Classifier:
    """Load a classifier from a zoo name or a model file.

    Keyword arguments override the sidecar, which overrides what a zoo card says.
    ``device=None`` picks CUDA when available; ``dtype=torch.float64`` for exact tests.
    ``max_input_elements`` / ``max_parameters`` override the limits of :mod:`geometry.limits`
    (and their environment variables) for this call.
    Raises :class:`ModelLoadError` (a ``ValueError``) with a message naming the problem.
    """
    in_limit = limits.max_input_elements(max_input_elements)
    param_limit = limits.max_parameters(max_parameters)
    dev = pick_device(device)
    if dtype not in (torch.float32, torch.float64):
        raise ModelLoadError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    ref_s = str(ref)
    given = {k: v for k, v in dict(input_shape=input_shape, pixel_range=pixel_range, class_names=class_names, mean=mean,
                                   std=std, architecture=architecture, arch_kwargs=arch_kwargs, name=name).items()
             if v is not None and v != ""}
    overrides = _check_facts(given, "")
    source = {k: OPTION_LABELS[k] for k in overrides}
    path = Path(ref_s)
    if ref_s in zoo_names() and not path.exists():
        card = zoo_card(ref_s)
        facts = _check_facts({k: v for k, v in card.items() if k in SIDECAR_KEYS}, f"model card {ref_s}: ")
        facts.update(overrides)
        _check_input_limit(facts, {**{k: f"model card {ref_s}: {k}" for k in facts}, **source}, in_limit)
        net = _net_from_state_dict(zoo_weights_path(ref_s), facts, param_limit)
    else:
        if not path.suffix and not path.exists():
            raise ModelLoadError(f"{ref_s!r} is neither a bundled model ({', '.join(zoo_names()) or 'none'}) nor a "
                                 "model file")
        facts = {}
        side = Path(sidecar) if sidecar else path.with_suffix(".json")
        if sidecar and not side.is_file():
            raise ModelLoadError(f"sidecar {str(side)!r} does not exist; give a JSON file with keys such as "
                                 "input_shape")
        if side.is_file():
            where = f"sidecar {side.name}: "
            facts.update(_check_facts(read_sidecar(side), where))
            origin = {k: f"{where}{k}" for k in facts}
        else:
            origin = {}
        facts.update(overrides)
        _check_input_limit(facts, {**origin, **source}, in_limit)
        facts.setdefault("name", path.stem)
        net = _load_net(path, facts, dev, param_limit)
        card = {k: v for k, v in facts.items() if k in SIDECAR_KEYS}
    return _finish(net, facts, dev, dtype, card)


def _finish(net: torch.nn.Module, facts: dict, device, dtype, card: dict) -> Classifier:
    shape = facts.get("input_shape")
    if shape is None:
        raise ModelLoadError("the model does not say its input shape; pass --input-shape C,H,W (e.g. 1,28,28) or "
                             "put input_shape in the sidecar JSON")
    shape = tuple(shape)
    pixel_range = facts.get("pixel_range") or (0.0, 1.0)
    names = facts.get("class_names")
    mean, std = facts.get("mean"), facts.get("std")
    if (mean is None) != (std is None):
        raise ModelLoadError("give both mean and std for normalisation, or neither")
    if mean is not None and len(shape) >= 2:
        channels = shape[0]
        for key, vals in (("mean", mean), ("std", std)):
            if len(vals) not in (1, channels):
                raise ModelLoadError(f"{key} has {len(vals)} values but the input has {channels} channels; give one "
                                     "value, or one per channel")
    try:
        net = net.to(device=device, dtype=dtype)
    except Exception as exc:
        raise ModelLoadError(f"the model cannot be moved to {device}/{dtype} ({type(exc).__name__})") from None
    if names is None:
        try:
            n = probe_logits(net, shape, pixel_range, device, dtype)
        except GeometryError as exc:
            raise ModelLoadError(str(exc)) from None
        names = [str(i) for i in range(n)]
    try:
        clf = Classifier.from_module(net, shape, names, pixel_range=pixel_range, mean=mean, std=std, device=device,
                                     dtype=dtype, name=str(facts.get("name", "model")), dataset=facts.get("dataset"),
                                     card=card)
        clf.check_output()
    except ModelLoadError:
        raise
    except GeometryError as exc:
        raise ModelLoadError(str(exc)) from None
    return clf
