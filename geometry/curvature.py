"""Principal curvatures of the decision boundary at the boundary point of an image.

Pipeline: :func:`~geometry.boundary.boundary_point` (DeepFool without overshoot,
then bisection) gives z between k = k(x) and the class j across; the tangent-
projected, gradient-normalised Hessian ``P H P / |grad F|`` of ``F = f_k - f_j``
(:func:`~geometry.operators.curvature_operator`) is diagonalised on the tangent
space: its full spectrum for small d, else its k most positive and k most negative
eigenpairs by Lanczos. Imports torch and numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .boundary import BoundaryResult, boundary_point
from .classifier import Classifier
from .errors import ConvergenceError, GeometryError
from .lanczos import FULL_SPECTRUM_MAX_DIM, EigResult, full_spectrum, signed_eigs
from .operators import ESTIMATORS, curvature_operator

SIGN_CONVENTION = (
    "Principal curvatures are the eigenvalues of P H P / |g| on the tangent space of the boundary at z, where "
    "F = f_k - f_j, k is the label of the original image (for a targeted boundary point: the class the target "
    "beats there), j the class across the boundary, g = grad F(z), "
    "H = Hess F(z), P = I - n n^T, n = g/|g|. A positive curvature along a unit tangent v means F(z + t v) > 0 "
    "for small t: sliding along v heads back into class k (the boundary bends towards class j). Units: 1/pixel-"
    "space length; a sphere of radius R seen from inside (class k inside) has curvature -1/R in every direction."
)
"""The one statement of the curvature sign (docs/science.md section 3); tested in tests/test_curvature.py."""

AUTO_FULL_MAX_DIM = 256  # full=None: dense spectrum up to this d, Lanczos above
# For the finite-difference estimator the map v -> (g(z + h v) - g(z - h v)) / 2h is not linear in v on a
# piecewise-linear network: Lanczos diagonalises the symmetrised operator of the products on its own Krylov basis
# (geometry/lanczos.py, docs/scale.md), the full spectrum that of the pixel basis, a basis-free choice that costs
# d products; full=None uses it up to this d (MNIST's 784 included).
AUTO_FULL_MAX_DIM_FD = 1024


def auto_full(d: int, estimator: str) -> bool:
    """What ``full=None`` means: the dense spectrum for small d, and for finite differences up to 1024."""
    return d <= AUTO_FULL_MAX_DIM or (estimator == "fd" and d <= AUTO_FULL_MAX_DIM_FD)


ZERO_CURVATURE = 1e-7  # |curvature| below this (1/pixel units) counts as exactly zero
FD_ASYMMETRY_WARN = 0.2  # fd: warn when the map's asymmetry |M - M^T| / |M| on its basis exceeds this

PIECEWISE_LINEAR_WARNING = (
    "Every exact curvature is zero: {why} its exact Hessian is zero almost everywhere, so the boundary is flat "
    "between the kinks that autograd cannot see. Use the finite-difference estimator (fd; default step "
    "h={h:.3g}) to measure curvature at the scale h."
)


@dataclass
class CurvatureResult:
    """Principal curvatures at one boundary point (descending) with their tangent directions."""

    boundary: BoundaryResult
    curvatures: np.ndarray
    directions: torch.Tensor
    estimator: str
    step: float | None
    gradient_norm: float
    hvp_count: int
    converged: bool
    warning: str | None
    label: int
    boundary_label: int
    method: str = "lanczos"
    residuals: np.ndarray | None = None
    params: dict = field(default_factory=dict)

    @property
    def boundary_distance(self) -> float:
        return float(self.boundary.norms()[0])

    @property
    def point(self) -> torch.Tensor:
        return self.boundary.point[0]

    @property
    def normal(self) -> torch.Tensor:
        """Unit normal at the boundary point (pointing into class k), in the image's shape."""
        return self.params["normal"]

    def direction_image(self, i: int) -> torch.Tensor:
        """The i-th curvature direction in the image's shape."""
        return self.directions[:, i].reshape(self.boundary.x.shape[1:])

    def positive(self) -> np.ndarray:
        return self.curvatures[self.curvatures > 0]

    def negative(self) -> np.ndarray:
        return self.curvatures[self.curvatures < 0]

    def summary(self) -> dict:
        """JSON-ready fields (the CLI's stable names)."""
        return {"label": self.label, "boundary_label": self.boundary_label,
                "boundary_distance": self.boundary_distance, "gradient_norm": self.gradient_norm,
                "estimator": self.estimator, "step": self.step,
                "curvatures": [float(c) for c in self.curvatures], "hvp_count": int(self.hvp_count),
                "converged": bool(self.converged), "method": self.method, "warning": self.warning,
                "residual": float(self.boundary.residual[0]), "clipped": bool(self.boundary.clipped[0])}

    def arrays(self) -> dict:
        """Arrays for export (NPZ): image, boundary point, perturbation, curvatures, directions, normal."""
        return {"image": self.boundary.x[0], "boundary_point": self.point, "perturbation": self.boundary.perturbation[0],
                "curvatures": self.curvatures, "directions": self.directions.T.reshape(-1, *self.boundary.x.shape[1:]),
                "normal": self.normal}


