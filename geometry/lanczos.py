"""Signed extreme eigenpairs of symmetric operators: Lanczos with full reorthogonalisation and thick restarts.

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

Memory (docs/scale.md). The basis and its products are two ``d x b`` arrays, allocated once:
``b`` = every product of the budget for small problems (``budget * d <= UNRESTARTED_ELEMENTS``,
i.e. up to 4 Mi elements per array: exactly the unrestarted algorithm), else ``b = max(4k + 4, 20)``
columns (:func:`basis_columns`). When the basis is full it is *thick-restarted* in place: the
``max(2k, b/2)`` extreme Ritz vectors (half from each end) and their products replace it, and the
Krylov sequence continues from the last residual direction. The basis is stored in float64 for
float64 operators and for ``d < FLOAT32_BASIS_MIN_DIM``, in float32 above (a float32 operator's
products carry float32 precision anyway; the tolerance is floored at ``50 eps``). Peak extra memory
of :func:`signed_eigs` is therefore about ``(2b + 4k + 4) d`` basis-dtype numbers (basis, products,
Ritz vectors and residuals of the ``2k`` pairs, a few work vectors), plus the ``2k`` returned vectors:
at k = 5, d = 150,528 that is 72 d float32 numbers = 43 MB, instead of two ``d x budget`` float64
arrays (480 MB at budget 200). bench/bench_memory.py measures it.

Operators that are not exactly linear (``op.linear`` False: finite differences at a finite step,
whose map ``v -> |v| (g(z + h v/|v|) - g(z - h v/|v|)) / 2h`` is odd and homogeneous but not additive
on a piecewise-linear network) have no eigenvectors of their own: on mnist_lenet_relu a block
Rayleigh-Ritz iteration on the map's own products (tried while writing this) left residuals above 40%
of the largest value after 290 products. What the solver diagonalises is the *symmetrised
finite-difference operator on the explored basis*, ``A_B = sym(sum_i A(q_i) q_i^T)``, the linear
operator defined by the products actually spent (the full spectrum does the same on the pixel basis).
Its Ritz pairs have no residual inside span(Q), so the residual is the part of ``A(Q) s - theta Q s``
outside span(Q), and the run is converged when every selected pair has it ``<= max(tol, value_tol) *
max|theta|`` (``value_tol`` = 1e-2 by default). The in-basis part, the map's asymmetry, is reported as
``EigResult.asymmetry``: the values depend on the basis by about that much (docs/scale.md compares the
pixel basis). This runs unrestarted (:func:`_lanczos_unrestarted`: a restart discards the products that
define the operator, and measured, it stops convergence) but keeps no products array: the Gram-Schmidt
coefficients give the projected matrix and the residuals, so its memory is the basis alone, allocated 32
columns at a time as it grows: ``d x (products + 32)`` numbers of the basis dtype at most (e.g. 130
products at d = 150,528 in float32: 160 columns, 96 MB; bounded by ``max_iter``, not by k).

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
# are converged when every selected pair's residual outside the basis is at most VALUE_TOL * max|theta|
# (module docstring).
VALUE_TOL = 1e-2
FLOAT32_BASIS_MIN_DIM = 65_536   # float32 basis for float32 operators from this d on
UNRESTARTED_ELEMENTS = 2 ** 22   # budget * d up to this: the basis holds every product (no restart)
MIN_BASIS_COLUMNS = 20           # restarted basis: max(4k + 4, MIN_BASIS_COLUMNS) columns
RESTART_ROWS = 8192              # rows per block of the in-place restart
BASIS_BLOCK = 32                 # unrestarted (fd) basis: allocated this many columns at a time


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
    """Classical Gram-Schmidt, twice ("twice is enough"), against each basis in ``bases``. A basis stored in a
    lower precision than ``w`` (float32 basis, float64 vector) is applied in ``w``'s precision, a block of rows
    at a time."""
    for _ in range(2):
        for Bm in bases:
            if Bm is None or not Bm.shape[1]:
                continue
            if Bm.dtype == w.dtype:
                w = w - Bm @ (Bm.T @ w)
                continue
            c = torch.zeros(Bm.shape[1], dtype=w.dtype, device=w.device)
            for r in range(0, Bm.shape[0], RESTART_ROWS):
                c += Bm[r:r + RESTART_ROWS].to(w.dtype).T @ w[r:r + RESTART_ROWS]
            w = w.clone()
            for r in range(0, Bm.shape[0], RESTART_ROWS):
                w[r:r + RESTART_ROWS] -= Bm[r:r + RESTART_ROWS].to(w.dtype) @ c
    return w


def _select(m: int, k: int) -> np.ndarray:
    """Indices (into ascending Ritz values) of the k smallest and k largest, ascending."""
    if 2 * k >= m:
        return np.arange(m)
    return np.concatenate([np.arange(k), np.arange(m - k, m)])


def basis_dtype(op_dtype: torch.dtype, d: int) -> torch.dtype:
    """Storage dtype of the Krylov basis: float64 for float64 operators and for ``d < FLOAT32_BASIS_MIN_DIM``;
    float32 for float32 operators at larger d (their products carry float32 precision anyway, and the
    tolerance is floored at ``50 * eps`` of float32)."""
    return torch.float64 if op_dtype == torch.float64 or d < FLOAT32_BASIS_MIN_DIM else torch.float32


def basis_columns(k: int, d_eff: int, budget: int, d: int) -> int:
    """Columns of the Krylov basis kept at once (module docstring, *Memory*): every product of the budget when
    ``budget * d <= UNRESTARTED_ELEMENTS`` (small problems: no restart, exact as before), else
    ``max(4 k + 4, 20)`` (thick restart keeps the ``2 k`` wanted Ritz vectors and as many neighbours)."""
    if budget * d <= UNRESTARTED_ELEMENTS:
        return min(budget, d_eff)
    return min(d_eff, budget, max(4 * int(k) + 4, MIN_BASIS_COLUMNS))


def signed_eigs(op, k: int = 10, *, tol: float = 1e-6, max_iter: int | None = None, seed: int = 0,
                exclude=None, value_tol: float = VALUE_TOL, basis: int | None = None,
                storage: torch.dtype | None = None) -> EigResult:
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
    value_tol : for operators with ``linear = False`` (finite differences): the relative residual floor; the
        residual is measured outside the basis (module docstring).
    basis : columns of the basis kept at once (default :func:`basis_columns`); bounds the memory. Linear operators
        only: a finite-difference operator keeps its whole basis (module docstring).
    storage : dtype of the stored basis (default :func:`basis_dtype`).

    Returns an :class:`EigResult` (values descending; ``converged`` False when the budget ran out)."""
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise GeometryError(f"k must be a positive integer, got {k!r}")
    if not tol > 0:
        raise GeometryError(f"tol must be positive, got {tol}")
    d = op.shape[0]
    dev, odt = op.device, op.dtype
    dt = basis_dtype(odt, d) if storage is None else storage
    if dt not in (torch.float32, torch.float64):
        raise GeometryError(f"storage must be torch.float32 or torch.float64, got {storage}")
    X = _orthonormal(exclude, d, dt, dev)
    d_eff = d - (X.shape[1] if X is not None else 0)
    if d_eff <= 0:
        raise GeometryError("exclude spans the whole space; nothing is left to diagonalise")
    budget = min(d_eff, max(200, 30 * int(k))) if max_iter is None else min(int(max_iter), d_eff)
    if budget < 1:
        raise GeometryError(f"max_iter must be positive, got {max_iter}")
    b = basis_columns(k, d_eff, budget, d) if basis is None else min(int(basis), budget, d_eff)
    if b < min(2 * int(k) + 1, d_eff, budget):
        raise GeometryError(f"basis must hold at least 2k + 1 = {2 * int(k) + 1} columns, got {basis}")
    tol_eff = max(float(tol), 50 * torch.finfo(odt).eps, 50 * torch.finfo(dt).eps)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    if not bool(getattr(op, "linear", True)):
        return _lanczos_unrestarted(op, int(k), max(tol_eff, float(value_tol)), budget, gen, X, d, d_eff, dt)
    start_count = op.hvp_count
    Q = torch.zeros(d, b, dtype=dt, device=dev)
    AQ = torch.zeros(d, b, dtype=dt, device=dev)

    def fresh(m):
        for _ in range(5):
            v = torch.randn(d, generator=gen, dtype=torch.float64).to(device=dev)
            v = _orthogonalise(v, [X, Q[:, :m]])
            nv = v.norm()
            if nv > 1e-8:
                return v / nv
        raise GeometryError("could not find a new direction orthogonal to the Krylov basis")

    q = fresh(0)
    m = 0          # columns in the basis now
    products = 0   # products spent (m + everything dropped at restarts)
    restarts = 0
    seg_vals = None  # Ritz values when the latest fresh Krylov sequence started (after an invariant subspace)
    vals = vecs = res = None
    converged = False
    checked = False
    since_check = 0
    while products < budget:
        Q[:, m] = q
        w = op.matvec(q.to(odt)).to(torch.float64)  # one d-vector in float64: orthogonalised at full precision
        AQ[:, m] = w
        m += 1
        products += 1
        since_check += 1
        checked = False
        wn = w.norm()
        w = _orthogonalise(w, [X, Q[:, :m]])
        beta = w.norm()
        invariant = bool(beta <= 1e-10 * wn) or bool(wn == 0) or m == d_eff
        full = m == b
        if m >= min(2 * k, d_eff) and (since_check >= CHECK_EVERY or invariant or full or products == budget):
            since_check, checked = 0, True
            vals, vecs, res = _ritz(Q[:, :m], AQ[:, :m], k)
            if _converged(vals, res, tol_eff) and _complete(seg_vals, vals, tol_eff):
                converged = True
                break
        if products >= budget:
            break
        if invariant and m < d_eff:
            if full:  # restart first so the fresh vector has room
                m = _thick_restart(Q, AQ, m, k, b)
                restarts += 1
            seg_vals = _ritz(Q[:, :m], AQ[:, :m], k)[0] if m else None
            q = fresh(m)
        elif invariant:
            break  # the basis spans the whole space
        else:
            q = w / beta
            if full:
                m = _thick_restart(Q, AQ, m, k, b)
                restarts += 1
    if vals is None or not checked:
        vals, vecs, res = _ritz(Q[:, :m], AQ[:, :m], k)
        converged = _converged(vals, res, tol_eff) and _complete(seg_vals, vals, tol_eff)
    if m == d_eff and restarts == 0:
        converged = True  # the basis spans the whole space: Rayleigh-Ritz is exact
    order = np.argsort(-vals, kind="stable")
    return EigResult(vals[order], vecs[:, torch.as_tensor(order.copy())].to(odt), op.hvp_count - start_count,
                     bool(converged), res[order], products, "lanczos", _asymmetry(_gram(Q[:, :m], AQ[:, :m])))


