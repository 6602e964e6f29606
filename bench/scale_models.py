"""Random-weight torchvision classifiers loaded the way a user loads one: a safetensors state dict plus a JSON
sidecar, through :func:`geometry.loading.load_classifier` (nothing is downloaded: ``weights=None``).

Used by bench/bench_memory.py and scripts/gpu_check.py. Also an image to analyse at that size.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def random_torchvision(arch: str = "resnet18", side: int = 224, seed: int = 0, device="cpu",
                       num_classes: int = 1000, folder: str | Path | None = None):
    """``arch`` (a torchvision classifier) with random weights (seed), saved as ``<folder>/<arch>.safetensors`` +
    ``<arch>.json`` (input 3 x side x side, pixels in [0, 1], ImageNet mean/std) and loaded back on ``device``."""
    import torchvision
    from safetensors.torch import save_file

    from geometry.loading import load_classifier

    torch.manual_seed(seed)
    net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes).eval()
    folder = Path(folder or tempfile.mkdtemp(prefix="bg-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    del net
    path.with_suffix(".json").write_text(json.dumps({
        "architecture": arch, "input_shape": [3, side, side], "pixel_range": [0, 1],
        "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "num_classes": num_classes, "name": f"{arch}-random"}))
    return load_classifier(path, device=device)


def smooth_image(side: int, seed: int = 0, channels: int = 3) -> torch.Tensor:
    """A smooth random image (bilinear upsampling of an 8 x 8 noise field) in [0, 1], ``(channels, side, side)``."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, channels, 8, 8, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)[0]


def smooth_variant(clf):
    """The same classifier with every ReLU replaced by GELU (in place), so the exact Hessian is not zero and the
    exact estimator (Lanczos on autograd products) can be measured on a torchvision architecture."""
    from torch import nn

    for parent in list(clf.module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(parent, name, nn.GELU())
    clf.name = clf.name + "-gelu"
    return clf


def same_class_pair(clf, x1: torch.Tensor, seed: int = 1):
    """A second image near ``x1`` predicted in the same class (a smooth perturbation, shrunk until it is)."""
    other = smooth_image(x1.shape[-1], seed, x1.shape[0]).to(x1)
    for eps in (0.1, 0.05, 0.02, 0.01, 0.005):
        x2 = (x1 + eps * (other - 0.5)).clamp(0, 1)
        lab = clf.predict(torch.stack([x1, x2]).to(clf.device))
        if int(lab[0]) == int(lab[1]):
            return x2
    raise RuntimeError("no same-class neighbour found")
