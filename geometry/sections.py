"""2-D cross-sections of the decision boundary: planes, chunked grids, adaptive refinement.

A cross-section is the plane ``x0 + a u + b v`` through an image ``x0`` with
orthonormal directions ``(u, v)`` (docs/science.md section 6). Every grid point gets
the model's label and its logit margin (top logit minus runner-up); points that
leave the pixel range are *flagged* (``outside``), never clipped, because a
clipped point is not on the plane.

Planes (:func:`make_plane`, spec strings shared by the CLI and the app):

- ``normal,random`` -- "flat" view: the unit normal at the image's boundary point
  z and a random tangent direction;
- ``normal,curv+`` / ``normal,curv-`` -- "curved" view: the normal and the
  principal direction of the largest positive / most negative curvature at z
  (:func:`geometry.curvature.principal_curvatures`; sign as in docs/science.md);
- ``random,random``; ``adversarial,random`` (``adversarial`` = DeepFool,
  ``adversarial:fgsm``, ``adversarial:pgd``); any two of these tokens;
- ``adversarial,random:valid`` (:data:`VALID_PLANE`) -- "valid images" view: through x0,
  towards DeepFool's boundary point (inside the pixel range) and along a random
  direction clipped to the pixel range (``random:valid``: ``clip(x0 + s g) - x0`` for a
  Gaussian g, ``s`` = :data:`EXTENT_FACTOR` x the DeepFool distance). The pixel range
  is convex, so the triangle x0, boundary point, x0 + that direction holds valid
  images only. On MNIST, where most pixels sit exactly at 0, every other plane
  leaves the range at once (any step lowers some black pixel below 0);
- ``image:REF`` (towards another image, plus a random direction),
  ``images:REF1,REF2`` (the plane through three images), ``npy:U.npy,V.npy``.

Conventions (written once here, tested in tests/test_sections.py):

- :data:`NORMAL_ORIENTATION`: the ``normal`` axis is ``-grad(f_k - f_j)/|.|`` at the
  boundary point z (:func:`geometry.operators.logit_difference_gradient`), i.e. it
  points from the image's class k towards class j, so z sits at ``a > 0``.
- Anchor: planes containing the normal or a curvature direction pass through z
  (both directions are defined *at z*; DeepFool's ``z - x0`` is in general not
  parallel to the normal at z -- measured 0.3 to 2 pixel units off on the bundled
  MNIST models), with (0, 0) at the projection of x0; x0's distance from the plane
  is its marked point's ``offset``. All other planes pass through x0 (origin x0).
  ``anchor="image"`` forces the plane through x0 (see :func:`make_plane`).
- Directions are orthonormalised in the order given (Gram-Schmidt): ``u`` is the
  first direction, ``v`` the component of the second orthogonal to ``u``.
- Random directions are Gaussian from ``torch.Generator().manual_seed(seed)``
  (the second random direction of ``random,random`` uses ``seed + 1``): the same
  seed gives the same plane on any device.
- Curvature estimator for ``curv+``/``curv-``: ``"exact"`` for smooth networks,
  ``"fd"`` (finite differences at :func:`geometry.operators.default_step`) when
  :attr:`Classifier.piecewise_linear` is True or unknown (ReLU networks have an
  exact Hessian of zero almost everywhere) -- see :func:`default_estimator`.
- Labels are ``(res_b, res_a)`` arrays: row = b, column = a.

Adaptive refinement (:func:`adaptive_labels`): evaluate the lattice of every
``coarse_step``-th grid point, then halve the step repeatedly; at each level the
cells whose corners disagree (plus a halo of neighbouring cells) are evaluated at
the finer lattice, the other new points inherit their cell's common label. At
every level, and finally on the full grid, a *closure* pass evaluates every
not-yet-evaluated point that has an 8-neighbour of a different label, until
every label change on the grid lies between two evaluated points.

Guarantee (proved in docs/sections.md, tested on random label maps): the adaptive
map equals the dense map at every grid point whose 8-connected same-label piece of
the dense map contains at least one evaluated point -- in particular everywhere
when every such piece contains a point of the coarse lattice. Only islands of a
class that contain no coarse-lattice point (pockets that slip entirely between
coarse points) can be missed. Imports torch and numpy only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .classifier import Classifier
from .errors import GeometryError
from .serialization import jsonable

DEFAULT_PLANE = "normal,random"
VALID_PLANE = "adversarial,random:valid"
CURVED_PLANE = "normal,curv+"
DEFAULT_RESOLUTION = 129
DEFAULT_COARSE_STEP = 8
DEFAULT_HALO = 1
# Auto extent: half-width of the square = EXTENT_FACTOR x the image's DeepFool distance |z - x0|,
# so the boundary point sits at 1/EXTENT_FACTOR of the way from the centre to the edge.
EXTENT_FACTOR = 2.5
# Planes without a direction towards the boundary (random, user-given): the nearest in-plane crossing is
# searched on SCAN_ANGLES rays at SCAN_RADII geometric radii up to SCAN_MAX_FACTOR x the DeepFool distance.
SCAN_ANGLES = 32
SCAN_RADII = 40
SCAN_MAX_FACTOR = 40.0
# Planes that contain other marked points grow so that each sits inside this fraction of the half-width.
MARKED_MARGIN = 1.25
# Points x0 + a u + b v per model call: bounded by elements per chunk so big inputs stay in memory.
MAX_BATCH = 1024
CHUNK_ELEMENTS = 2 ** 22
PIXEL_ATOL = 1e-6
NORMAL_ORIENTATION = "-grad(f_k - f_j)/|grad| at the boundary point z: from the image's class k towards class j"
ATTACKS = ("deepfool", "fgsm", "pgd")
DIRECTION_TOKENS = ("normal", "random", "curv+", "curv-", "adversarial")
PLANE_EXAMPLES = ("normal,random", "adversarial,random:valid", "normal,curv+", "normal,curv-", "random,random", "adversarial,random",
                  "adversarial:fgsm,random", "adversarial:pgd,random", "image:gallery:3:1",
                  "images:gallery:0:1,gallery:0:2", "npy:U.npy,V.npy")
# Lanczos settings for the curved directions: only the extreme pair at each end is drawn, so a loose
# tolerance and a small budget suffice (measured: 19 Hessian-vector products on the GELU MNIST models).
# principal_curvatures' own choice of method is kept (full=None): the finite-difference estimator uses the
# dense symmetrised spectrum up to d = 1024 (Lanczos does not converge on the non-linear fd map of ReLU nets),
# so the curved view shows the same direction as the Curvature page.
CURVATURE_K = 1
CURVATURE_TOL = 1e-3
CURVATURE_MAX_ITER = 60


# ---------------------------------------------------------------- results
@dataclass
class MarkedPoint:
    """A point drawn on the plane: its plane coordinates, its distance from the plane, its label."""

    name: str
    kind: str  # "image", "boundary", "adversarial", "other"
    a: float
    b: float
    offset: float  # L2 distance of the actual point from the plane (0 for points built in the plane)
    label: int | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "a": self.a, "b": self.b, "offset": self.offset,
                "label": self.label}


@dataclass
class Plane:
    """The plane ``origin + a u + b v``; tensors are on the CPU in the model's dtype (picklable, cacheable)."""

    spec: str
    origin: torch.Tensor  # (*input_shape)
    u: torch.Tensor  # (*input_shape), unit
    v: torch.Tensor  # (*input_shape), unit, orthogonal to u
    axis_names: tuple[str, str]
    points: list[MarkedPoint] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    def point(self, a, b) -> torch.Tensor:
        """The image at plane coordinates (a, b): ``(*input_shape)`` for scalars, ``(n, *shape)`` for arrays."""
        a_t = torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=self.origin.dtype).reshape(-1, 1)
        b_t = torch.as_tensor(np.asarray(b, dtype=np.float64), dtype=self.origin.dtype).reshape(-1, 1)
        flat = self.origin.reshape(1, -1) + a_t * self.u.reshape(1, -1) + b_t * self.v.reshape(1, -1)
        out = flat.reshape(-1, *self.origin.shape)
        return out[0] if np.ndim(a) == 0 and np.ndim(b) == 0 else out

    def coords(self, x) -> tuple[float, float, float]:
        """(a, b, offset) of an image: its projection's coordinates and its distance from the plane."""
        d = torch.as_tensor(x).reshape(-1).double() - self.origin.reshape(-1).double()
        u, v = self.u.reshape(-1).double(), self.v.reshape(-1).double()
        a = float(d @ u)
        b = float(d @ v)
        rest = d - a * u - b * v
        return a, b, float(rest.norm())