def _lanczos_unrestarted(op, k, tol, budget, gen, X, d, d_eff, dt) -> EigResult:
    """Lanczos for a map that is not exactly linear (finite differences): no restart, no stored products.

    Every product ``w = A(q_m)`` is orthogonalised (twice) against X and the basis, and the coefficients are kept:
    ``A(q_m) = sum_{l <= m+1} H[l, m] q_l + X C[:, m]`` holds exactly, so the symmetrised operator of the basis,
    ``sym(Q^T A(Q)) = sym(H[:m, :m])``, and each Ritz pair's residual outside span(Q),
    ``sqrt((H[m, m-1] s_m)^2 + |C s|^2)``, need no ``A Q`` array: memory is the basis alone, allocated
    ``BASIS_BLOCK`` columns at a time as it grows: at most ``d x (products + BASIS_BLOCK)`` numbers of the basis
    dtype. Restarts are not used here: measured on a resnet18 at 3 x 32 x 32, a thick-restarted basis of 24 or 48
    columns left residuals near 0.2 after 300 products where the unrestarted basis converged in 194 (the operator
    is defined by the basis, and a restart discards the products that define it)."""
    dev, odt = op.device, op.dtype
    start = op.hvp_count
    blocks: list[torch.Tensor] = []  # the basis, BASIS_BLOCK columns per block, allocated as it grows

    def basis(m):  # (block, columns used) pairs covering the first m columns
        return [(B, min(BASIS_BLOCK, m - i * BASIS_BLOCK)) for i, B in enumerate(blocks) if i * BASIS_BLOCK < m]

    H = torch.zeros(budget + 1, budget, dtype=torch.float64)
    nx = X.shape[1] if X is not None else 0
    C = torch.zeros(nx, budget, dtype=torch.float64)

    def project(w, m):
        """(w minus its components on X and Q[:, :m], twice; summed coefficients on Q and on X)."""
        h = torch.zeros(m, dtype=torch.float64)
        cx = torch.zeros(nx, dtype=torch.float64)
        for _ in range(2):
            if nx:
                c = X.to(torch.float64).T @ w if X.dtype == torch.float64 else _gram(X, w[:, None])[:, 0]
                w = _orthogonalise_once(w, X, c)
                cx += c.cpu()
            if m:
                c = torch.cat([_gram(B[:, :n], w[:, None])[:, 0] for B, n in basis(m)])
                for i, (B, n) in enumerate(basis(m)):
                    w = _orthogonalise_once(w, B[:, :n], c[i * BASIS_BLOCK:i * BASIS_BLOCK + n])
                h += c.cpu()
        return w, h, cx

    def fresh(m):
        for _ in range(5):
            v, _, _ = project(torch.randn(d, generator=gen, dtype=torch.float64).to(device=dev), m)
            nv = v.norm()
            if nv > 1e-8:
                return v / nv
        raise GeometryError("could not find a new direction orthogonal to the Krylov basis")

    q = fresh(0)
    m = 0
    converged = False
    vals = S = res = None
    since = 0
    while m < budget:
        if m == len(blocks) * BASIS_BLOCK:
            blocks.append(torch.zeros(d, BASIS_BLOCK, dtype=dt, device=dev))
        blocks[-1][:, m % BASIS_BLOCK] = q
        w = op.matvec(q.to(odt)).to(torch.float64)
        wn = w.norm()
        w, h, cx = project(w, m + 1)
        H[:m + 1, m] = h
        if nx:
            C[:, m] = cx
        beta = w.norm()
        m += 1
        since += 1
        invariant = bool(beta <= 1e-10 * wn) or bool(wn == 0) or m == d_eff
        H[m, m - 1] = 0.0 if invariant else float(beta)
        if m >= min(2 * k, d_eff) and (since >= CHECK_EVERY or invariant or m == budget):
            since = 0
            vals, S, res = _ritz_coefficients(H, C, m, k)
            scale = float(np.abs(vals).max()) if len(vals) else 0.0
            if (scale == 0.0 and bool(np.all(res == 0))) or (scale > 0 and bool(np.all(res <= tol * scale))):
                converged = True
                break
        if m >= budget or m == d_eff:
            break
        q = fresh(m) if invariant else w / beta
    if vals is None or since:
        vals, S, res = _ritz_coefficients(H, C, m, k)
        scale = float(np.abs(vals).max()) if len(vals) else 0.0
        converged = (scale == 0.0 and bool(np.all(res == 0))) or (scale > 0 and bool(np.all(res <= tol * scale)))
    V = torch.zeros(d, S.shape[1], dtype=torch.float64, device=dev)
    Sd = S.to(dev)
    for i, (B, n) in enumerate(basis(m)):
        for r in range(0, d, RESTART_ROWS):
            Si = Sd[i * BASIS_BLOCK:i * BASIS_BLOCK + n]
            V[r:r + RESTART_ROWS] += B[r:r + RESTART_ROWS, :n].to(torch.float64) @ Si
    V = V.to(dt)
    order = np.argsort(-vals, kind="stable")
    return EigResult(vals[order], V[:, torch.as_tensor(order.copy())].to(odt), op.hvp_count - start, bool(converged),
                     res[order], m, "lanczos", _asymmetry(H[:m, :m]))


