"""Gradient attacks in pixel space: FGSM and PGD (L2 or Linf), batched.

Used to adversarially train a zoo model, to draw adversarial planes and to
evaluate the detector. DeepFool lives in ``boundary.py``. Every attack keeps the
result inside the pixel range and works on a whole batch at once. Imports torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import GeometryError

NORMS = ("l2", "linf")


def _loss_grad(model, x, y):
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    return g


def _flat_norm(t):
    return t.reshape(t.shape[0], -1).norm(dim=1).clamp_min(1e-12).reshape(-1, *([1] * (t.dim() - 1)))


def _project(delta, eps, norm):
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = _flat_norm(delta)
    return delta * torch.clamp(eps / n, max=1.0)


def _check(eps, norm):
    if norm not in NORMS:
        raise GeometryError(f"norm must be one of {NORMS}, got {norm!r}")
    if not eps >= 0:
        raise GeometryError(f"attack size eps must be >= 0, got {eps}")


def fgsm(model, x, y, eps: float, norm: str = "linf", pixel_range=(0.0, 1.0)):
    """One gradient step of size ``eps`` (sign step for Linf, normalised gradient for L2)."""
    _check(eps, norm)
    g = _loss_grad(model, x, y)
    step = g.sign() if norm == "linf" else g / _flat_norm(g)
    return (x + eps * step).clamp(*pixel_range).detach()


def pgd(model, x, y, eps: float, norm: str = "l2", steps: int = 10, step_size: float | None = None,
        random_start: bool = True, pixel_range=(0.0, 1.0), generator: torch.Generator | None = None):
    """Projected gradient ascent on the cross-entropy inside the ``eps`` ball, clipped to the pixel range.

    ``step_size`` defaults to 2.5 * eps / steps (Madry et al.)."""
    _check(eps, norm)
    if eps == 0:
        return x.detach().clone()
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    delta = torch.zeros_like(x)
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device) * 2 - 1
        delta = _project(noise * eps, eps, norm) if norm == "linf" else \
            noise / _flat_norm(noise) * eps * torch.rand(x.shape[0], 1, *([1] * (x.dim() - 2)), generator=generator,
                                                         dtype=x.dtype).to(x.device)
    lo, hi = pixel_range
    for _ in range(steps):
        xa = (x + delta).clamp(lo, hi)
        g = _loss_grad(model, xa, y)
        step = g.sign() if norm == "linf" else g / _flat_norm(g)
        delta = _project(xa + alpha * step - x, eps, norm)
    return (x + delta).clamp(lo, hi).detach()
