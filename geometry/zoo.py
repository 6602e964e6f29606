"""Architectures of the bundled model zoo and the registry of bundled weights.

Weights live in ``assets/models/<name>.safetensors`` with a JSON model card
``<name>.json`` beside them (architecture, activation, recipe, seed, held-out
accuracy, input shape, pixel range, class names, normalisation). They are
produced by ``scripts/train_zoo.py``. Imports torch only.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from .errors import ModelLoadError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
MODEL_DIR = ASSETS / "models"
DEFAULT_MODEL = "mnist_lenet_gelu"

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "softplus": nn.Softplus, "tanh": nn.Tanh}


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ModelLoadError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}") from None


def lenet(activation: str = "relu", pooling: str = "max", in_channels: int = 1, input_size: int = 28,
          num_classes: int = 10, width: int = 32) -> nn.Sequential:
    """LeNet-style CNN: two 5x5 conv blocks with pooling, then two fully connected layers."""
    pool = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}[pooling]
    side = ((input_size // 2) - 4) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, width // 2, 5, padding=2), _activation(activation), pool(2),
        nn.Conv2d(width // 2, width, 5), _activation(activation), pool(2),
        nn.Flatten(),
        nn.Linear(width * side * side, 128), _activation(activation),
        nn.Linear(128, num_classes),
    )


def mlp(activation: str = "softplus", input_dim: int = 64, hidden: int = 64, depth: int = 2,
        num_classes: int = 10) -> nn.Sequential:
    """Fully connected network on flattened images."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = input_dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), _activation(activation)]
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


ARCHITECTURES = {"lenet": lenet, "mlp": mlp}


def build_architecture(name: str, num_classes: int, kwargs: dict | None = None) -> nn.Module:
    """A freshly initialised network: a zoo architecture (``lenet``, ``mlp``) or any
    ``torchvision.models`` name (e.g. ``resnet18``), with ``num_classes`` outputs."""
    kwargs = dict(kwargs or {})
    if name in ARCHITECTURES:
        return ARCHITECTURES[name](num_classes=num_classes, **kwargs)
    import torchvision

    try:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except (ValueError, KeyError):
        known = ", ".join(sorted(ARCHITECTURES)) + ", or a torchvision.models name such as resnet18"
        raise ModelLoadError(f"unknown architecture {name!r}; use one of {known}") from None


def zoo_names() -> list[str]:
    """Names of the bundled models (those with both weights and a card)."""
    return sorted(p.stem for p in MODEL_DIR.glob("*.json") if (MODEL_DIR / f"{p.stem}.safetensors").exists())


def zoo_card(name: str) -> dict:
    path = MODEL_DIR / f"{name}.json"
    if not path.exists():
        raise ModelLoadError(f"no bundled model named {name!r}; bundled models: {', '.join(zoo_names()) or 'none'}")
    return json.loads(path.read_text())


def zoo_weights_path(name: str) -> Path:
    return MODEL_DIR / f"{name}.safetensors"
