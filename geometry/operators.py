"""Hessians of logit differences as linear operators in pixel space.

One operator protocol (in the spirit of curvlinops): an :class:`Operator` has a
``shape`` ``(d, d)``, a ``dtype`` and ``device``, a ``matvec`` that takes ``(d,)``
or ``(d, n)`` tensors, ``@``, ``to_scipy()`` (a ``scipy.sparse.linalg.LinearOperator``),
``dense()`` (column block by column block) and ``hvp_count``, the number of
Hessian-vector products spent so far. Producers:

- :func:`hessian_operator`: the Hessian H of ``F = f_k - f_j`` at one point z,
  ``estimator="exact"`` (autograd) or ``"fd"`` (central differences of gradients);
- :func:`curvature_operator`: ``P H P / |grad F|`` with ``P = I - n n^T``, whose
  eigenvalues on the tangent space are the principal curvatures (sign convention in
  :data:`geometry.curvature.SIGN_CONVENTION`).

Estimators (docs/science.md section 3):

- ``"exact"``: ``H v`` by automatic differentiation. Two engines: ``"fwd_rev"``
  (``torch.func.jvp`` of ``torch.func.grad``, ``vmap`` over a block of vectors) and
  ``"rev_rev"`` (double backward, vectors batched by replicating the points). The
  faster one on the bundled CNNs is the default (see ``bench/bench_curvature.py``); the
  other is the fallback when a module refuses ``torch.func`` (TorchScript, export).
- ``"fd"``: ``H v ~ |v| (g(z + h v/|v|) - g(z - h v/|v|)) / 2h``: the step ``h`` is a
  distance in pixels along the unit vector, i.e. curvature *at the scale h*. This
  is what sees the bends of piecewise-linear (ReLU) networks, whose exact Hessian is
  zero almost everywhere. The default ``h`` is :func:`default_step`.

Batching: the Hessians of B independent points are computed in one pass by
differentiating ``sum_b F_b(z_b)``; this is valid because samples do not interact
(the classifier is in eval mode).

Threads: PyTorch keeps forward-mode AD levels (``torch.func.jvp``, ``jacfwd``,
``torch.autograd.forward_ad``) per process, not per thread, so two threads in forward mode at
once fail ("Trying to access a forward AD level with an invalid index", or "no level exists").
Every forward-mode computation in this library runs under :data:`FORWARD_AD_LOCK`; reverse mode
(``torch.autograd.grad``, ``torch.func.vjp`` / ``grad`` / ``vmap``) keeps its state per thread
and runs concurrently. Imports torch, numpy, scipy.
"""

from __future__ import annotations

import math
import threading
import weakref

import numpy as np
import torch

from .classifier import Classifier
from .errors import GeometryError

ESTIMATORS = ("exact", "fd")
DEFAULT_STEP_C = 10.0
# Vectors per pass: bounds memory (activations of B * n copies of the model) while
# keeping the batch large enough for BLAS to be efficient.
DEFAULT_CHUNK = 64

_engine_ok: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # module -> engine known to work
# Chosen from bench/bench_curvature.py (docs/curvature.md): per vector, in blocks of 32 on the MNIST CNN,
# forward-over-reverse costs 0.57 gradients, a replicated-batch double backward 0.87; for a single vector
# vmap's set-up dominates (8.0 vs 1.8 gradients), so blocks smaller than SMALL_BLOCK use double backward.
# A HessianOperator at one point keeps its gradient graph and backpropagates through it for each vector
# (0.91 gradients per vector): the cheapest for Lanczos, which asks for one vector at a time.
EXACT_ENGINE = "fwd_rev"
SMALL_BLOCK = 4

FORWARD_AD_LOCK = threading.RLock()
"""Held around every use of forward-mode AD in the library (module docstring, *Threads*): one process-wide
lock, because PyTorch's forward-AD levels are process-wide. Re-entrant, so nested library calls cannot
dead-lock; code outside the library that runs forward mode in another thread should hold it too."""


def default_step(clf: Classifier, c: float = DEFAULT_STEP_C) -> float:
    """Finite-difference step ``h = c * sqrt(d) * pixel_span / 512`` (docs/science.md section 3; c = 10).

    For MNIST in [0, 1] (d = 784) this is 10 * 28 / 512 = 0.547 pixels-units of L2 length."""
    if not c > 0:
        raise GeometryError(f"the step constant c must be positive, got {c}")
    return float(c * math.sqrt(clf.dim) * clf.pixel_span / 512.0)


def _check_estimator(estimator: str) -> str:
    if estimator not in ESTIMATORS:
        raise GeometryError(f"estimator must be 'exact' or 'fd', got {estimator!r}")
    return estimator


