"""The one classifier abstraction every analysis takes.

A :class:`Classifier` wraps a PyTorch module that maps a batch of images in
*pixel space* (shape ``(B, *input_shape)``, values in ``pixel_range``) to logits
``(B, L)``. Any mean/std normalisation is folded inside the module, so every
geometric quantity (distances, curvatures, planes) is measured in pixels. The
module is always in eval mode, its parameters never require gradients (we only
differentiate with respect to the input), and it lives on one device in one
dtype (float32 by default, float64 for exact tests).

Imports torch only; never Streamlit or Plotly.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from .errors import GeometryError

PIECEWISE_LINEAR_MODULES = (nn.ReLU, nn.LeakyReLU, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
                            nn.Hardtanh, nn.ReLU6, nn.PReLU)
SMOOTH_ACTIVATIONS = (nn.Softplus, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.ELU, nn.Mish)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` are taken as given
    (and checked); anything else is refused."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    text = str(device)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise GeometryError(f"device {text[:40]!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise GeometryError(f"device {text[:40]!r} is not supported; use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GeometryError(f"device {text[:40]!r} was requested but no CUDA GPU is available; use --device cpu "
                            "or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise GeometryError(f"device {text[:40]!r} does not exist: this machine has {torch.cuda.device_count()} CUDA "
                            "GPU(s), numbered from 0")
    return dev


PROBE_BATCH = 2


def probe_logits(module: nn.Module, input_shape, pixel_range, device, dtype, num_classes: int | None = None) -> int:
    """Run ``module`` on a probe batch of two different in-range images and check it behaves like a classifier:
    a floating-point tensor of shape (2, L), L >= 2 (= ``num_classes`` when given), finite. Returns L.

    Two images, not one: a model whose batch dimension does not follow its input (always one row, say)
    passes a batch of one and breaks every analysis later."""
    lo, hi = float(pixel_range[0]), float(pixel_range[1])
    x = torch.empty((PROBE_BATCH, *input_shape), device=device, dtype=dtype)
    x[0].fill_(lo + 0.25 * (hi - lo))
    x[1].fill_(lo + 0.75 * (hi - lo))
    try:
        with torch.no_grad():
            out = module(x)
    except Exception as exc:  # the model itself failed: name the shape we fed
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        try:
            with torch.no_grad():
                single = module(x[:1])
        except Exception:
            single = None
        if isinstance(single, torch.Tensor):
            raise GeometryError(f"the model runs on one image but fails on a batch of {PROBE_BATCH} "
                                f"({type(exc).__name__}{': ' + detail if detail else ''}); a classifier must accept "
                                "any batch size (for torch.export, mark the batch dimension dynamic)") from None
        raise GeometryError(f"the model failed on an input of shape {tuple(x.shape)} ({type(exc).__name__}"
                            f"{': ' + detail if detail else ''}); check --input-shape") from None
    if not isinstance(out, torch.Tensor):
        raise GeometryError(f"the model returned {type(out).__name__}, not a tensor of logits; "
                            "a classifier must return a (batch, classes) tensor")
    if out.dim() != 2:
        raise GeometryError(f"the model returned shape {tuple(out.shape)} for a batch of {PROBE_BATCH} images; a "
                            "classifier must return (batch, classes) logits: it is not a classifier")
    if out.shape[0] != PROBE_BATCH:
        raise GeometryError(f"the model returned {out.shape[0]} row(s) of logits for a batch of {PROBE_BATCH} images; "
                            "its batch dimension must follow the input (one row of logits per image)")
    if not out.is_floating_point():
        raise GeometryError(f"the model returns {str(out.dtype).replace('torch.', '')} logits; a classifier must "
                            "return floating-point logits (e.g. float32), not labels or counts")
    if out.shape[1] < 2:
        raise GeometryError(f"the model outputs {out.shape[1]} logit(s); a classifier needs at least 2 classes")
    if num_classes is not None and out.shape[1] != num_classes:
        raise GeometryError(f"the model outputs {out.shape[1]} logits but {num_classes} class names were "
                            "given; fix --classes or the sidecar's class_names")
    if not torch.isfinite(out).all():
        raise GeometryError("the model returned NaN or infinite logits on mid-range images")
    return int(out.shape[1])


class Normalize(nn.Module):
    """(x - mean) / std per channel, folded into the model so geometry stays in pixel space."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if torch.any(std_t <= 0):
            raise GeometryError(f"normalisation std must be positive, got {list(std)}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x):
        if x.dim() == 2:  # flat inputs (MLP): broadcast a single channel's statistics
            return (x - self.mean.reshape(1, -1)[:, :1]) / self.std.reshape(1, -1)[:, :1]
        return (x - self.mean) / self.std


def _set_eval(module: nn.Module) -> nn.Module:
    try:
        module.eval()
    except (NotImplementedError, RuntimeError):
        # torch.export modules refuse .eval(); they are exported in eval mode by our loader.
        pass
    return module


@dataclass
class Classifier:
    """A differentiable image classifier in pixel space.

    Parameters
    ----------
    module : nn.Module mapping ``(B, *input_shape)`` pixels to ``(B, L)`` logits.
        Normalisation must already be inside it (see :meth:`from_module`).
    input_shape : ``(C, H, W)`` (or any shape) of one image, without the batch axis.
    class_names : one name per logit.
    pixel_range : ``(low, high)`` of valid pixel values, e.g. ``(0.0, 1.0)``.
    name : a short identifier (zoo name or file name), used in cache keys and reports.
    dataset : the dataset the model was trained on ("mnist", "digits") or None.
    card : the model card (a dict) when there is one.
    """

    module: nn.Module
    input_shape: tuple[int, ...]
    class_names: list[str]
    pixel_range: tuple[float, float] = (0.0, 1.0)
    name: str = "model"
    dataset: str | None = None
    card: dict = field(default_factory=dict)

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)
        self.class_names = [str(c) for c in self.class_names]
        self.pixel_range = (float(self.pixel_range[0]), float(self.pixel_range[1]))
        if not self.pixel_range[0] < self.pixel_range[1]:
            raise GeometryError(f"pixel range must be (low, high) with low < high, got {self.pixel_range}")
        _set_eval(self.module)
        for p in self.module.parameters():
            p.requires_grad_(False)

    # ----------------------------------------------------------------- building
    @classmethod
    def from_module(cls, net: nn.Module, input_shape, class_names, *, pixel_range=(0.0, 1.0),
                    mean=None, std=None, device=None, dtype=torch.float32, **kw) -> "Classifier":
        """Wrap ``net``, folding ``(x - mean) / std`` in front of it when given."""
        module = nn.Sequential(Normalize(mean, std), net) if mean is not None or std is not None else net
        if (mean is None) != (std is None):
            raise GeometryError("give both mean and std for normalisation, or neither")
        module = module.to(device=pick_device(device), dtype=dtype)
        return cls(module, tuple(input_shape), list(class_names), pixel_range, **kw)

    def to(self, device=None, dtype=None) -> "Classifier":
        """A copy on another device and/or dtype (``device="auto"`` picks CUDA when present)."""
        dev = pick_device(device) if device is not None else self.device
        # nn.Module.to moves in place: copy first so the original classifier keeps its device/dtype
        module = copy.deepcopy(self.module).to(device=dev, dtype=dtype or self.dtype)
        return Classifier(module, self.input_shape, self.class_names, self.pixel_range,
                          self.name, self.dataset, self.card)

    def double(self) -> "Classifier":
        return self.to(dtype=torch.float64)

    # ------------------------------------------------------------------ facts
    @property
    def device(self) -> torch.device:
        for t in list(self.module.parameters()) + list(self.module.buffers()):
            return t.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        for t in list(self.module.parameters()) + list(self.module.buffers()):
            if t.is_floating_point():
                return t.dtype
        return torch.float32

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def dim(self) -> int:
        """d, the number of input coordinates (pixels times channels)."""
        return int(math.prod(self.input_shape))

    @property
    def pixel_span(self) -> float:
        return self.pixel_range[1] - self.pixel_range[0]

    @property
    def piecewise_linear(self) -> bool | None:
        """True when the module's only non-linearities are ReLU-like and max-pooling
        (exact Hessian zero almost everywhere); False when it has a smooth activation;
        None when it cannot be told from the module (TorchScript, exported programs)."""
        mods = list(self.module.modules())
        if any(isinstance(m, SMOOTH_ACTIVATIONS) for m in mods):
            return False
        if any(isinstance(m, PIECEWISE_LINEAR_MODULES) for m in mods):
            return True
        return None

    def describe(self) -> str:
        return (f"{self.name}: input {self.input_shape}, pixels in [{self.pixel_range[0]:g}, "
                f"{self.pixel_range[1]:g}], {self.num_classes} classes, {self.device.type}, "
                f"{str(self.dtype).replace('torch.', '')}")

    # -------------------------------------------------------------- evaluation
    def as_batch(self, x) -> torch.Tensor:
        """Validate ``x`` and return it as a ``(B, *input_shape)`` tensor on the model's device/dtype.

        A single image of shape ``input_shape`` gets a batch axis."""
        x = torch.as_tensor(x)
        if tuple(x.shape) == self.input_shape:
            x = x.unsqueeze(0)
        if tuple(x.shape[1:]) != self.input_shape:
            raise GeometryError(f"input has shape {tuple(x.shape)}; the model expects (B, "
                                f"{', '.join(map(str, self.input_shape))}) or one image of shape {self.input_shape}")
        if not x.is_floating_point():
            x = x.to(torch.float32)
        if not torch.isfinite(x).all():
            raise GeometryError("input contains NaN or infinite values; replace them with valid pixel values")
        return x.to(device=self.device, dtype=self.dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable logits ``(B, L)`` for a batch ``(B, *input_shape)``."""
        return self.module(x)

    def logits(self, x, batch_size: int = 1024) -> torch.Tensor:
        """Logits without gradients, evaluated in chunks of ``batch_size`` on the model's device."""
        x = self.as_batch(x)
        with torch.no_grad():
            outs = [self.module(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, self.num_classes, device=self.device, dtype=self.dtype)

    def probabilities(self, x, batch_size: int = 1024) -> torch.Tensor:
        return torch.softmax(self.logits(x, batch_size), dim=1)

    def predict(self, x, batch_size: int = 1024) -> torch.Tensor:
        return self.logits(x, batch_size).argmax(dim=1)

    def in_pixel_range(self, x: torch.Tensor, atol: float = 1e-6) -> torch.Tensor:
        """Per image: True when every coordinate lies in the pixel range (within ``atol``)."""
        lo, hi = self.pixel_range
        flat = x.reshape(x.shape[0], -1)
        return ((flat >= lo - atol) & (flat <= hi + atol)).all(dim=1)

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(*self.pixel_range)

    def check_output(self) -> None:
        """Probe the model with a batch of two in-range images (see :func:`probe_logits`): floating-point logits of
        shape (2, num_classes), at least two classes, finite."""
        probe_logits(self.module, self.input_shape, self.pixel_range, self.device, self.dtype, self.num_classes)