@dataclass
class CrossSection:
    """Labels, margins and pixel-range flags of a plane on a ``(res_b, res_a)`` grid (row = b, column = a).

    ``margins`` is NaN where the adaptive grid inferred a label without evaluating it
    (``evaluated`` is False there); ``outside`` marks points outside the pixel range."""

    labels: np.ndarray
    margins: np.ndarray
    outside: np.ndarray
    evaluated: np.ndarray
    a: np.ndarray
    b: np.ndarray
    plane: Plane
    class_names: list[str]
    evaluations: int
    dense_evaluations: int
    seconds: float
    params: dict

    # convenient views of the plane
    @property
    def u(self) -> torch.Tensor:
        return self.plane.u

    @property
    def v(self) -> torch.Tensor:
        return self.plane.v

    @property
    def origin(self) -> torch.Tensor:
        return self.plane.origin

    @property
    def points(self) -> list[MarkedPoint]:
        return self.plane.points

    @property
    def extent(self) -> float:
        return float(self.params["extent"])

    @property
    def resolution(self) -> int:
        return int(self.params["resolution"])

    @property
    def outside_count(self) -> int:
        return int(self.outside.sum())

    def classes_present(self) -> list[int]:
        return sorted(int(c) for c in np.unique(self.labels))

    def boundary_fraction(self) -> float:
        """Fraction of neighbouring grid pairs (horizontal and vertical) whose labels differ."""
        L = self.labels
        pairs = L[:, 1:].size + L[1:, :].size
        return float(((L[:, 1:] != L[:, :-1]).sum() + (L[1:, :] != L[:-1, :]).sum()) / max(pairs, 1))

    def summary(self) -> dict:
        """JSON-ready settings and numbers (everything but the big arrays)."""
        return {"plane": self.plane.spec, "extent": self.extent, "resolution": self.resolution,
                "evaluations": self.evaluations, "dense_evaluations": self.dense_evaluations,
                "outside_pixel_range": self.outside_count, "seconds": round(self.seconds, 4),
                "axis_names": list(self.plane.axis_names), "class_names": list(self.class_names),
                "classes_present": self.classes_present(),
                "points": [p.to_dict() for p in self.plane.points],
                "plane_info": jsonable(self.plane.info), "params": jsonable(self.params)}

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays of the section (for NPZ export): labels, margins, masks, axes, plane vectors, points."""
        pts = self.plane.points
        return {"labels": self.labels, "margins": self.margins, "outside": self.outside,
                "evaluated": self.evaluated, "a": self.a, "b": self.b,
                "u": self.plane.u.numpy(), "v": self.plane.v.numpy(), "origin": self.plane.origin.numpy(),
                "point_names": np.array([p.name for p in pts], dtype=str),
                "point_ab": np.array([[p.a, p.b] for p in pts], dtype=np.float64).reshape(-1, 2),
                "point_offsets": np.array([p.offset for p in pts], dtype=np.float64)}


# ---------------------------------------------------------------- planes
def default_estimator(clf: Classifier) -> str:
    """Curvature estimator used for ``curv+``/``curv-`` by default: ``"exact"`` for smooth networks,
    ``"fd"`` when the network is piecewise linear (exact Hessian zero a.e.) or cannot be inspected."""
    return "exact" if clf.piecewise_linear is False else "fd"


def random_direction(shape, seed: int, dtype=torch.float64) -> torch.Tensor:
    """A unit Gaussian direction, reproducible from ``seed`` (drawn on the CPU in float64)."""
    g = torch.Generator().manual_seed(int(seed))
    r = torch.randn(int(np.prod(shape)), generator=g, dtype=torch.float64)
    return (r / r.norm()).reshape(shape).to(dtype)


def orthonormalize(u, v, names=("u", "v")) -> tuple[torch.Tensor, torch.Tensor]:
    """Gram-Schmidt in float64: ``u/|u|`` and the part of ``v`` orthogonal to it, normalised.

    Raises :class:`GeometryError` when a direction is zero or the two are parallel."""
    shape, dtype = u.shape, u.dtype
    uf = u.reshape(-1).to(torch.float64)
    vf = v.reshape(-1).to(torch.float64)
    nu = float(uf.norm())
    if not nu > 1e-12 or not math.isfinite(nu):
        raise GeometryError(f"the first plane direction ({names[0]}) is zero or not finite; choose another plane")
    uf = uf / nu
    nv = float(vf.norm())
    if not nv > 1e-12 or not math.isfinite(nv):
        raise GeometryError(f"the second plane direction ({names[1]}) is zero or not finite; choose another plane")
    for _ in range(2):  # twice is enough (Kahan): orthogonal to machine precision
        vf = vf - (uf @ vf) * uf
    rest = float(vf.norm())
    if rest < 1e-6 * nv:
        raise GeometryError(f"the plane directions {names[0]} and {names[1]} are parallel, so they span no plane; "
                            "choose two different directions")
    return uf.reshape(shape).to(dtype), (vf / rest).reshape(shape).to(dtype)


def _split_top(spec: str) -> tuple[str, list[str]]:
    """'normal,random' -> ('pair', ['normal','random']); 'image:REF' -> ('image', [REF]); etc."""
    s = spec.strip()
    if not s:
        raise GeometryError("the plane is empty; use e.g. " + ", ".join(PLANE_EXAMPLES[:5]))
    for kind in ("images", "image", "npy"):
        if s.startswith(kind + ":"):
            rest = s[len(kind) + 1:]
            refs = [r.strip() for r in rest.split(",")] if kind != "image" else [rest.strip()]
            want = {"images": 2, "image": 1, "npy": 2}[kind]
            if len(refs) != want or not all(refs):
                form = {"images": "images:REF1,REF2", "image": "image:REF", "npy": "npy:U.npy,V.npy"}[kind]
                raise GeometryError(f"plane {spec!r} must look like {form} (REF: a PNG/JPEG/.npy path or "
                                    "gallery:CLASS:INDEX)")
            return kind, refs
    toks = [t.strip().lower() for t in s.split(",")]
    if len(toks) != 2:
        raise GeometryError(f"plane {spec!r} must name two directions separated by a comma, or be image:REF, "
                            f"images:REF1,REF2 or npy:U.npy,V.npy; examples: {', '.join(PLANE_EXAMPLES)}")
    for t in toks:
        base, _, qual = t.partition(":")
        if base not in DIRECTION_TOKENS:
            raise GeometryError(f"unknown plane direction {t!r} in {spec!r}; use {', '.join(DIRECTION_TOKENS)} "
                                "(adversarial:fgsm / adversarial:pgd, curv+:fd / curv+:exact), or image:REF, "
                                "images:REF1,REF2, npy:U.npy,V.npy")
        if base == "adversarial" and qual and qual not in ATTACKS:
            raise GeometryError(f"unknown attack {qual!r} in {t!r}; use one of {', '.join(ATTACKS)}")
        if base.startswith("curv") and qual and qual not in ("exact", "fd"):
            raise GeometryError(f"unknown curvature estimator {qual!r} in {t!r}; use exact or fd")
        if base == "random" and qual and qual != "valid":
            raise GeometryError(f"unknown random direction {t!r}; use random or random:valid (clipped to the "
                                "pixel range)")
        if base == "normal" and qual:
            raise GeometryError(f"direction {base!r} takes no qualifier, got {t!r}")
    return "pair", toks


def parse_plane(spec: str) -> tuple[str, list[str]]:
    """Validate a plane spec and return ``(kind, parts)`` (kind: pair, image, images, npy)."""
    return _split_top(spec)


def _load_direction(path: str, clf: Classifier) -> torch.Tensor:
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise GeometryError(f"direction file {path!r} does not exist; give a .npy array of shape {clf.input_shape} "
                            f"or ({clf.dim},)")
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a user error here
        raise GeometryError(f"{path!r} is not a plain .npy array ({type(exc).__name__}); pickled arrays are never "
                            "loaded") from None
    return direction_from_array(arr, clf, path)


def direction_from_array(arr, clf: Classifier, name: str = "direction") -> torch.Tensor:
    """Check a user direction (shape ``input_shape``, ``(1, *input_shape)`` or ``(d,)``) and return it as a tensor."""
    a = np.asarray(arr)
    if a.dtype == object or not np.issubdtype(a.dtype, np.number):
        raise GeometryError(f"{name} holds {a.dtype} data; a direction must be a numeric array")
    if a.size != clf.dim:
        raise GeometryError(f"{name} has shape {a.shape} ({a.size} values); the model's input has {clf.dim} values "
                            f"(shape {clf.input_shape})")
    if not np.isfinite(a).all():
        raise GeometryError(f"{name} contains NaN or infinite values")
    return torch.from_numpy(a.astype(np.float64).reshape(clf.input_shape))


class _Context:
    """Lazily computed facts about x0 shared by the directions of one plane (boundary point, curvature)."""

    def __init__(self, clf, x0, seed, estimator, step, boundary, image_loader):
        self.clf, self.x0, self.seed = clf, x0, int(seed)
        self.estimator, self.step = estimator, step
        self._boundary = boundary
        self._curv = None
        self.image_loader = image_loader
        self.info: dict = {}
        self.points: list[MarkedPoint] = []
        self.random_count = 0

    @property
    def boundary(self):
        if self._boundary is None:
            from .boundary import boundary_point

            self._boundary = boundary_point(self.clf, self.x0.unsqueeze(0))
        b = self._boundary
        if not self.info.get("_boundary_noted"):
            self.info.update(label=int(b.label[0]), boundary_label=int(b.boundary_label[0]),
                             boundary_distance=float(b.norms()[0]), boundary_converged=bool(b.converged[0]),
                             boundary_residual=float(b.residual[0]), boundary_clipped=bool(b.clipped[0]),
                             _boundary_noted=True)
        return b

    def normal(self) -> torch.Tensor:
        from .operators import logit_difference_gradient

        b = self.boundary
        if not bool(b.converged[0]):
            self.info.setdefault("warnings", []).append(
                "the boundary point did not converge (residual %.2g); the normal is approximate" % float(b.residual[0]))
        z = b.point
        g = logit_difference_gradient(self.clf, z, b.side_label, b.boundary_label)[0]
        gn = float(g.norm())
        if not gn > 0:
            raise GeometryError("the gradient of f_k - f_j vanishes at the boundary point, so there is no normal; "
                                "pick another image or plane")
        self.info["gradient_norm"] = gn
        self.mark_boundary()
        return (-g / gn).cpu()

    def mark_boundary(self):
        if not any(p[1] == "boundary" for p in self.points):
            self.points.append(("boundary point z", "boundary", self.boundary.point[0].cpu()))

    def curvature(self, qual: str):
        est = qual or self.estimator or default_estimator(self.clf)
        if self._curv is None or self._curv.estimator != est:
            from .curvature import principal_curvatures

            self._curv = principal_curvatures(self.clf, self.x0.unsqueeze(0), estimator=est, step=self.step,
                                              k=CURVATURE_K, boundary=self.boundary, tol=CURVATURE_TOL,
                                              max_iter=CURVATURE_MAX_ITER)
            c = self._curv
            self.info.update(estimator=c.estimator, step=c.step, curvatures=np.asarray(c.curvatures).tolist(),
                             curvature_method=c.method,
                             lanczos=(dict(k=CURVATURE_K, tol=CURVATURE_TOL, max_iter=CURVATURE_MAX_ITER)
                                      if c.method == "lanczos" else None),
                             curvature_hvps=int(c.hvp_count), curvature_converged=bool(np.all(c.converged)),
                             estimator_reason=("given" if (qual or self.estimator) else
                                               ("auto: smooth network -> exact Hessian" if est == "exact" else
                                                "auto: piecewise-linear (or unknown) network -> finite differences")))
            if getattr(c, "warning", None):
                self.info.setdefault("warnings", []).append(str(c.warning))
        return self._curv

    def random(self, qual: str = "") -> torch.Tensor:
        s = self.seed + self.random_count
        self.random_count += 1
        self.info.setdefault("random_seeds", []).append(s)
        g = random_direction(self.clf.input_shape, s)
        if qual == "valid":
            # a step from x0 that stays inside the (convex) pixel range: clip(x0 + scale g) - x0
            lo, hi = self.clf.pixel_range
            scale = EXTENT_FACTOR * max(float(self.boundary.norms()[0]), 1e-3 * self.clf.pixel_span)
            x0 = self.x0.cpu().to(torch.float64).reshape(g.shape)
            g = (x0 + scale * g).clamp(lo, hi) - x0
            if not float(g.norm()) > 1e-12:
                raise GeometryError("no pixel of this image can move inside the pixel range; choose another plane")
            self.info["random_valid_scale"] = scale
        elif qual:
            raise GeometryError(f"unknown random direction 'random:{qual}' (use 'random' or 'random:valid')")
        return g

    def adversarial(self, attack: str) -> torch.Tensor:
        from .attacks import fgsm, pgd
        from .boundary import deepfool

        clf = self.clf
        x = self.x0.unsqueeze(0).to(clf.device, clf.dtype)
        attack = attack or "deepfool"
        k = clf.predict(x)
        if attack == "deepfool":
            res = deepfool(clf, x)
            xa = res.point
        else:
            # L2 budget: a little beyond the DeepFool distance, so the attack can cross the boundary
            eps = 1.25 * max(float(self.boundary.norms()[0]), 1e-3 * clf.pixel_span)
            if attack == "fgsm":
                xa = fgsm(clf, x, k, eps, norm="l2", pixel_range=clf.pixel_range)
            else:
                gen = torch.Generator().manual_seed(self.seed)
                xa = pgd(clf, x, k, eps, norm="l2", steps=20, pixel_range=clf.pixel_range, generator=gen)
            self.info[f"{attack}_eps"] = eps
        la = int(clf.predict(xa)[0])
        self.info.update(attack=attack, adversarial_label=la, adversarial_distance=float((xa - x).norm()))
        self.points.append((f"adversarial ({attack})", "adversarial", xa[0].cpu()))
        d = (xa - x)[0].cpu()
        if not float(d.norm()) > 0:
            raise GeometryError(f"the {attack} attack did not move the image (the gradient vanishes); "
                                "pick another plane")
        return d

    def image(self, ref, name: str) -> torch.Tensor:
        t = self.image_loader(ref) if self.image_loader else _default_loader(self.clf)(ref)
        t = torch.as_tensor(t).reshape(self.clf.input_shape).to(torch.float64)
        self.points.append((name, "image", t))
        return t - self.x0.cpu().to(torch.float64)


def _default_loader(clf):
    from .images import load_image

    def load(ref):
        return load_image(ref, clf).tensor

    return load


def _direction(ctx: _Context, token: str) -> tuple[torch.Tensor, str]:
    base, _, qual = token.partition(":")
    if base == "normal":
        n = ctx.normal()
        k, j = ctx.info["label"], ctx.info["boundary_label"]
        names = ctx.clf.class_names
        return n, f"normal at z ({names[k]} -> {names[j]})"
    if base == "random":
        return ctx.random(qual), "random direction" if not qual else "random direction inside the pixel range"
    if base in ("curv+", "curv-"):
        c = ctx.curvature(qual)
        col = 0 if base == "curv+" else c.directions.shape[1] - 1
        kappa = float(np.asarray(c.curvatures)[col])
        if base == "curv+" and kappa <= 0:
            ctx.info.setdefault("warnings", []).append(
                f"no positive curvature found (largest {kappa:.3g}); the curv+ direction is the least negative one")
        if base == "curv-" and kappa >= 0:
            ctx.info.setdefault("warnings", []).append(
                f"no negative curvature found (smallest {kappa:.3g}); the curv- direction is the least positive one")
        ctx.info[f"{base}_curvature"] = kappa
        ctx.mark_boundary()
        h = f", h={c.step:.3g}" if c.step else ""
        return c.directions[:, col].detach().cpu().reshape(ctx.clf.input_shape), \
            f"curvature direction {'+' if base == 'curv+' else '-'} (kappa={kappa:.3g}, {c.estimator}{h})"
    if base == "adversarial":
        return ctx.adversarial(qual), f"adversarial ({qual or 'deepfool'})"
    raise GeometryError(f"unknown plane direction {token!r}")


def make_plane(clf: Classifier, x, spec: str = DEFAULT_PLANE, *, seed: int = 0, estimator: str | None = None,
               step: float | None = None, boundary=None, image_loader: Callable | None = None,
               directions: tuple | None = None, anchor: str = "auto") -> Plane:
    """Build the plane ``x0 + a u + b v`` named by ``spec`` (see the module docstring) around image ``x``.

    ``estimator`` (None, "exact", "fd") and ``step`` choose the curvature estimator of ``curv+``/``curv-``
    (None: :func:`default_estimator`); ``boundary`` may pass a precomputed
    :func:`geometry.boundary.boundary_point` result for x; ``image_loader(ref) -> tensor`` resolves image
    references (default :func:`geometry.images.load_image`); ``directions=(U, V)`` gives the two arrays of an
    ``npy:`` plane directly (the app uses it for uploads).

    ``anchor``: where the plane passes. ``"image"``: through x0 (origin x0). ``"boundary"``: through the
    boundary point z, shifted from x0 by the part of ``z - x0`` orthogonal to (u, v), so (0, 0) is the
    projection of x0 and x0 lies ``points[0].offset`` off the plane. ``"auto"`` (default): ``"boundary"`` for
    planes that contain the normal or a curvature direction (both are defined *at z*, and DeepFool's ``z - x0``
    is in general not parallel to the normal at z), ``"image"`` for the others."""
    if estimator not in (None, "exact", "fd"):
        raise GeometryError(f"estimator must be None (auto), 'exact' or 'fd', got {estimator!r}")
    x0 = clf.as_batch(x)[0].detach()
    kind, parts = parse_plane(spec) if directions is None else ("npy", list(spec.partition(":")[2].split(",")))
    ctx = _Context(clf, x0, seed, estimator, step, boundary, image_loader)
    _ = ctx.boundary  # every plane records the image's label and DeepFool distance (used for the auto extent)
    if kind == "pair":
        (d1, n1), (d2, n2) = _direction(ctx, parts[0]), _direction(ctx, parts[1])
    elif kind == "image":
        d1, n1 = ctx.image(parts[0], f"image {parts[0]}"), f"towards {parts[0]}"
        d2, n2 = ctx.random(), "random direction"
    elif kind == "images":
        d1, n1 = ctx.image(parts[0], f"image {parts[0]}"), f"towards {parts[0]}"
        d2, n2 = ctx.image(parts[1], f"image {parts[1]}"), f"towards {parts[1]} (orthogonalised)"
    else:
        if directions is not None:
            d1 = direction_from_array(directions[0], clf, "first direction")
            d2 = direction_from_array(directions[1], clf, "second direction")
        else:
            d1, d2 = _load_direction(parts[0], clf), _load_direction(parts[1], clf)
        n1, n2 = f"direction {parts[0] or 'U'}", f"direction {parts[1] if len(parts) > 1 else 'V'} (orthogonalised)"
    u, v = orthonormalize(d1.cpu().to(torch.float64), d2.cpu().to(torch.float64), (n1, n2))
    dtype = clf.dtype
    at_boundary = kind == "pair" and any(t.partition(":")[0] in ("normal", "curv+", "curv-") for t in parts)
    if anchor not in ("auto", "boundary", "image"):
        raise GeometryError(f"anchor must be 'auto', 'boundary' or 'image', got {anchor!r}")
    through_z = anchor == "boundary" or (anchor == "auto" and at_boundary)
    origin = x0.cpu().to(torch.float64)
    if through_z:
        # shift the plane (by the part of z - x0 orthogonal to it) so that it passes through z; the centre
        # (0, 0) is then the projection of x0 onto the plane
        r = ctx.boundary.point[0].cpu().to(torch.float64).reshape(-1) - origin.reshape(-1)
        uf, vf = u.reshape(-1), v.reshape(-1)
        s = r - (uf @ r) * uf - (vf @ r) * vf
        origin = origin + s.reshape(origin.shape)
        ctx.mark_boundary()
    plane = Plane(spec, origin.to(dtype), u.to(dtype), v.to(dtype), (n1, n2), [], {})
    marks = [("image x0", "image", x0.cpu())] + ctx.points
    labels = clf.predict(torch.stack([t.to(dtype) for _, _, t in marks])).tolist()
    for (name, kind_, t), label in zip(marks, labels):
        a, b, off = plane.coords(t.to(torch.float64))
        plane.points.append(MarkedPoint(name, kind_, a, b, off, int(label)))
    info = {k: v for k, v in ctx.info.items() if not k.startswith("_")}
    info.update(seed=int(seed), spec=spec, model=clf.name, dim=clf.dim, anchor="boundary" if through_z else "image",
                image_offset=plane.points[0].offset)
    plane.info = info
    if kind == "npy" or (kind == "pair" and all(t == "random" for t in parts)):
        # no direction of this plane points at the boundary: find the nearest crossing within the plane
        r_max = SCAN_MAX_FACTOR * max(float(info.get("boundary_distance", 0.0)), 1e-3 * clf.pixel_span)
        dist, n = in_plane_boundary_distance(clf, plane, r_max)
        info.update(in_plane_boundary_distance=dist, scan=dict(angles=SCAN_ANGLES, radii=SCAN_RADII, r_max=r_max,
                                                              evaluations=n))
        if not math.isfinite(dist):
            info.setdefault("warnings", []).append(
                f"no boundary crosses this plane within {r_max:.3g} of its centre (scanned {SCAN_ANGLES} rays); "
                "the default extent shows a single class -- enlarge the extent or choose another plane")
    return plane


# ---------------------------------------------------------------- grids
def grid_axes(extent: float, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) coordinates: ``resolution`` points evenly from -extent to +extent on each axis."""
    ax = np.linspace(-float(extent), float(extent), int(resolution))
    return ax.copy(), ax.copy()


