"""Signed extreme eigenpairs of symmetric operators: Lanczos with full reorthogonalisation.

Power iteration returns the eigenvalue of largest magnitude and drops its sign;
curvature needs both ends of the spectrum with their signs. :func:`signed_eigs`
builds a Krylov basis of the operator (each new vector is orthogonalised twice
against all previous ones and against ``exclude``), keeps the products ``A Q``, and
extracts Ritz pairs by Rayleigh-Ritz on ``Q^T A Q`` (symmetrised). Because ``A Q`` is
kept, every Ritz pair's residual ``|A v - theta v|`` is exact (for a linear operator)
at no extra product; the run stops when the ``k`` most positive and the ``k`` most
negative Ritz pairs all have residual ``<= tol * max|theta|``. An invariant subspace
(e.g. the sphere, where every curvature is equal) is handled by restarting with a
fresh random vector orthogonal to the basis, which also recovers multiplicities.

:func:`full_spectrum` forms the dense matrix block by block (d products) and calls
``eigh``: ground truth for small d. Imports torch and numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import GeometryError

FULL_SPECTRUM_MAX_DIM = 4096
CHECK_EVERY = 4  # Rayleigh-Ritz every few products once there are 2k vectors
# Operators that are not exactly linear (finite differences at a finite step: ``op.linear`` is False)
# cannot reach small residuals; they are converged when the selected Ritz values moved by less than
# VALUE_TOL * max|theta| since the basis was 3/4 of its current size.
VALUE_TOL = 1e-2


@dataclass
class EigResult:
    """Eigenpairs sorted by value, descending: ``vectors[:, i]`` belongs to ``values[i]``."""

    values: np.ndarray
    vectors: torch.Tensor
    hvp_count: int
    converged: bool
    residuals: np.ndarray
    iterations: int = 0
    method: str = "lanczos"
    asymmetry: float = 0.0  # |M - M^T| / |M| of the projected matrix: 0 for a symmetric linear operator

    def top(self, n: int) -> "EigResult":
        """The ``n`` most positive pairs."""
        return self._take(np.arange(min(n, len(self.values))))

    def bottom(self, n: int) -> "EigResult":
        """The ``n`` most negative pairs (still sorted descending)."""
        m = len(self.values)
        return self._take(np.arange(max(0, m - n), m))

    def _take(self, idx) -> "EigResult":
        return EigResult(self.values[idx], self.vectors[:, torch.as_tensor(idx, dtype=torch.long)], self.hvp_count,
                         self.converged, self.residuals[idx], self.iterations, self.method, self.asymmetry)


def _orthonormal(exclude, d: int, dtype, device) -> torch.Tensor | None:
    if exclude is None:
        return None
    X = torch.as_tensor(exclude).to(device=device, dtype=dtype)
    if X.dim() == 1:
        X = X[:, None]
    if X.shape[0] != d:
        raise GeometryError(f"exclude must have shape (d={d}, m), got {tuple(X.shape)}")
    if X.shape[1] == 0:
        return None
    Qx, R = torch.linalg.qr(X)
    keep = R.diagonal().abs() > 1e-10 * R.diagonal().abs().max().clamp_min(1e-300)
    return Qx[:, keep]


def _orthogonalise(w, bases):
    """Classical Gram-Schmidt, twice ("twice is enough"), against each basis in ``bases``."""
    for _ in range(2):
        for Bm in bases:
            if Bm is not None and Bm.shape[1]:
                w = w - Bm @ (Bm.T @ w)
    return w


def _select(m: int, k: int) -> np.ndarray:
    """Indices (into ascending Ritz values) of the k smallest and k largest, ascending."""
    if 2 * k >= m:
        return np.arange(m)
    return np.concatenate([np.arange(k), np.arange(m - k, m)])


def signed_eigs(op, k: int = 10, *, tol: float = 1e-6, max_iter: int | None = None, seed: int = 0,
                exclude=None, value_tol: float = VALUE_TOL) -> EigResult:
    """The ``k`` most positive and ``k`` most negative eigenpairs of a symmetric operator.

    Parameters
    ----------
    op : an :class:`geometry.operators.Operator` (anything with ``shape``, ``dtype``, ``device``, ``matvec``).
    k : pairs per end (``2k`` in all; all of them when ``2k >= d``).
    tol : relative residual ``|A v - theta v| / max|theta|`` for convergence. It is floored at
        ``50 * eps`` of the operator's dtype (about 6e-6 in float32), below which products are noise.
    max_iter : products budget (default ``min(d, max(200, 30 k))``).
    seed : the random start vector.
    exclude : ``(d, m)`` vectors the basis stays orthogonal to (e.g. the boundary normal).
    value_tol : for operators with ``linear = False`` (finite differences): converged when the selected
        Ritz values changed by at most ``value_tol * max|theta|`` since the basis had 3/4 of its size.

    Returns an :class:`EigResult` (values descending; ``converged`` False when the budget ran out)."""
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise GeometryError(f"k must be a positive integer, got {k!r}")
    if not tol > 0:
        raise GeometryError(f"tol must be positive, got {tol}")
    d = op.shape[0]
    dev, odt = op.device, op.dtype
    dt = torch.float64
    X = _orthonormal(exclude, d, dt, dev)
    d_eff = d - (X.shape[1] if X is not None else 0)
    if d_eff <= 0:
        raise GeometryError("exclude spans the whole space; nothing is left to diagonalise")
    budget = min(d_eff, max(200, 30 * int(k))) if max_iter is None else min(int(max_iter), d_eff)
    if budget < 1:
        raise GeometryError(f"max_iter must be positive, got {max_iter}")
    tol_eff = max(float(tol), 50 * torch.finfo(odt).eps)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    start_count = op.hvp_count
    Q = torch.zeros(d, budget, dtype=dt, device=dev)
    AQ = torch.zeros(d, budget, dtype=dt, device=dev)

    def fresh(m):
        for _ in range(5):
            v = torch.randn(d, generator=gen, dtype=dt).to(dev)
            v = _orthogonalise(v, [X, Q[:, :m]])
            nv = v.norm()
            if nv > 1e-8:
                return v / nv
        raise GeometryError("could not find a new direction orthogonal to the Krylov basis")

    q = fresh(0)
    m = 0
    history: list[tuple[int, np.ndarray]] = []
    segments = [0]  # where each Krylov sequence starts (a new one after every invariant subspace)
    linear = bool(getattr(op, "linear", True))
    vals = vecs = res = None
    converged = False
    last_check = -1
    while m < budget:
        Q[:, m] = q
        w = op.matvec(q.to(odt)).to(dt)
        AQ[:, m] = w
        m += 1
        wn = w.norm()
        w = _orthogonalise(w, [X, Q[:, :m]])
        beta = w.norm()
        invariant = bool(beta <= 1e-10 * wn) or bool(wn == 0)
        if m >= min(2 * k, d_eff) and (m - last_check >= CHECK_EVERY or invariant or m == budget):
            last_check = m
            vals, vecs, res = _ritz(Q[:, :m], AQ[:, :m], k)
            history.append((m, vals))
            if _converged(vals, res, history, tol_eff, linear, value_tol) and \
                    _complete(Q, AQ, m, segments, k, vals, tol_eff):
                converged = True
                break
        if m >= budget:
            break
        if invariant:
            segments.append(m)
            q = fresh(m)
        else:
            q = w / beta
    if vals is None or last_check != m:
        vals, vecs, res = _ritz(Q[:, :m], AQ[:, :m], k)
        history.append((m, vals))
        converged = _converged(vals, res, history, tol_eff, linear, value_tol) and \
            _complete(Q, AQ, m, segments, k, vals, tol_eff)
    if m == d_eff and linear:
        converged = True  # the basis spans the whole space: Rayleigh-Ritz is exact
    order = np.argsort(-vals, kind="stable")
    return EigResult(vals[order], vecs[:, torch.as_tensor(order.copy())].to(odt), op.hvp_count - start_count,
                     bool(converged), res[order], m, "lanczos", _asymmetry(Q[:, :m].T @ AQ[:, :m]))


def _converged(vals, res, history, tol, linear, value_tol) -> bool:
    scale = float(np.abs(vals).max()) if len(vals) else 0.0
    if scale == 0.0:
        return bool(np.all(res == 0))
    if linear:
        return bool(np.all(res <= tol * scale))
    m = history[-1][0]
    older = [v for (mm, v) in history[:-1] if mm <= 0.75 * m and len(v) == len(vals)]
    if not older:
        return False
    return bool(np.abs(older[-1] - vals).max() <= value_tol * scale)


def _complete(Q, AQ, m, segments, k, vals, tol) -> bool:
    """After an invariant subspace, a fresh Krylov sequence may hold further copies of a repeated
    eigenvalue: the selection is complete only when the latest sequence changed none of the selected values."""
    start = segments[-1] if segments[-1] < m else segments[-2] if len(segments) > 1 else 0
    if start == 0:
        return True
    before, _, _ = _ritz(Q[:, :start], AQ[:, :start], k)
    scale = max(float(np.abs(vals).max()), 1e-300)
    return len(before) == len(vals) and bool(np.allclose(before, vals, atol=max(tol, 1e-12) * scale, rtol=0))


def _asymmetry(M) -> float:
    nm = float(M.norm())
    return float((M - M.T).norm()) / nm if nm > 0 else 0.0


def _ritz(Q, AQ, k):
    """Rayleigh-Ritz on span(Q): the selected Ritz values (ascending), vectors and exact residual norms."""
    M = Q.T @ AQ
    M = (M + M.T) / 2
    theta, S = torch.linalg.eigh(M)
    idx = _select(len(theta), int(k))
    S = S[:, torch.as_tensor(idx)]
    V = Q @ S
    R = AQ @ S - V * theta[idx][None, :]
    return theta[idx].cpu().numpy(), V, R.norm(dim=0).cpu().numpy()


def full_spectrum(op, block: int = 256, exclude=None) -> EigResult:
    """Every eigenpair, from the dense matrix built ``block`` columns at a time (``d`` products).

    With ``exclude`` ``(d, m)`` the matrix is restricted to the orthogonal complement of
    those vectors first (``d - m`` pairs), e.g. the tangent space of a boundary."""
    d = op.shape[0]
    if d > FULL_SPECTRUM_MAX_DIM:
        raise GeometryError(f"the full spectrum needs d = {d} Hessian-vector products and a dense {d}x{d} "
                            f"eigendecomposition; it is offered up to d = {FULL_SPECTRUM_MAX_DIM}. Use signed_eigs "
                            "(Lanczos) for the extreme eigenvalues instead")
    start = op.hvp_count
    A = op.dense(block).to(torch.float64)
    M = (A + A.T) / 2
    X = _orthonormal(exclude, d, torch.float64, A.device)
    if X is not None:
        # an orthonormal basis T of the complement of span(X): the last d - m columns of a full QR
        Qf, _ = torch.linalg.qr(torch.cat([X, torch.eye(d, dtype=torch.float64, device=A.device)], 1),
                                mode="complete")
        T = Qf[:, X.shape[1]:d]
        theta, S = torch.linalg.eigh(T.T @ M @ T)
        V = T @ S
    else:
        theta, V = torch.linalg.eigh(M)
    R = (A @ V - V * theta[None, :]).norm(dim=0)
    order = torch.argsort(theta, descending=True)
    return EigResult(theta[order].cpu().numpy(), V[:, order].to(op.dtype), op.hvp_count - start, True,
                     R[order].cpu().numpy(), d, "full", _asymmetry(A))