NOT_COMPUTED_NOTE = (" No Hessian-vector products were spent: the model is known to be piecewise linear, so the exact "
                     "answer is zero almost everywhere (estimator='auto' chooses fd for such models).")


def resolve_estimator(clf: Classifier, estimator: str = "auto") -> str:
    """``"auto"`` -> ``"exact"`` for smooth networks, ``"fd"`` for piecewise-linear or unknown ones (the rule of
    :func:`geometry.subspace.resolve_estimator`); an exact Hessian is never computed for a model known to be
    piecewise linear unless asked for by name (and then not computed either: it is zero almost everywhere)."""
    if estimator == "auto":
        return "exact" if clf.piecewise_linear is False else "fd"
    return estimator


def _flat_spectrum(normal: torch.Tensor, m: int, full: bool, seed: int) -> EigResult:
    """Zero curvatures on ``m - 1`` orthonormal tangent directions, without a Hessian-vector product."""
    d = normal.numel()
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    M = torch.randn(d, m - 1, generator=g, dtype=torch.float64).to(device=normal.device, dtype=normal.dtype)
    Q, _ = torch.linalg.qr(torch.cat([normal.reshape(-1, 1), M], 1))
    vectors = Q[:, 1:m]
    return EigResult(np.zeros(m - 1), vectors, 0, True, np.zeros(m - 1), 0, "full" if full else "lanczos", 0.0)


def _zero_warning(clf: Classifier, step: float) -> str:
    if clf.piecewise_linear:
        why = "the network is piecewise linear (ReLU / max-pooling):"
    else:
        why = "the network behaves as a piecewise-linear function at this point:"
    return PIECEWISE_LINEAR_WARNING.format(why=why, h=step)