def _orthogonalise_once(w, B, c):
    """``w - B c`` in ``w``'s precision, a block of rows at a time when B is stored in a lower one."""
    c = c.to(device=w.device, dtype=w.dtype)
    if B.dtype == w.dtype:
        return w - B @ c
    w = w.clone()
    for r in range(0, B.shape[0], RESTART_ROWS):
        w[r:r + RESTART_ROWS] -= B[r:r + RESTART_ROWS].to(w.dtype) @ c
    return w


def _ritz_coefficients(H, C, m, k):
    """Ritz values (ascending), coefficient vectors S ``(m, sel)`` and outside-basis residual norms from the
    Lanczos coefficients (:func:`_lanczos_unrestarted`)."""
    M = H[:m, :m]
    theta, S = torch.linalg.eigh((M + M.T) / 2)
    idx = torch.as_tensor(_select(m, int(k)))
    theta, S = theta[idx], S[:, idx]
    r2 = (H[m, m - 1] * S[m - 1, :]) ** 2
    if C.shape[0]:
        r2 = r2 + ((C[:, :m] @ S) ** 2).sum(0)
    return theta.numpy(), S, r2.sqrt().numpy()


def _thick_restart(Q, AQ, m, k, b) -> int:
    """Keep the ``p = max(2k, b // 2)`` extreme Ritz vectors (half from each end) in the first ``p`` columns of Q,
    with their products ``AQ S`` (exact for a linear operator). Done in place, a block of rows at a time, so the
    restart needs no second basis. Returns p."""
    M = _gram(Q[:, :m], AQ[:, :m])
    theta, S = torch.linalg.eigh((M + M.T) / 2)
    idx = _select(m, min(m - 1, max(2 * int(k), b // 2)) // 2)
    p = len(idx)
    Sk = S[:, torch.as_tensor(idx)]
    for r in range(0, Q.shape[0], RESTART_ROWS):  # in place, in float64 a block of rows at a time
        Q[r:r + RESTART_ROWS, :p] = (Q[r:r + RESTART_ROWS, :m].to(torch.float64) @ Sk).to(Q.dtype)
        AQ[r:r + RESTART_ROWS, :p] = (AQ[r:r + RESTART_ROWS, :m].to(torch.float64) @ Sk).to(Q.dtype)
    return p


def _converged(vals, res, tol) -> bool:
    scale = float(np.abs(vals).max()) if len(vals) else 0.0
    if scale == 0.0:
        return bool(np.all(res == 0))
    return bool(np.all(res <= tol * scale))


def _complete(seg_vals, vals, tol) -> bool:
    """After an invariant subspace, a fresh Krylov sequence may hold further copies of a repeated
    eigenvalue: the selection is complete only when the latest sequence changed none of the selected values."""
    if seg_vals is None:
        return True
    scale = max(float(np.abs(vals).max()), 1e-300)
    return len(seg_vals) == len(vals) and bool(np.allclose(seg_vals, vals, atol=max(tol, 1e-12) * scale, rtol=0))


def _asymmetry(M) -> float:
    nm = float(M.norm())
    return float((M - M.T).norm()) / nm if nm > 0 else 0.0


def _gram(A, B) -> torch.Tensor:
    """``A^T B`` accumulated in float64, a block of rows at a time (a float32 basis is never copied whole)."""
    out = torch.zeros(A.shape[1], B.shape[1], dtype=torch.float64, device=A.device)
    for r in range(0, A.shape[0], RESTART_ROWS):
        out += A[r:r + RESTART_ROWS].to(torch.float64).T @ B[r:r + RESTART_ROWS].to(torch.float64)
    return out


def _ritz(Q, AQ, k):
    """Rayleigh-Ritz on span(Q): the selected Ritz values (ascending), vectors and exact residual norms.

    Sums run in float64 a block of rows at a time, so a float32 basis costs no accuracy beyond its storage."""
    Mn = _gram(Q, AQ)
    theta, S = torch.linalg.eigh((Mn + Mn.T) / 2)
    idx = _select(len(theta), int(k))
    theta, S = theta[torch.as_tensor(idx)], S[:, torch.as_tensor(idx)]
    V = torch.empty(Q.shape[0], len(idx), dtype=Q.dtype, device=Q.device)
    r2 = torch.zeros(len(idx), dtype=torch.float64, device=Q.device)
    for r in range(0, Q.shape[0], RESTART_ROWS):
        Vr = Q[r:r + RESTART_ROWS].to(torch.float64) @ S
        V[r:r + RESTART_ROWS] = Vr.to(Q.dtype)
        r2 += ((AQ[r:r + RESTART_ROWS].to(torch.float64) @ S - Vr * theta[None, :]) ** 2).sum(0)
    return theta.cpu().numpy(), V, r2.clamp_min(0).sqrt().cpu().numpy()


def full_spectrum(op, block: int = 256, exclude=None, vectors: bool = True) -> EigResult:
    """Every eigenpair, from the dense matrix built ``block`` columns at a time (``d`` products).

    With ``exclude`` ``(d, m)`` the matrix is restricted to the orthogonal complement of
    those vectors first (``d - m`` pairs), e.g. the tangent space of a boundary. ``vectors=False``
    returns the eigenvalues alone (``vectors`` and ``residuals`` None), by ``eigvalsh``; one excluded
    vector is then removed by a Householder reflection instead of a complete QR (cheaper for many calls)."""
    d = op.shape[0]
    if d > FULL_SPECTRUM_MAX_DIM:
        raise GeometryError(f"the full spectrum needs d = {d} Hessian-vector products and a dense {d}x{d} "
                            f"eigendecomposition; it is offered up to d = {FULL_SPECTRUM_MAX_DIM}. Use signed_eigs "
                            "(Lanczos) for the extreme eigenvalues instead")
    start = op.hvp_count
    A = op.dense(block).to(torch.float64)
    M = (A + A.T) / 2
    if not vectors:
        theta = _complement_values(M, exclude)
        return EigResult(np.sort(theta)[::-1].copy(), None, op.hvp_count - start, True, None, d, "full",
                         _asymmetry(A))
    X = _orthonormal(exclude, d, torch.float64, A.device)
    if X is not None:
        T = _complement(X, d)
        theta, S = torch.linalg.eigh(T.T @ M @ T)
        V = T @ S
    else:
        theta, V = torch.linalg.eigh(M)
    R = (A @ V - V * theta[None, :]).norm(dim=0)
    order = torch.argsort(theta, descending=True)
    return EigResult(theta[order].cpu().numpy(), V[:, order].to(op.dtype), op.hvp_count - start, True,
                     R[order].cpu().numpy(), d, "full", _asymmetry(A))


def _complement_values(M: torch.Tensor, exclude) -> np.ndarray:
    """Eigenvalues of the symmetric ``M`` restricted to the complement of ``exclude`` (unsorted)."""
    d = M.shape[0]
    X = None if exclude is None else torch.as_tensor(exclude).to(device=M.device, dtype=torch.float64)
    if X is not None and X.numel() == d and (X.dim() == 1 or X.shape[1] == 1):
        # one vector n: the reflection H = I - 2 w w^T maps n to +-e1, and H M H without its first row and column
        # is M on n's complement; H M H = M - 2 w (Mw)^T - 2 (Mw) w^T + 4 (w^T M w) w w^T
        n = X.reshape(-1)
        n = n / n.norm()
        e1 = torch.zeros_like(n)
        e1[0] = 1.0
        w = n - e1 if float(n[0]) <= 0 else n + e1  # the stable choice of sign
        w = w / w.norm()
        Mw = M @ w
        B = M - 2 * torch.outer(w, Mw) - 2 * torch.outer(Mw, w) + 4 * (w @ Mw) * torch.outer(w, w)
        return torch.linalg.eigvalsh(B[1:, 1:]).cpu().numpy()
    X = _orthonormal(X, d, torch.float64, M.device)
    if X is None:
        return torch.linalg.eigvalsh(M).cpu().numpy()
    T = _complement(X, d)
    return torch.linalg.eigvalsh(T.T @ M @ T).cpu().numpy()


def _complement(X: torch.Tensor, d: int) -> torch.Tensor:
    """An orthonormal basis ``(d, d - m)`` of the complement of span(X) (X orthonormal ``(d, m)``): the last
    d - m columns of a complete QR of [X, I]."""
    Qf, _ = torch.linalg.qr(torch.cat([X, torch.eye(d, dtype=X.dtype, device=X.device)], 1), mode="complete")
    return Qf[:, X.shape[1]:d]
