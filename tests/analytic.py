"""Classifiers whose geometry is known exactly, for tests against analytic answers.

Every builder returns a :class:`geometry.Classifier` in float64 on the CPU whose
module maps ``(B, *input_shape)`` to logits. Inputs are flattened inside the
module, so any ``input_shape`` with ``prod(input_shape) == dim`` works (e.g.
``(1, 4, 4)`` for dim 16 to look like an image). The default pixel range is wide
(``(-100, 100)``) so clipping never interferes unless a test asks for it.

Known answers (conventions of docs/science.md section 3; curvature of the boundary
between the image's class k and the class j across, F = f_k - f_j):

- ``linear_classifier(W, b)``: logits ``W x + b``; every boundary is a hyperplane,
  every principal curvature is 0, the DeepFool distance to the k/j boundary is
  ``(f_k - f_j) / |w_k - w_j|``.
- ``quadratic_classifier(A, b, c)``: two classes, logits ``(0, q(x))`` with
  ``q(x) = x^T A x / 2 + b^T x + c``; class 1 where ``q > 0``. At a boundary point z
  the principal curvatures are the eigenvalues of ``P A P / |A z + b|`` on the
  tangent space for an image of class 1, and their negatives for class 0
  (see :func:`quadratic_curvatures`).
- ``sphere_classifier(center, R, dim)``: class 1 inside the ball of radius R.
  Curvature ``-1/R`` in every tangent direction for an image inside (class 1),
  ``+1/R`` for an image outside (class 0).
- ``annulus_classifier(center, r_inner, r_outer, dim)``: class 1 in the shell
  ``r_inner < |x - c| < r_outer``: from inside the shell the inner sphere has
  curvature ``+1/r_inner``, the outer one ``-1/r_outer``.
- ``cylinder_classifier(R, dim, axes)``: class 1 within distance R of a linear
  subspace spanned by coordinate ``axes``: curvature ``-1/R`` along the
  ``dim - len(axes) - 1`` round tangent directions and 0 along the axes.
- ``tiny_cnn(...)``: a small smooth (softplus/tanh/gelu) or ReLU CNN with fixed
  random weights; no closed form, compare with dense ``torch.func.hessian``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from geometry.classifier import Classifier

DTYPE = torch.float64
WIDE_RANGE = (-100.0, 100.0)


def _t(a, shape=None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a, dtype=np.float64) if not isinstance(a, torch.Tensor) else a, dtype=DTYPE)
    return t.reshape(shape) if shape is not None else t


def _wrap(module: nn.Module, dim: int, input_shape, class_names, pixel_range, name) -> Classifier:
    input_shape = tuple(input_shape) if input_shape is not None else (dim,)
    if math.prod(input_shape) != dim:
        raise ValueError(f"input_shape {input_shape} does not hold {dim} coordinates")
    names = list(class_names) if class_names is not None else None
    return Classifier(module.to(DTYPE), input_shape, names, pixel_range, name=name)


class LinearLogits(nn.Module):
    def __init__(self, W, b):
        super().__init__()
        self.register_buffer("W", _t(W))
        self.register_buffer("b", _t(b).reshape(-1))

    def forward(self, x):
        return x.flatten(1) @ self.W.T + self.b


class QuadraticLogits(nn.Module):
    """Logits ``(0, x^T A x / 2 + b^T x + c)``."""

    def __init__(self, A, b, c):
        super().__init__()
        A = _t(A)
        self.register_buffer("A", (A + A.T) / 2)
        self.register_buffer("b", _t(b).reshape(-1))
        self.register_buffer("c", _t(c).reshape(()))

    def forward(self, x):
        x = x.flatten(1)
        q = 0.5 * ((x @ self.A) * x).sum(1) + x @ self.b + self.c
        return torch.stack([torch.zeros_like(q), q], dim=1)


class SphereLogits(nn.Module):
    """Logits ``(0, (R^2 - |x - c|^2) / (2R))``: class 1 inside the ball, |grad| = 1 on the sphere."""

    def __init__(self, center, R):
        super().__init__()
        self.register_buffer("center", _t(center).reshape(-1))
        self.R = float(R)

    def forward(self, x):
        r2 = ((x.flatten(1) - self.center) ** 2).sum(1)
        q = (self.R ** 2 - r2) / (2 * self.R)
        return torch.stack([torch.zeros_like(q), q], dim=1)


class AnnulusLogits(nn.Module):
    """Logits ``(0, (|x-c| - r1)(r2 - |x-c|))``: class 1 in the shell r1 < |x - c| < r2."""

    def __init__(self, center, r_inner, r_outer):
        super().__init__()
        self.register_buffer("center", _t(center).reshape(-1))
        self.r1, self.r2 = float(r_inner), float(r_outer)

    def forward(self, x):
        r = ((x.flatten(1) - self.center) ** 2).sum(1).sqrt()
        q = (r - self.r1) * (self.r2 - r)
        return torch.stack([torch.zeros_like(q), q], dim=1)


class CylinderLogits(nn.Module):
    """Logits ``(0, (R^2 - |x_perp|^2) / (2R))`` where x_perp drops the coordinates in ``axes``."""

    def __init__(self, dim, R, axes):
        super().__init__()
        mask = torch.ones(dim, dtype=DTYPE)
        mask[list(axes)] = 0
        self.register_buffer("mask", mask)
        self.R = float(R)

    def forward(self, x):
        r2 = ((x.flatten(1) * self.mask) ** 2).sum(1)
        q = (self.R ** 2 - r2) / (2 * self.R)
        return torch.stack([torch.zeros_like(q), q], dim=1)


class _Centre(nn.Module):
    def __init__(self, mid, half):
        super().__init__()
        self.mid, self.half = float(mid), float(half)

    def forward(self, x):
        return (x - self.mid) / self.half


# ---------------------------------------------------------------- builders
def linear_classifier(W, b, *, input_shape=None, class_names=None, pixel_range=WIDE_RANGE) -> Classifier:
    """Logits ``W x + b`` with ``W`` of shape (L, d)."""
    W = _t(W)
    L, d = W.shape
    return _wrap(LinearLogits(W, b), d, input_shape, class_names or [f"c{i}" for i in range(L)], pixel_range,
                 "linear")


def quadratic_classifier(A, b, c, *, input_shape=None, class_names=("negative", "positive"),
                         pixel_range=WIDE_RANGE) -> Classifier:
    """Two classes; class 1 where ``x^T A x / 2 + b^T x + c > 0``."""
    A = _t(A)
    return _wrap(QuadraticLogits(A, b, c), A.shape[0], input_shape, class_names, pixel_range, "quadratic")


def sphere_classifier(center=None, R=1.0, dim=None, *, input_shape=None, class_names=("outside", "inside"),
                      pixel_range=WIDE_RANGE) -> Classifier:
    """Two classes; class 1 inside the ball of radius ``R`` around ``center`` (default the origin)."""
    if center is None:
        if dim is None:
            raise ValueError("give center or dim")
        center = np.zeros(dim)
    center = _t(center).reshape(-1)
    return _wrap(SphereLogits(center, R), center.numel(), input_shape, class_names, pixel_range, "sphere")


def annulus_classifier(center=None, r_inner=1.0, r_outer=2.0, dim=None, *, input_shape=None,
                       class_names=("outside", "shell"), pixel_range=WIDE_RANGE) -> Classifier:
    """Two classes; class 1 in the shell ``r_inner < |x - center| < r_outer``."""
    if center is None:
        center = np.zeros(dim)
    center = _t(center).reshape(-1)
    return _wrap(AnnulusLogits(center, r_inner, r_outer), center.numel(), input_shape, class_names, pixel_range,
                 "annulus")


def cylinder_classifier(R=1.0, dim=3, axes=(0,), *, input_shape=None, class_names=("outside", "inside"),
                        pixel_range=WIDE_RANGE) -> Classifier:
    """Two classes; class 1 within distance ``R`` of the coordinate subspace spanned by ``axes``."""
    return _wrap(CylinderLogits(dim, R, axes), dim, input_shape, class_names, pixel_range, "cylinder")


def tiny_cnn(activation: str = "softplus", side: int = 6, channels: int = 1, num_classes: int = 4, width: int = 4,
             seed: int = 0, pixel_range=(0.0, 1.0), pooling: str = "avg") -> Classifier:
    """A small CNN ``(channels, side, side) -> num_classes`` with fixed random weights (float64).

    ``activation`` in softplus, tanh, gelu (smooth) or relu (piecewise linear); ``pooling`` avg or max."""
    g = torch.Generator().manual_seed(seed)
    act = {"softplus": nn.Softplus, "tanh": nn.Tanh, "gelu": nn.GELU, "relu": nn.ReLU}[activation]
    pool = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}[pooling]
    lo, hi = pixel_range
    net = nn.Sequential(_Centre((lo + hi) / 2, (hi - lo) / 2), nn.Conv2d(channels, width, 3, padding=1), act(),
                        pool(2), nn.Flatten(), nn.Linear(width * (side // 2) ** 2, 16), act(),
                        nn.Linear(16, num_classes))
    with torch.no_grad():
        for p in net.parameters():
            scale = 2.0 / math.sqrt(p[0].numel()) if p.dim() > 1 else 0.1
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return Classifier(net.to(DTYPE), (channels, side, side), [str(i) for i in range(num_classes)], pixel_range,
                      name=f"tiny_cnn_{activation}")


# ---------------------------------------------------------------- answers
def quadratic_curvatures(A, b, z, label: int) -> np.ndarray:
    """Exact principal curvatures (descending, d - 1 values) of ``q = 0`` at ``z`` for an image of class ``label``."""
    A = np.asarray(A, dtype=np.float64)
    A = (A + A.T) / 2
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    g = A @ z + np.asarray(b, dtype=np.float64).reshape(-1)
    n = g / np.linalg.norm(g)
    # orthonormal basis of the tangent space n^perp
    q, _ = np.linalg.qr(np.column_stack([n, np.eye(len(n))]))
    T = q[:, 1:len(n)]
    vals = np.linalg.eigvalsh(T.T @ A @ T) / np.linalg.norm(g)
    sign = 1.0 if label == 1 else -1.0  # F = f_k - f_j = +q for class 1, -q for class 0
    return np.sort(sign * vals)[::-1]


def dense_projected_hessian(clf: Classifier, z, k: int, j: int):
    """(P H P / |g|, g) at one point from ``torch.func.hessian`` (float64 ground truth)."""
    z = clf.as_batch(z)[0].reshape(-1).to(DTYPE)
    shape = clf.input_shape

    def F(v):
        out = clf.module(v.reshape(1, *shape))[0]
        return out[k] - out[j]

    H = torch.func.hessian(F)(z)
    g = torch.func.grad(F)(z)
    n = g / g.norm()
    P = torch.eye(len(z), dtype=z.dtype) - torch.outer(n, n)
    return P @ H @ P / g.norm(), g