def batch_size_for(clf: Classifier, batch_size: int | None = None) -> int:
    """Points per model call: ``batch_size`` or min(MAX_BATCH, CHUNK_ELEMENTS / d)."""
    if batch_size is not None:
        if int(batch_size) < 1:
            raise GeometryError(f"batch size must be >= 1, got {batch_size}")
        return int(batch_size)
    return max(1, min(MAX_BATCH, CHUNK_ELEMENTS // max(clf.dim, 1)))


class PlaneEvaluator:
    """Labels and logit margins at plane coordinates, in chunks on the model's device."""

    def __init__(self, clf: Classifier, plane: Plane, batch_size: int | None = None):
        self.clf = clf
        dev, dt = clf.device, clf.dtype
        self.origin = plane.origin.reshape(1, -1).to(dev, dt)
        self.u = plane.u.reshape(1, -1).to(dev, dt)
        self.v = plane.v.reshape(1, -1).to(dev, dt)
        self.batch = batch_size_for(clf, batch_size)
        self.count = 0

    def points(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``(n, *shape)`` images at coordinates a, b (tensors of shape (n,) on the device)."""
        flat = self.origin + a[:, None] * self.u + b[:, None] * self.v
        return flat.reshape(-1, *self.clf.input_shape)

    def __call__(self, a, b) -> tuple[np.ndarray, np.ndarray]:
        """Labels (int64) and margins (float64) at coordinate arrays a, b of equal length."""
        a = np.asarray(a, dtype=np.float64).reshape(-1)
        b = np.asarray(b, dtype=np.float64).reshape(-1)
        n = a.size
        labels = np.empty(n, dtype=np.int64)
        margins = np.empty(n, dtype=np.float64)
        dev, dt = self.clf.device, self.clf.dtype
        with torch.no_grad():
            for s in range(0, n, self.batch):
                at = torch.as_tensor(a[s:s + self.batch], device=dev, dtype=dt)
                bt = torch.as_tensor(b[s:s + self.batch], device=dev, dtype=dt)
                logits = self.clf.module(self.points(at, bt))
                top = logits.topk(2, dim=1)
                labels[s:s + self.batch] = top.indices[:, 0].cpu().numpy()
                margins[s:s + self.batch] = (top.values[:, 0] - top.values[:, 1]).double().cpu().numpy()
        self.count += n
        return labels, margins


def outside_mask(clf: Classifier, plane: Plane, a: np.ndarray, b: np.ndarray, atol: float = PIXEL_ATOL,
                 batch_size: int | None = None) -> np.ndarray:
    """``(len(b), len(a))`` bool: True where ``origin + a u + b v`` leaves the pixel range (by more than atol).

    No model call: each pixel's constraint is linear in (a, b); computed in chunks of rows on the device."""
    lo, hi = clf.pixel_range
    dev, dt = clf.device, clf.dtype
    o, u, v = (t.reshape(-1).to(dev, dt) for t in (plane.origin, plane.u, plane.v))
    at = torch.as_tensor(a, device=dev, dtype=dt)
    out = np.empty((len(b), len(a)), dtype=bool)
    rows = max(1, batch_size_for(clf, batch_size) // max(len(a), 1))
    with torch.no_grad():
        base = o[None, :] + at[:, None] * u[None, :]  # (n_a, d)
        for s in range(0, len(b), rows):
            bt = torch.as_tensor(b[s:s + rows], device=dev, dtype=dt)
            pts = base[None] + bt[:, None, None] * v[None, None, :]  # (rows, n_a, d)
            bad = ((pts < lo - atol) | (pts > hi + atol)).any(dim=2)
            out[s:s + rows] = bad.cpu().numpy()
    return out


def _lattice(n: int, step: int) -> np.ndarray:
    """Indices 0, step, 2 step, ... and always the last index n - 1."""
    idx = np.arange(0, n, step)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def _closure_targets(lab: np.ndarray, ev: np.ndarray) -> np.ndarray:
    """Points not yet evaluated that have an 8-neighbour (in this array) with a different label."""
    need = np.zeros_like(ev)
    for sl_p, sl_q in (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
                       ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
                       ((slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None))),
                       ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1)))):
        diff = lab[sl_p] != lab[sl_q]
        need[sl_p] |= diff
        need[sl_q] |= diff
    return need & ~ev


