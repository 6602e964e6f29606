"""Architectures of the bundled model zoo and the registry of bundled weights.

Weights live in ``assets/models/<name>.safetensors`` with a JSON model card
``<name>.json`` beside them (architecture, activation, recipe, seed, held-out
accuracy, input shape, pixel range, class names, normalisation). They are
produced by ``scripts/train_zoo.py``. Imports torch only.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

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


POOLINGS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def lenet(activation: str = "relu", pooling: str = "max", in_channels: int = 1, input_size: int = 28,
          num_classes: int = 10, width: int = 32) -> nn.Sequential:
    """LeNet-style CNN: two 5x5 conv blocks with pooling, then two fully connected layers."""
    if pooling not in POOLINGS:
        raise ModelLoadError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    pool = POOLINGS[pooling]
    side = ((input_size // 2) - 4) // 2
    if side < 1 or width < 2:
        raise ModelLoadError(f"lenet needs input_size >= 12 and width >= 2, got input_size={input_size}, "
                             f"width={width}")
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


def _torchvision_classifiers() -> list[str]:
    """Names of torchvision's image classifiers (torchvision.models itself: no detection, segmentation, video or
    quantized builders, some of which would download backbone weights)."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def _unknown_architecture(name: str) -> ModelLoadError:
    known = ", ".join(sorted(ARCHITECTURES)) + ", or a torchvision.models classifier such as resnet18"
    return ModelLoadError(f"unknown architecture {name!r}; use one of {known}")


def _allowed_kwargs(name: str) -> list[str] | None:
    """Keyword arguments ``arch_kwargs`` may set for a zoo architecture (None: torchvision decides)."""
    if name in ARCHITECTURES:
        return [p for p in inspect.signature(ARCHITECTURES[name]).parameters if p != "num_classes"]
    return None


def _check_kwargs(name: str, kwargs: dict) -> None:
    if "num_classes" in kwargs:
        raise ModelLoadError("arch_kwargs may not set num_classes; it comes from the class names or the weights")
    allowed = _allowed_kwargs(name)
    if allowed is None:
        return
    sig = inspect.signature(ARCHITECTURES[name]).parameters
    for key, value in kwargs.items():
        if key not in allowed:
            raise ModelLoadError(f"arch_kwargs key {key!r} is not a parameter of architecture {name!r}; allowed: "
                                 f"{', '.join(allowed)}")
        default = sig[key].default
        if isinstance(default, int) and not (isinstance(value, int) and not isinstance(value, bool)):
            raise ModelLoadError(f"arch_kwargs {key!r} of architecture {name!r} must be a whole number, got {value!r}")
        if isinstance(default, int) and value < (0 if key == "depth" else 1):
            raise ModelLoadError(f"arch_kwargs {key!r} of architecture {name!r} must be "
                                 f"{'>= 0' if key == 'depth' else 'positive'}, got {value!r}")
        if isinstance(default, str) and not isinstance(value, str):
            raise ModelLoadError(f"arch_kwargs {key!r} of architecture {name!r} must be a string, got {value!r}")


def _build(name: str, num_classes: int, kwargs: dict) -> nn.Module:
    if name in ARCHITECTURES:
        return ARCHITECTURES[name](num_classes=num_classes, **kwargs)
    if name not in _torchvision_classifiers():
        raise _unknown_architecture(name)
    import torchvision

    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)


def build_architecture(name: str, num_classes: int, kwargs: dict | None = None) -> nn.Module:
    """A freshly initialised network: a zoo architecture (``lenet``, ``mlp``) or a torchvision
    classifier name (e.g. ``resnet18``), with ``num_classes`` outputs. Never downloads weights.

    Call :func:`architecture_parameters` first for untrusted names/kwargs: it refuses an
    architecture over the parameter limit without allocating it."""
    kwargs = dict(kwargs or {})
    if not isinstance(name, str) or not name:
        raise _unknown_architecture(str(name))
    _check_kwargs(name, kwargs)
    return _build_explained(name, num_classes, kwargs)