def _labels(k, B: int, device, name: str) -> torch.Tensor:
    t = torch.as_tensor(k, device=device).reshape(-1).long()
    if t.numel() == 1 and B != 1:
        t = t.expand(B)
    if t.numel() != B:
        raise GeometryError(f"{name} must hold one class per point ({B}), got {t.numel()}")
    return t


def _F_sum(clf: Classifier, k: torch.Tensor, j: torch.Tensor):
    """z -> sum_b f_{k_b}(z_b) - f_{j_b}(z_b); its gradient's b-th slice is grad F_b(z_b)."""

    def F(z):
        out = clf.module(z)
        return (out.gather(1, k[:, None]) - out.gather(1, j[:, None])).sum()

    return F


def _check_classes(clf: Classifier, k: torch.Tensor, j: torch.Tensor):
    L = clf.num_classes
    for name, t in (("k", k), ("j", j)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= L):
            raise GeometryError(f"class index {name} must be in 0..{L - 1}, got {t.tolist()}")


def logit_difference_gradient(clf: Classifier, z, k, j) -> torch.Tensor:
    """Gradient of ``F = f_k - f_j`` at each point: z ``(B, *shape)``, k, j ``(B,)`` (or ints) -> ``(B, *shape)``."""
    z = clf.as_batch(z)
    k = _labels(k, z.shape[0], z.device, "k")
    j = _labels(j, z.shape[0], z.device, "j")
    _check_classes(clf, k, j)
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(_F_sum(clf, k, j)(zz), zz)
    return g.detach()


def _hvp_fwd_rev(clf, z, k, j, V):
    """torch.func forward-over-reverse; V (B, n, *shape) -> (B, n, *shape). Holds :data:`FORWARD_AD_LOCK`."""
    gfn = torch.func.grad(_F_sum(clf, k, j))

    def one(v):
        return torch.func.jvp(gfn, (z,), (v,))[1]

    with FORWARD_AD_LOCK:
        return torch.func.vmap(one, in_dims=1, out_dims=1)(V)


def _hvp_rev_rev(clf, z, k, j, V):
    """Double backward on a replicated batch: the n vectors of each point ride as extra batch rows."""
    B, n = V.shape[:2]
    shape = z.shape[1:]
    zr = z.detach().unsqueeze(1).expand(B, n, *shape).reshape(B * n, *shape).clone().requires_grad_(True)
    kr, jr = k.repeat_interleave(n), j.repeat_interleave(n)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(_F_sum(clf, kr, jr)(zr), zr, create_graph=True)
        (hv,) = torch.autograd.grad(g, zr, grad_outputs=V.reshape(B * n, *shape))
    return hv.reshape(B, n, *shape)


def _hvp_exact(clf, z, k, j, V, engine=None):
    if engine is None:
        # vmap's set-up costs several gradients: for one or two vectors double backward is cheaper
        engine = "rev_rev" if V.shape[1] < SMALL_BLOCK else _engine_ok.get(clf.module, EXACT_ENGINE)
    if engine == "fwd_rev":
        try:
            out = _hvp_fwd_rev(clf, z, k, j, V)
            _engine_ok[clf.module] = "fwd_rev"
            return out
        except Exception:
            # TorchScript / exported modules or ops without forward-mode AD: use double backward.
            if _engine_ok.get(clf.module) == "fwd_rev":
                raise
            _engine_ok[clf.module] = "rev_rev"
    try:
        return _hvp_rev_rev(clf, z, k, j, V)
    except RuntimeError as exc:
        raise GeometryError(f"this model cannot be differentiated twice ({str(exc).splitlines()[0][:160]}); "
                            "use the finite-difference estimator (estimator='fd')") from None


def _hvp_fd(clf, z, k, j, V, h):
    """Central differences of gradients along unit vectors, rescaled by |v|."""
    B, n = V.shape[:2]
    shape = z.shape[1:]
    flat = V.reshape(B, n, -1)
    norms = flat.norm(dim=2)  # (B, n)
    unit = flat / norms.clamp_min(torch.finfo(flat.dtype).tiny)[..., None]
    unit = unit.reshape(B, n, *shape)
    zr = z.unsqueeze(1)
    pts = torch.cat([zr + h * unit, zr - h * unit], dim=1).reshape(B * 2 * n, *shape)
    kr, jr = k.repeat_interleave(2 * n), j.repeat_interleave(2 * n)
    g = logit_difference_gradient(clf, pts, kr, jr).reshape(B, 2, n, -1)
    hv = (g[:, 0] - g[:, 1]) / (2 * h) * norms[..., None]
    hv = torch.where(norms[..., None] > 0, hv, torch.zeros_like(hv))
    return hv.reshape(B, n, *shape)


