"""Options and helpers every CLI sub-command shares: the model, the image, saving arrays."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import numpy as np
import torch

from .. import limits
from ..classifier import Classifier, pick_device
from ..errors import GeometryError
from ..images import ImageInput, load_image
from ..loading import load_classifier, read_class_file
from ..zoo import DEFAULT_MODEL


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"zoo name or model file (.safetensors, TorchScript .pt, torch.export .pt2); default {DEFAULT_MODEL}")
    g.add_argument("--input-shape", help="C,H,W when the file does not say (e.g. 1,28,28)")
    g.add_argument("--pixel-range", help="low,high of valid pixels (default 0,1)")
    g.add_argument("--classes", help="comma-separated class names, or a .txt/.json file of names")
    g.add_argument("--architecture", help="architecture for a state dict: lenet, mlp, or a torchvision name")
    g.add_argument("--sidecar", help="JSON with input_shape, pixel_range, class_names, mean, std, architecture")
    g.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    g.add_argument("--float64", action="store_true", help="compute in float64")
    g.add_argument("--max-input-elements", type=int, default=None, metavar="N",
                   help=f"refuse inputs with more than N elements (C*H*W; default {limits.INPUT_ELEMENTS.default:,} "
                        f"or ${limits.INPUT_ELEMENTS.env})")
    g.add_argument("--max-parameters", type=int, default=None, metavar="N",
                   help=f"refuse models with more than N parameters (default {limits.PARAMETERS.default:,} or "
                        f"${limits.PARAMETERS.env})")


def add_ray_argument(p) -> None:
    """``--ray auto|ADDRESS`` for the commands that loop over images or pairs (geometry.distributed, docs/ray.md)."""
    p.add_argument("--ray", metavar="auto|ADDRESS", default=None,
                   help="run the loops over images and pairs on Ray (actors that load the model once each, one CPU "
                        "each, a GPU share on CUDA; same numbers as a local run): auto = the running cluster, else a "
                        "local one for this command; or a cluster's address. Needs requirements-ray.txt "
                        "(default: everything runs in this process)")


def model_ref_from_args(args):
    """The :class:`geometry.executor.ModelRef` Ray workers load: the bundled name or model file and its options."""
    from ..executor import ModelRef
    from ..zoo import zoo_names

    if args.model not in zoo_names() and not Path(args.model).is_file():
        raise GeometryError(f"--ray needs the model as a bundled name or a model file; {args.model!r} is neither")
    return ModelRef.create(args.model, input_shape=args.input_shape, pixel_range=args.pixel_range,
                           class_names=_classes_arg(args.classes), architecture=args.architecture,
                           sidecar=args.sidecar, max_input_elements=getattr(args, "max_input_elements", None),
                           max_parameters=getattr(args, "max_parameters", None))


def distributed_from_args(args):
    """The context the command runs in: its loops on Ray with ``--ray``, else in this process."""
    from .. import distributed

    address = getattr(args, "ray", None)
    if address is None:
        return distributed.backend(None)
    return distributed.backend(address, model=model_ref_from_args(args))


def add_image_arguments(p: argparse.ArgumentParser, flag: str = "--image", default: str | None = "gallery:0:0") -> None:
    p.add_argument(flag, default=default,
                   help="PNG/JPEG, .npy, or gallery:CLASS:INDEX (held-out images of the model's dataset)"
                        + (f"; default {default}" if default else ""))


def _classes_arg(text: str | None):
    """``--classes``: comma-separated names, or a .txt/.json file of names."""
    if text and Path(text).suffix in (".txt", ".json") and Path(text).is_file():
        return read_class_file(text)
    return text


def model_from_args(args) -> Classifier:
    return load_classifier(args.model, input_shape=args.input_shape, pixel_range=args.pixel_range,
                           class_names=_classes_arg(args.classes), architecture=args.architecture,
                           sidecar=args.sidecar, device=args.device,
                           dtype=torch.float64 if args.float64 else torch.float32,
                           max_input_elements=getattr(args, "max_input_elements", None),
                           max_parameters=getattr(args, "max_parameters", None))


def check_save_path(path: str | None, option: str = "--save", suffix: str = ".npz") -> None:
    """Refuse, before any work, a ``--save`` target that cannot be written: wrong suffix, a missing or unwritable
    folder, or an existing folder/special file in its place."""
    if not path:
        return
    p = Path(path)
    if p.suffix != suffix:
        raise GeometryError(f"{option} must name a {suffix} file, got {path!r}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise GeometryError(f"folder {str(parent)!r} for {option} does not exist; create it first")
    if p.exists() and not p.is_file():
        raise GeometryError(f"{option} {path!r} exists and is not a regular file")
    if not os.access(parent, os.W_OK | os.X_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise GeometryError(f"{option} {path!r} cannot be written (no permission)")


def check_out_folder(path: str | None, option: str = "--out") -> None:
    """Refuse, before any work, an output folder that is empty text (e.g. ``--out "$UNSET"``, which would otherwise
    fall back to the default folder and overwrite it), an existing file, or sits where nothing can be created."""
    if path is None:
        return
    if not str(path).strip():
        raise GeometryError(f"{option} is empty; give a folder for the report (or leave {option} out for the default)")
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise GeometryError(f"{option} {path!r} is an existing file, not a folder; give a folder for the report")
        if not os.access(p, os.W_OK | os.X_OK):
            raise GeometryError(f"{option} {path!r} is a folder this user cannot write to")
        return
    ancestor = p.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise GeometryError(f"{option} {path!r} cannot be created: {str(ancestor)!r} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise GeometryError(f"{option} {path!r} cannot be created: {str(ancestor)!r} is not writable")


def positive(value, option: str, integer: bool = False, allow_zero: bool = False) -> None:
    """Refuse a non-positive (or non-finite) option value with one line naming the option."""
    if value is None:
        return
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        kind = "integer" if integer else "number"
        raise GeometryError(f"{option} must be a {'non-negative' if allow_zero else 'positive'} {kind}, got {value}")


def validate_common(args) -> None:
    """Checks shared by every sub-command, run before the model is loaded: the device, the limits, ``--save``."""
    if getattr(args, "device", None) is not None:
        pick_device(args.device)
    if getattr(args, "max_input_elements", None) is not None:
        limits.max_input_elements(args.max_input_elements)
    if getattr(args, "max_parameters", None) is not None:
        limits.max_parameters(args.max_parameters)
    limits.max_input_elements()
    limits.max_parameters()
    if getattr(args, "save", None):
        check_save_path(args.save)
    if getattr(args, "sidecar", None) and not Path(args.sidecar).is_file():
        raise GeometryError(f"--sidecar {args.sidecar!r} does not exist; give a JSON file with keys such as "
                            "input_shape")
    if getattr(args, "ray", None) is not None:
        from ..distributed import check_ray_setting, probe_address

        check_ray_setting(args.ray)
        model_ref_from_args(args)
        probe_address(args.ray)


def image_from_args(args, clf: Classifier, flag: str = "image") -> ImageInput:
    ref = getattr(args, flag)
    if ref is None:
        raise GeometryError(f"--{flag.replace('_', '-')} is required")
    return load_image(ref, clf)


def save_npz(path: str | None, **arrays) -> str | None:
    """Write arrays (tensors are moved to NumPy) to ``path`` (.npz); returns the path written."""
    if not path:
        return None
    check_save_path(path)
    p = Path(path)
    out = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
           for k, v in arrays.items() if v is not None}
    np.savez_compressed(p, **out)
    return str(p)
