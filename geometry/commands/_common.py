"""Options and helpers every CLI sub-command shares: the model, the image, saving arrays."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..classifier import Classifier
from ..errors import GeometryError
from ..images import ImageInput, load_image
from ..loading import load_classifier
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
    g.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    g.add_argument("--float64", action="store_true", help="compute in float64")


def add_image_arguments(p: argparse.ArgumentParser, flag: str = "--image", default: str | None = "gallery:0:0") -> None:
    p.add_argument(flag, default=default,
                   help="PNG/JPEG, .npy, or gallery:CLASS:INDEX (held-out images of the model's dataset)"
                        + (f"; default {default}" if default else ""))


def model_from_args(args) -> Classifier:
    return load_classifier(args.model, input_shape=args.input_shape, pixel_range=args.pixel_range,
                           class_names=args.classes, architecture=args.architecture, sidecar=args.sidecar,
                           device=args.device, dtype=torch.float64 if args.float64 else torch.float32)


def image_from_args(args, clf: Classifier, flag: str = "image") -> ImageInput:
    ref = getattr(args, flag)
    if ref is None:
        raise GeometryError(f"--{flag.replace('_', '-')} is required")
    return load_image(ref, clf)


def save_npz(path: str | None, **arrays) -> str | None:
    """Write arrays (tensors are moved to NumPy) to ``path`` (.npz); returns the path written."""
    if not path:
        return None
    p = Path(path)
    if p.suffix != ".npz":
        raise GeometryError(f"--save must name a .npz file, got {path!r}")
    if p.parent and not p.parent.exists():
        raise GeometryError(f"folder {str(p.parent)!r} for --save does not exist")
    out = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
           for k, v in arrays.items() if v is not None}
    np.savez_compressed(p, **out)
    return str(p)