def batched_hvp(clf: Classifier, z, k, j, V, estimator: str = "exact", step: float | None = None,
                chunk: int = DEFAULT_CHUNK, engine: str | None = None) -> torch.Tensor:
    """Hessian of ``F_b = f_{k_b} - f_{j_b}`` at ``z_b`` times each of n vectors, for all b in one pass.

    z ``(B, *shape)``; k, j ``(B,)`` long (or ints); V ``(B, n, *shape)`` -> ``(B, n, *shape)``.
    ``estimator`` "exact" or "fd" (step ``h`` in pixels, default :func:`default_step`);
    vectors go through in chunks of ``chunk`` per point."""
    _check_estimator(estimator)
    z = clf.as_batch(z)
    B, shape = z.shape[0], clf.input_shape
    V = torch.as_tensor(V, device=z.device, dtype=z.dtype)
    if V.dim() == len(shape) + 1 and B == 1:
        V = V.unsqueeze(0)
    if tuple(V.shape[:1]) != (B,) or tuple(V.shape[2:]) != shape:
        raise GeometryError(f"V must have shape (B={B}, n, {', '.join(map(str, shape))}), got {tuple(V.shape)}")
    k = _labels(k, B, z.device, "k")
    j = _labels(j, B, z.device, "j")
    _check_classes(clf, k, j)
    if estimator == "fd":
        h = default_step(clf) if step is None else float(step)
        if not h > 0:
            raise GeometryError(f"finite-difference step must be positive, got {step}")
    outs = []
    for s in range(0, V.shape[1], chunk):
        Vc = V[:, s:s + chunk]
        if estimator == "exact":
            outs.append(_hvp_exact(clf, z.detach(), k, j, Vc, engine).detach())
        else:
            outs.append(_hvp_fd(clf, z.detach(), k, j, Vc, h))
    if not outs:
        return torch.empty_like(V)
    return torch.cat(outs, dim=1)


# ------------------------------------------------------------------ operators
class Operator:
    """A symmetric linear operator on R^d (a d x d matrix we never need to form)."""

    def __init__(self, d: int, dtype: torch.dtype, device: torch.device):
        self.shape = (int(d), int(d))
        self.linear = True  # False for finite differences at a finite step (not exactly linear in V)
        self.dtype = dtype
        self.device = device
        self.hvp_count = 0

    # subclasses implement this on (d, n) tensors of self.dtype on self.device
    def _matmat(self, V: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def matvec(self, V) -> torch.Tensor:
        """``V`` ``(d,)`` or ``(d, n)`` -> the same shape (in the operator's dtype and device)."""
        V = torch.as_tensor(V)
        one = V.dim() == 1
        if V.shape[0] != self.shape[0] or V.dim() > 2:
            raise GeometryError(f"operator of shape {self.shape} got a vector block of shape {tuple(V.shape)}")
        Vm = V.reshape(self.shape[0], -1).to(device=self.device, dtype=self.dtype)
        out = self._matmat(Vm) if Vm.shape[1] else Vm.clone()
        return out[:, 0] if one else out

    def __matmul__(self, V):
        return self.matvec(V)

    def to_scipy(self, dtype=np.float64):
        """A ``scipy.sparse.linalg.LinearOperator`` (NumPy in and out) over this operator."""
        from scipy.sparse.linalg import LinearOperator

        def mv(v):
            v = np.asarray(v)
            out = self.matvec(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)))
            return out.detach().cpu().double().numpy().reshape(v.shape)

        return LinearOperator(self.shape, matvec=mv, matmat=mv, rmatvec=mv, rmatmat=mv, dtype=dtype)

    def dense(self, block: int = 256) -> torch.Tensor:
        """The ``(d, d)`` matrix, built from blocks of identity columns (d products)."""
        d = self.shape[0]
        cols = []
        for s in range(0, d, block):
            E = torch.zeros(d, min(block, d - s), dtype=self.dtype, device=self.device)
            E[torch.arange(s, s + E.shape[1]), torch.arange(E.shape[1])] = 1
            cols.append(self.matvec(E))
        return torch.cat(cols, dim=1)