def _dilate(mask: np.ndarray, halo: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(halo):
        m = out.copy()
        m[1:, :] |= out[:-1, :]
        m[:-1, :] |= out[1:, :]
        m[:, 1:] |= out[:, :-1]
        m[:, :-1] |= out[:, 1:]
        m[1:, 1:] |= out[:-1, :-1]
        m[:-1, :-1] |= out[1:, 1:]
        m[1:, :-1] |= out[:-1, 1:]
        m[:-1, 1:] |= out[1:, :-1]
        out = m
    return out


def adaptive_labels(evaluate: Callable, n_b: int, n_a: int, coarse_step: int = DEFAULT_COARSE_STEP,
                    halo: int = DEFAULT_HALO, progress: Callable | None = None):
    """Label a ``(n_b, n_a)`` grid with few calls of ``evaluate(ib, ia) -> (labels, margins)`` (index arrays).

    Coarse lattice (every ``coarse_step``-th index, a power of two) -> halve the step; at each level the
    cells whose corners disagree, dilated by ``halo`` cells, are evaluated on the finer lattice, the rest
    inherit their corners' common label; a closure pass at every level (and finally on the full grid)
    evaluates every unevaluated point next to a label change until none is left.
    Returns ``(labels, margins, evaluated)``; margins are NaN where not evaluated.
    Guarantee: see the module docstring and docs/sections.md."""
    if coarse_step < 1 or (coarse_step & (coarse_step - 1)):
        raise GeometryError(f"coarse_step must be a power of two >= 1, got {coarse_step}")
    if halo < 0:
        raise GeometryError(f"halo must be >= 0, got {halo}")
    labels = np.full((n_b, n_a), -1, dtype=np.int64)
    margins = np.full((n_b, n_a), np.nan)
    evaluated = np.zeros((n_b, n_a), dtype=bool)
    s = coarse_step
    while s > 1 and s >= max(n_a, n_b):
        s //= 2
    levels = int(math.log2(s)) + 1
    done_levels = 0

    def run(ib, ia):
        if ib.size == 0:
            return
        lab, mar = evaluate(ib, ia)
        labels[ib, ia] = lab
        margins[ib, ia] = mar
        evaluated[ib, ia] = True

    def report(msg):
        if progress is not None:
            progress(min(1.0, done_levels / levels), msg)

    ib_s, ia_s = _lattice(n_b, s), _lattice(n_a, s)
    B, A = np.meshgrid(ib_s, ia_s, indexing="ij")
    run(B.ravel(), A.ravel())
    while True:
        grid = np.ix_(ib_s, ia_s)
        # closure on this level's lattice
        while True:
            need = _closure_targets(labels[grid], evaluated[grid])
            if not need.any():
                break
            qb, qa = np.nonzero(need)
            run(ib_s[qb], ia_s[qa])
        done_levels += 1
        report(f"level {done_levels}/{levels}: {int(evaluated.sum())} evaluations")
        if s == 1:
            break
        h = s // 2
        ib_h, ia_h = _lattice(n_b, h), _lattice(n_a, h)
        sub = labels[grid]
        disagree = ((sub[:-1, :-1] != sub[1:, :-1]) | (sub[:-1, :-1] != sub[:-1, 1:]) |
                    (sub[:-1, :-1] != sub[1:, 1:]))
        active = _dilate(disagree, halo).astype(np.int64)
        # membership of fine lattice indices in coarse cells (closed intervals), per axis
        Mb = ((ib_s[:-1][None, :] <= ib_h[:, None]) & (ib_h[:, None] <= ib_s[1:][None, :])).astype(np.int64)
        Ma = ((ia_s[:-1][None, :] <= ia_h[:, None]) & (ia_h[:, None] <= ia_s[1:][None, :])).astype(np.int64)
        in_active = (Mb @ active @ Ma.T) > 0
        fine = np.ix_(ib_h, ia_h)
        ev_h = evaluated[fine]
        on_coarse = np.isin(ib_h, ib_s)[:, None] & np.isin(ia_h, ia_s)[None, :]
        to_eval = in_active & ~ev_h
        to_fill = ~in_active & ~on_coarse & ~ev_h
        # inherit: the label of the top-left corner of a containing (inactive, uniform) cell
        cb = np.clip(np.searchsorted(ib_s, ib_h, side="right") - 1, 0, len(ib_s) - 2)
        ca = np.clip(np.searchsorted(ia_s, ia_h, side="right") - 1, 0, len(ia_s) - 2)
        inherit = sub[np.ix_(cb, ca)]
        fb, fa = np.nonzero(to_fill)
        labels[ib_h[fb], ia_h[fa]] = inherit[fb, fa]
        qb, qa = np.nonzero(to_eval)
        run(ib_h[qb], ia_h[qa])
        s, ib_s, ia_s = h, ib_h, ia_h
    return labels, margins, evaluated


def dense_labels(evaluate: Callable, n_b: int, n_a: int):
    """Every grid point evaluated: ``(labels, margins, evaluated)``."""
    B, A = np.meshgrid(np.arange(n_b), np.arange(n_a), indexing="ij")
    lab, mar = evaluate(B.ravel(), A.ravel())
    return lab.reshape(n_b, n_a), mar.reshape(n_b, n_a), np.ones((n_b, n_a), dtype=bool)


def in_plane_boundary_distance(clf: Classifier, plane: Plane, r_max: float, angles: int = SCAN_ANGLES,
                               radii: int = SCAN_RADII, batch_size: int | None = None) -> tuple[float, int]:
    """Smallest radius at which the label changes along ``angles`` rays from the plane's centre.

    Radii are geometric from ``r_max / 100`` to ``r_max`` (about 12 % apart for 40 radii), so the answer is
    accurate to that ratio. Returns ``(distance, evaluations)``; distance is ``inf`` when no ray crosses."""
    th = np.linspace(0.0, 2 * np.pi, int(angles), endpoint=False)
    rs = np.geomspace(r_max / 100.0, r_max, int(radii))
    A = np.concatenate([[0.0], (rs[None, :] * np.cos(th)[:, None]).ravel()])
    B = np.concatenate([[0.0], (rs[None, :] * np.sin(th)[:, None]).ravel()])
    labels, _ = PlaneEvaluator(clf, plane, batch_size)(A, B)
    changed = labels[1:].reshape(len(th), len(rs)) != labels[0]
    hit = changed.any(axis=1)
    if not hit.any():
        return float("inf"), len(A)
    first = np.argmax(changed, axis=1)
    return float(rs[first[hit]].min()), len(A)


def default_extent(plane: Plane, factor: float = EXTENT_FACTOR) -> float:
    """Half-width of the square: ``factor`` x the distance to the nearest boundary, grown so every marked point
    is inside (at ``1/MARKED_MARGIN`` of the half-width).

    The distance is the DeepFool distance |z - x0|, except for planes without the normal, adversarial or
    curvature directions (random and user-given planes), whose nearest boundary crossing is much farther:
    there it is the in-plane distance found by :func:`in_plane_boundary_distance` (``plane.info``)."""
    r = float(plane.info.get("boundary_distance", 0.0))
    scanned = plane.info.get("in_plane_boundary_distance")
    if scanned is not None and math.isfinite(scanned):
        r = float(scanned)
    ext = factor * r
    far = max([max(abs(p.a), abs(p.b)) for p in plane.points] + [0.0])
    ext = max(ext, MARKED_MARGIN * far)
    if not ext > 0:
        ext = 1.0
    return float(ext)


def _check_grid_args(extent, resolution):
    if not isinstance(resolution, (int, np.integer)) or resolution < 3:
        raise GeometryError(f"resolution must be an integer >= 3 (points per axis), got {resolution!r}")
    if resolution > 2049:
        raise GeometryError(f"resolution {resolution} is too large (at most 2049 points per axis)")
    if extent is not None and not (math.isfinite(float(extent)) and float(extent) > 0):
        raise GeometryError(f"extent must be a positive number (half-width in L2 pixel units), got {extent!r}")


def section_on_plane(clf: Classifier, plane: Plane, *, extent: float | None = None,
                     resolution: int = DEFAULT_RESOLUTION, adaptive: bool = True,
                     coarse_step: int = DEFAULT_COARSE_STEP, halo: int = DEFAULT_HALO,
                     batch_size: int | None = None, progress: Callable | None = None) -> CrossSection:
    """Evaluate a plane on a ``resolution x resolution`` grid over ``[-extent, extent]^2``.

    ``extent`` None -> :func:`default_extent`. ``adaptive`` uses :func:`adaptive_labels` (same labels as the
    dense grid under the stated guarantee, far fewer model evaluations)."""
    _check_grid_args(extent, resolution)
    t0 = time.perf_counter()
    ext = default_extent(plane) if extent is None else float(extent)
    a, b = grid_axes(ext, resolution)
    ev = PlaneEvaluator(clf, plane, batch_size)

    def evaluate(ib, ia):
        return ev(a[ia], b[ib])

    if adaptive:
        labels, margins, evaluated = adaptive_labels(evaluate, len(b), len(a), coarse_step, halo, progress)
    else:
        if progress is not None:
            progress(0.0, f"evaluating {len(a) * len(b)} points")
        labels, margins, evaluated = dense_labels(evaluate, len(b), len(a))
    outside = outside_mask(clf, plane, a, b, batch_size=batch_size)
    if progress is not None:
        progress(1.0, f"{ev.count} evaluations")
    params = {"plane": plane.spec, "extent": ext, "extent_auto": extent is None, "resolution": int(resolution),
              "adaptive": bool(adaptive), "coarse_step": int(coarse_step) if adaptive else None,
              "halo": int(halo) if adaptive else None, "seed": plane.info.get("seed"),
              "batch_size": ev.batch, "model": clf.name, "device": clf.device.type,
              "dtype": str(clf.dtype).replace("torch.", ""), "pixel_range": list(clf.pixel_range),
              "normal_orientation": NORMAL_ORIENTATION}
    for key in ("estimator", "step", "label", "boundary_label", "boundary_distance", "attack"):
        if key in plane.info:
            params[key] = plane.info[key]
    return CrossSection(labels, margins, outside, evaluated, a, b, plane, list(clf.class_names), ev.count,
                        len(a) * len(b), time.perf_counter() - t0, params)


def cross_section(clf: Classifier, x, plane: str | Plane = DEFAULT_PLANE, *, extent: float | None = None,
                  resolution: int = DEFAULT_RESOLUTION, adaptive: bool = True, seed: int = 0,
                  estimator: str | None = None, step: float | None = None,
                  coarse_step: int = DEFAULT_COARSE_STEP, halo: int = DEFAULT_HALO, batch_size: int | None = None,
                  boundary=None, image_loader: Callable | None = None, directions: tuple | None = None,
                  anchor: str = "auto", progress: Callable | None = None) -> CrossSection:
    """The cross-section of the decision regions of ``clf`` in a plane through image ``x``.

    Parameters
    ----------
    x : one image (``input_shape`` or ``(1, *input_shape)``), in pixel space.
    plane : a spec string (module docstring; default ``"normal,random"``) or a :class:`Plane`.
    extent : half-width of the square in L2 pixel units; None -> ``EXTENT_FACTOR`` x the DeepFool distance
        (grown to contain every marked point).
    resolution : grid points per axis (default :data:`DEFAULT_RESOLUTION`).
    adaptive : refine only near label changes (see :func:`adaptive_labels`); False evaluates every point.
    seed : seed of the random directions.
    anchor : "auto" (through z for normal/curvature planes, else through x0), "boundary" or "image".
    estimator, step : curvature estimator for ``curv+``/``curv-`` (None: :func:`default_estimator`).
    progress : optional ``progress(fraction, message)`` callback.

    Returns a :class:`CrossSection` (labels ``(resolution, resolution)``, row = b, column = a)."""
    _check_grid_args(extent, resolution)
    if progress is not None:
        progress(0.0, "building the plane (boundary point, directions)")
    if isinstance(plane, str):
        plane = make_plane(clf, x, plane, seed=seed, estimator=estimator, step=step, boundary=boundary,
                           image_loader=image_loader, directions=directions, anchor=anchor)
    return section_on_plane(clf, plane, extent=extent, resolution=resolution, adaptive=adaptive,
                            coarse_step=coarse_step, halo=halo, batch_size=batch_size, progress=progress)


@dataclass
class PlanePoint:
    """The image at one point of a plane and what the model says about it."""

    a: float
    b: float
    image: torch.Tensor  # (*input_shape), CPU
    probabilities: np.ndarray
    label: int
    margin: float
    in_pixel_range: bool
    distance: float  # |a u + b v| = distance from the plane's origin


def inspect_point(clf: Classifier, plane: Plane, a: float, b: float) -> PlanePoint:
    """The image ``origin + a u + b v`` (not clipped), its class probabilities, label, margin, range check."""
    x = plane.point(float(a), float(b)).to(clf.device, clf.dtype).unsqueeze(0)
    logits = clf.logits(x)[0]
    top = logits.topk(2)
    return PlanePoint(float(a), float(b), x[0].cpu(), torch.softmax(logits, 0).cpu().double().numpy(),
                      int(top.indices[0]), float(top.values[0] - top.values[1]), bool(clf.in_pixel_range(x)[0]),
                      float(math.hypot(a, b)))


def label_map_text(labels: np.ndarray, width: int = 64) -> str:
    """A character map of a label array (subsampled to at most ``width`` columns), top row = largest b."""
    n_b, n_a = labels.shape
    step = max(1, math.ceil(n_a / width))
    sub = labels[::step, ::step][::-1]
    chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return "\n".join("".join(chars[c] if 0 <= c < len(chars) else "?" for c in row) for row in sub)


# ---------------------------------------------------------------- margin surface (3-D view)
DEFAULT_SURFACE_RESOLUTION = 65


def margin_surface(clf: Classifier, plane: Plane, label: int, extent: float | None = None,
                   resolution: int = DEFAULT_SURFACE_RESOLUTION, batch_size: int | None = None,
                   progress: Callable | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The signed margin of class ``label`` over a plane: ``m(a, b) = f_label(x) - max_{c != label} f_c(x)`` at
    ``x = origin + a u + b v`` on a dense ``resolution x resolution`` grid over ``[-extent, extent]^2``.

    ``m > 0`` exactly where the model predicts ``label`` (ties aside), ``m < 0`` elsewhere; the zero level is the
    boundary of the region of ``label``. Unlike :attr:`CrossSection.margins` (top logit minus runner-up, always
    >= 0) the sign says on which side of that boundary a point is, so it can be drawn as a surface.
    ``extent`` None -> :func:`default_extent`. Points outside the pixel range are evaluated as they are (not
    clipped), as for the cross-section. Returns ``(a, b, margin)`` with margin ``(len(b), len(a))`` float64,
    row = b, column = a (as :class:`CrossSection`); evaluated in chunks of ``batch_size`` points without gradients."""
    _check_grid_args(extent, resolution)
    n_cls = len(clf.class_names)
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= int(label) < n_cls:
        raise GeometryError(f"label must be a class index from 0 to {n_cls - 1}, got {label!r}")
    label = int(label)
    ext = default_extent(plane) if extent is None else float(extent)
    a, b = grid_axes(ext, resolution)
    B, A = np.meshgrid(b, a, indexing="ij")
    fa, fb = A.ravel(), B.ravel()
    ev = PlaneEvaluator(clf, plane, batch_size)
    dev, dt = clf.device, clf.dtype
    out = np.empty(fa.size, dtype=np.float64)
    with torch.no_grad():
        for s in range(0, fa.size, ev.batch):
            at = torch.as_tensor(fa[s:s + ev.batch], device=dev, dtype=dt)
            bt = torch.as_tensor(fb[s:s + ev.batch], device=dev, dtype=dt)
            logits = clf.module(ev.points(at, bt)).double()
            own = logits[:, label].clone()
            logits[:, label] = -torch.inf
            out[s:s + ev.batch] = (own - logits.max(dim=1).values).cpu().numpy()
            if progress is not None:
                progress(min(1.0, (s + ev.batch) / fa.size), f"{min(s + ev.batch, fa.size)} of {fa.size} points")
    return a, b, out.reshape(len(b), len(a))