def principal_curvatures(clf: Classifier, x, *, estimator: str = "exact", step: float | None = None, k: int = 10,
                         boundary: BoundaryResult | None = None, target=None, full: bool | None = None,
                         tol: float = 1e-6, max_iter: int | None = None, seed: int = 0) -> CurvatureResult:
    """Principal curvatures of the decision boundary at the boundary point of one image.

    Parameters
    ----------
    x : one image (``input_shape`` or ``(1, *input_shape)``) in pixel space.
    estimator : "exact" (autograd Hessian), "fd" (central differences of gradients at step h) or "auto" (exact for
        smooth networks, fd for piecewise-linear or unknown ones). For a model known to be piecewise linear
        (``clf.piecewise_linear`` True) "exact" returns zeros without computing any Hessian-vector product,
        with a warning: that is the exact answer almost everywhere.
    step : finite-difference step h in pixel units (default :func:`geometry.operators.default_step`).
    k : curvatures per end of the spectrum for Lanczos (``2k`` values in all).
    boundary : a :class:`BoundaryResult` of one image to reuse (else :func:`boundary_point` is run).
    target : class for a targeted boundary point (the boundary between the target and the class it beats).
    full : True -> every curvature (d - 1 values, d <= 4096); False -> Lanczos; None -> full when
        d <= ``AUTO_FULL_MAX_DIM``, else Lanczos.

    The sign convention is :data:`SIGN_CONVENTION`. Raises :class:`ConvergenceError` when no
    boundary point was found."""
    if estimator == "auto":
        estimator = resolve_estimator(clf)
    if estimator not in ESTIMATORS:
        raise GeometryError(f"estimator must be 'auto', 'exact' or 'fd', got {estimator!r}")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise GeometryError(f"k must be a positive integer, got {k!r}")
    if boundary is None:
        xb = clf.as_batch(x)
        if xb.shape[0] != 1:
            raise GeometryError(f"principal_curvatures takes one image; got a batch of {xb.shape[0]} (loop over them, "
                                "or pass boundary=result[i])")
        boundary = boundary_point(clf, xb, target=target)
    if len(boundary) != 1:
        raise GeometryError(f"boundary must hold one image, got {len(boundary)}; index it: boundary[i]")
    if not bool(boundary.converged[0]):
        raise ConvergenceError(
            f"no boundary point was found for this image (DeepFool/bisection did not converge; residual "
            f"{float(boundary.residual[0]):.3g}); try another image, a target class, or a larger max_iter")
    if int(boundary.side_label[0]) == int(boundary.boundary_label[0]):
        raise GeometryError(f"the image is already in class {int(boundary.boundary_label[0])}, so there is no boundary "
                            "to cross towards it; choose another target class (or none for the nearest boundary)")
    d = clf.dim
    if full is None:
        full = auto_full(d, estimator)
    if full and d > FULL_SPECTRUM_MAX_DIM:
        raise GeometryError(f"full spectrum is offered up to d = {FULL_SPECTRUM_MAX_DIM} (this model has d = {d}); "
                            "use full=False (Lanczos, k per end)")
    k_cls, j_cls = int(boundary.side_label[0]), int(boundary.boundary_label[0])
    z = boundary.point[:1]
    op = curvature_operator(clf, z, k_cls, j_cls, estimator, step)
    normal = op.normal
    if estimator == "exact" and clf.piecewise_linear:
        eig = _flat_spectrum(normal, d if full else min(2 * k, d - 1) + 1, full, seed)
    elif full:
        eig: EigResult = full_spectrum(op, exclude=normal[:, None])
    else:
        eig = signed_eigs(op, k, tol=tol, max_iter=max_iter, seed=seed, exclude=normal[:, None])
    curv = eig.values
    warning = None
    if estimator == "exact" and clf.piecewise_linear:
        from .operators import default_step

        warning = _zero_warning(clf, default_step(clf)) + NOT_COMPUTED_NOTE
    elif estimator == "exact" and (np.abs(curv).max() if len(curv) else 0.0) <= ZERO_CURVATURE:
        from .operators import default_step

        warning = _zero_warning(clf, default_step(clf))
    elif estimator == "exact" and clf.piecewise_linear:
        warning = ("The network is piecewise linear (ReLU / max-pooling) but the exact curvatures are not all zero: "
                   "they come from smooth parts of the model; the finite-difference estimator (estimator='fd') "
                   "measures the kinks at the scale h.")
    if estimator == "fd" and eig.asymmetry > FD_ASYMMETRY_WARN:
        note = (f"At step h={op.step:.3g} the finite-difference operator is far from a symmetric linear map "
                f"(asymmetry {eig.asymmetry:.2f}): the boundary is not quadratic at this scale, and the values are "
                "the spectrum of its symmetric part on the explored subspace (a smaller h gives a more local "
                "estimate).")
        warning = note if warning is None else warning + " " + note
    if not eig.converged:
        note = (f"Lanczos did not converge within {eig.iterations} Hessian-vector products; the extreme values "
                "are estimates (raise max_iter or lower k).")
        warning = note if warning is None else warning + " " + note
    params = {"k": int(k), "full": bool(full), "tol": float(tol), "seed": int(seed), "target": target,
              "normal": normal.reshape(clf.input_shape), "sign_convention": SIGN_CONVENTION,
              "asymmetry": float(eig.asymmetry), "iterations": int(eig.iterations),
              "boundary": dict(boundary.params)}
    return CurvatureResult(boundary, curv, eig.vectors, estimator, op.step, op.gradient_norm, eig.hvp_count,
                           eig.converged, warning, int(boundary.label[0]), j_cls, eig.method, eig.residuals, params)


def curvature_profile(clf: Classifier, result: CurvatureResult, indices=(0, -1), radius: float | None = None,
                      n: int = 41) -> dict:
    """``F = f_k - f_j`` along ``z + t v_i`` for curvature directions ``v_i``: the sign convention made visible.

    Returns ``{"t": (n,), "F": (len(indices), n), "quadratic": (len(indices), n), "curvatures": (len(indices),),
    "indices": [...]}``, where ``quadratic = kappa * |g| * t^2 / 2`` is the second-order prediction from the
    curvature (F(z) = 0 on the boundary, and v is tangent). ``radius`` defaults to the boundary distance."""
    m = len(result.curvatures)
    idx = [int(i) % m for i in indices]
    r = float(radius) if radius is not None else max(result.boundary_distance, 1e-3)
    z = result.point.reshape(-1).to(torch.float64)
    dev = z.device  # the boundary point lives on the model's device (CUDA included): build t there too
    t = torch.linspace(-r, r, int(n), dtype=torch.float64, device=dev)
    V = result.directions[:, idx].to(device=dev, dtype=torch.float64)  # (d, m)
    pts = z[None, None, :] + t[None, :, None] * V.T[:, None, :]  # (m, n, d)
    logits = clf.logits(pts.reshape(-1, *clf.input_shape).to(clf.dtype)).to(torch.float64)
    k, j = int(result.boundary.side_label[0]), result.boundary_label
    F = (logits[:, k] - logits[:, j]).reshape(len(idx), -1)
    kap = np.asarray(result.curvatures[idx], dtype=np.float64)
    t = t.cpu().numpy()
    quad = kap[:, None] * result.gradient_norm * t[None, :] ** 2 / 2
    return {"t": t, "F": F.cpu().numpy(), "quadratic": quad, "curvatures": kap, "indices": idx}