class HessianOperator(Operator):
    """Hessian of ``F = f_k - f_j`` at one point ``z`` (estimator "exact" or "fd", step h)."""

    def __init__(self, clf: Classifier, z, k: int, j: int, estimator: str = "exact", step: float | None = None,
                 chunk: int = DEFAULT_CHUNK):
        z = clf.as_batch(z)
        if z.shape[0] != 1:
            raise GeometryError(f"a Hessian operator is built at one point; got a batch of {z.shape[0]}")
        super().__init__(clf.dim, clf.dtype, clf.device)
        self.clf, self.z = clf, z.detach()
        self.k, self.j = int(k), int(j)
        _check_classes(clf, torch.tensor([self.k]), torch.tensor([self.j]))
        self.estimator = _check_estimator(estimator)
        self.step = (default_step(clf) if step is None else float(step)) if estimator == "fd" else None
        if self.step is not None and not self.step > 0:
            raise GeometryError(f"finite-difference step must be positive, got {step}")
        self.chunk = chunk
        self._graph = None  # (z with grad, grad F with its graph): built once, reused by every product
        self.engine = "fd" if estimator == "fd" else "cached_rev_rev"
        self.linear = estimator == "exact"

    def _cached_graph(self):
        if self._graph is None:
            with torch.enable_grad():
                zz = self.z.clone().requires_grad_(True)
                out = self.clf.module(zz)
                F = out[0, self.k] - out[0, self.j]
                (g,) = torch.autograd.grad(F, zz, create_graph=True)
            self._graph = (zz, g)
        return self._graph

    def _exact_cached(self, V):
        """Double backward through the retained graph of grad F: one backward per vector."""
        zz, g = self._cached_graph()
        if not g.requires_grad:  # grad F does not depend on z (linear, or ReLU/max-pool pieces): H = 0
            return torch.zeros_like(V)
        cols = []
        for v in V.T:
            (hv,) = torch.autograd.grad(g, zz, grad_outputs=v.reshape(zz.shape), retain_graph=True, allow_unused=True)
            cols.append(torch.zeros_like(v) if hv is None else hv.reshape(-1).detach())
        return torch.stack(cols, dim=1)

    def _matmat(self, V):
        n = V.shape[1]
        if self.engine == "cached_rev_rev" and n < SMALL_BLOCK:
            try:
                out = self._exact_cached(V)
                self.hvp_count += n
                return out
            except RuntimeError:
                self.engine, self._graph = "batched", None  # e.g. a module that refuses create_graph
        Vb = V.T.reshape(1, n, *self.clf.input_shape)  # blocks (dense(), block Krylov): vmap over the block
        out = batched_hvp(self.clf, self.z, self.k, self.j, Vb, self.estimator, self.step, self.chunk)
        self.hvp_count += n
        return out.reshape(n, -1).T


class CurvatureOperator(Operator):
    """``P H P / |g|`` at a boundary point: eigenvalues on the tangent space are principal curvatures.

    Attributes: ``hessian`` (the :class:`HessianOperator`), ``gradient`` (d,), ``normal``
    (d,) = g/|g| (pointing into class k, since F = f_k - f_j grows towards k),
    ``gradient_norm``, ``estimator``, ``step``. ``hvp_count`` mirrors the Hessian's."""

    def __init__(self, hessian: HessianOperator, gradient: torch.Tensor):
        super().__init__(hessian.shape[0], hessian.dtype, hessian.device)
        self.hessian = hessian
        self.gradient = gradient.reshape(-1).to(self.dtype)
        gn = float(self.gradient.norm())
        if not gn > 0 or not math.isfinite(gn):
            raise GeometryError("the gradient of f_k - f_j is zero (or not finite) at this point, so the boundary "
                                "has no normal there; pick another image or class pair")
        self.gradient_norm = gn
        self.normal = self.gradient / gn
        self.estimator, self.step = hessian.estimator, hessian.step
        self.linear = hessian.linear

    @property
    def hvp_count(self):
        return self.hessian.hvp_count if hasattr(self, "hessian") else 0

    @hvp_count.setter
    def hvp_count(self, value):
        if hasattr(self, "hessian"):
            self.hessian.hvp_count = value

    def project(self, V):
        """Remove the normal component: ``P V`` for V ``(d,)`` or ``(d, n)``."""
        n = self.normal
        if V.dim() == 1:
            return V - n * (n @ V)
        return V - n[:, None] * (n @ V)[None, :]

    def _matmat(self, V):
        return self.project(self.hessian.matvec(self.project(V))) / self.gradient_norm


def hessian_operator(clf: Classifier, z, k, j, estimator: str = "exact", step: float | None = None) -> HessianOperator:
    """Hessian of ``f_k - f_j`` at a single point z (``*shape`` or ``(1, *shape)``) as an :class:`Operator`."""
    return HessianOperator(clf, z, int(torch.as_tensor(k).reshape(-1)[0]), int(torch.as_tensor(j).reshape(-1)[0]),
                           estimator, step)


def curvature_operator(clf: Classifier, z, k, j, estimator: str = "exact",
                       step: float | None = None) -> CurvatureOperator:
    """``P H P / |grad F|`` of ``F = f_k - f_j`` at z (a boundary point between k and j)."""
    H = hessian_operator(clf, z, k, j, estimator, step)
    g = logit_difference_gradient(clf, H.z, H.k, H.j)[0]
    return CurvatureOperator(H, g)