def _build_explained(name: str, num_classes: int, kwargs: dict) -> nn.Module:
    """:func:`_build`, with a builder's own failures turned into one message naming the architecture."""
    try:
        return _build(name, num_classes, kwargs)
    except (ModelLoadError, _ParameterBudget):
        raise
    except TypeError as exc:
        raise _kwargs_error(name, kwargs, exc) from None
    except Exception as exc:
        raise ModelLoadError(f"architecture {name!r} cannot be built with arch_kwargs {kwargs} "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})") from None


def _kwargs_error(name: str, kwargs: dict, exc: TypeError) -> ModelLoadError:
    """A TypeError from a torchvision builder (an unknown or fixed keyword): name the key and the allowed ones."""
    text = str(exc)
    bad = next((k for k in kwargs if repr(k) in text or f"'{k}'" in text), None)
    allowed = ""
    try:
        with torch.device("meta"), torch.random.fork_rng(devices=[]):
            cls = type(_build(name, 2, {}))
        params = [p for p in inspect.signature(cls.__init__).parameters
                  if p not in ("self", "num_classes", "args", "kwargs")]
        allowed = f"; allowed: {', '.join(params)}"
    except Exception:
        pass
    if bad is not None:
        return ModelLoadError(f"arch_kwargs key {bad!r} is not accepted by architecture {name!r}{allowed}")
    return ModelLoadError(f"architecture {name!r} does not accept arch_kwargs {kwargs} ({text[:160]}){allowed}")


class _ParameterBudget(Exception):
    pass


class _MetaBuild(TorchFunctionMode):
    """While an architecture is built: tensors from factory functions go to the ``meta`` device (no memory), except
    small ones, which stay real (some builders compute their layout from small tensors); stop once the real
    elements pass ``real_budget`` or the calls pass ``max_calls`` (a builder asked for a million layers)."""

    FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.randint,
                 torch.empty_strided, torch.normal}
    SMALL = 1024

    def __init__(self, real_budget: int, max_calls: int):
        super().__init__()
        self.real_budget, self.max_calls = real_budget, max_calls
        self.real_elements, self.calls = 0, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        self.calls += 1
        if self.calls > self.max_calls:
            raise _ParameterBudget(f"more than {self.max_calls:,} tensor operations")
        if func in self.FACTORIES and kwargs.get("device") is None:
            out = func(*args, **{**kwargs, "device": "meta"})
            if out.numel() > self.SMALL:
                return out
            self.real_elements += out.numel()
            if self.real_elements > self.real_budget:
                raise _ParameterBudget(f"more than {self.real_budget:,} elements in small tensors")
            return func(*args, **kwargs)
        return func(*args, **kwargs)


MAX_BUILD_CALLS = 500_000          # the largest torchvision classifiers need under 10,000
MAX_BUILD_REAL_ELEMENTS = 20_000_000  # elements of the small tensors kept real while building (80 MB)


def architecture_parameters(name: str, num_classes: int, kwargs: dict | None, limit: int) -> int:
    """Count the parameters of ``name(num_classes, **kwargs)`` without allocating them (large tensors live on the
    ``meta`` device while it is built) and refuse it when over ``limit``. Also checks ``kwargs`` against the
    architecture's signature. Returns the count."""
    from .limits import PARAMETERS

    kwargs = dict(kwargs or {})
    if not isinstance(name, str) or not name:
        raise _unknown_architecture(str(name))
    _check_kwargs(name, kwargs)
    what = f"architecture {name!r}" + (f" with arch_kwargs {kwargs}" if kwargs else "")
    mode = _MetaBuild(real_budget=max(MAX_BUILD_REAL_ELEMENTS, limit // 4), max_calls=MAX_BUILD_CALLS)
    try:
        with torch.random.fork_rng(devices=[]), mode:
            net = _build_explained(name, num_classes, kwargs)
    except _ParameterBudget as exc:
        raise ModelLoadError(f"{what} needs {exc} to build; refusing it as too large") from None
    count = sum(p.numel() for p in net.parameters())
    if count > limit:
        raise PARAMETERS.exceeded(what, count, limit)
    return count


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
