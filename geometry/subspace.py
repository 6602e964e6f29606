"""The shared curved subspace S of a classifier (docs/science.md section 4).

At boundary points z_i of many images x_i (``boundary.boundary_point``), with
``F_i = f_{k_i} - f_{j_i}``, gradient ``g_i``, normal ``n_i = g_i / |g_i|`` and
``P_i = I - n_i n_i^T``, the *average curvature operator* is

    A = (1/N) sum_i P_i H_i P_i / |g_i|,

i.e. the mean of the per-point curvature operators of ``operators.curvature_operator``
(same sign convention: :data:`geometry.curvature.SIGN_CONVENTION`, positive = the
boundary bends towards the other class j, so sliding along v from z heads back into
the image's class k). One product ``A V`` costs one batched pass over all N points:
every point's Hessian-vector product comes out of that pass. The signed Lanczos
solver (``lanczos.signed_eigs``) gives the most positive and most negative
eigenpairs of A; S is spanned by the ``m`` eigenvectors with the largest
``|eigenvalue|`` (``select="most"``, default), by the ``m`` most positive / most
negative ones (``"positive"`` / ``"negative"``), or by the ``ceil(m/2)`` most positive
and ``floor(m/2)`` most negative ones (``"both-ends"``). (``signs="both"|"positive"|
"negative"`` is the older name of the first three and still accepted.)

Two constructions of the operator (``construction=``):

- ``"projected"`` (default, docs/science.md section 4): A above, at boundary points.
- ``"paper"``: the construction of the authors' released code (docs/science.md section 4):
  ``A = (1/N) sum_i H_i``, the *raw* Hessians of ``F_i = f_{k_i} - f_{j_i}`` (no tangent
  projection, no division by ``|g_i|``) at ``x_i + 0.8 r_i``, where ``r_i`` is the untargeted
  DeepFool perturbation of ``x_i`` after at most 5 iterations (overshoot 0.05 applied to r, no
  pixel-range clipping), k_i the label of x_i and j_i the label DeepFool reached: a point still
  inside the image's class, short of the boundary. Images DeepFool does not fool in 5
  iterations are left out. Hessian-vector products by central differences of gradients at the
  step h of ``operators.default_step`` (``estimator="auto"`` resolves to ``"fd"`` here, for every
  network), along unit vectors and rescaled. The eigenvalues carry the same sign convention as
  the projected operator (both are second derivatives of f_k - f_j).

Estimators: ``"exact"`` (autograd Hessians; products come from one retained graph
of all N gradients, one backward per Lanczos step), ``"fd"`` (central differences
of gradients at the step h of ``operators.default_step``: curvature at a scale, the
original work's choice and the only one that sees the bends of ReLU networks), and
``"auto"`` = ``"exact"`` for smooth networks, ``"fd"`` otherwise (piecewise-linear
or unknown).

S is saved per model and settings (:func:`model_subspace`; the bundled models also ship S for the
app's default settings, see ``geometry.precomputed``): a ``.npz`` in
:func:`cache_dir` (``$BOUNDARY_GEOMETRY_CACHE`` or ``~/.cache/boundary-geometry``)
named by the model's name, a hash of its weights and a hash of the settings, so
the app and the CLI reuse each other's work. Images for S come from the *training*
split of the model's dataset; the experiments use held-out images.

Imports torch, numpy; never Streamlit or Plotly.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .classifier import Classifier
from .distributed import even_chunks
from .errors import GeometryError
from .operators import Operator, batched_hvp, default_step, logit_difference_gradient

Progress = Callable[[float, str], None]

DEFAULT_IMAGES = 100
DEFAULT_M = 20
SIGNS = ("both", "positive", "negative")
"""The older names of the first three selections (``signs=``): both = most."""
SELECTIONS = ("most", "positive", "negative", "both-ends")
"""Which eigenvectors of the average operator span S: the m largest |eigenvalue|, the m most positive, the m most
negative, or the ceil(m/2) most positive and floor(m/2) most negative (the authors' most / first / last /
first-and-last)."""
CONSTRUCTIONS = ("projected", "paper")
"""How the average operator is built: the projected, normalised curvature operators at boundary points (ours), or
the raw Hessians at x + 0.8 r (the authors' code); see the module docstring."""
DEFAULT_CONSTRUCTION = "projected"
DEFAULT_SELECT = "most"
PAPER_DEEPFOOL_ITER = 5     # DeepFool iterations before the Hessian is taken (the authors' max_iter)
PAPER_OVERSHOOT = 0.05      # the authors' DeepFool overshoot (r = 1.05 x the accumulated steps)
PAPER_FRACTION = 0.8        # the Hessian is taken at x + 0.8 r
_SIGN_TO_SELECT = {"both": "most", "positive": "positive", "negative": "negative"}
_SELECT_TO_SIGN = {"most": "both", "positive": "positive", "negative": "negative", "both-ends": "both"}
ESTIMATORS = ("auto", "exact", "fd")
CACHE_ENV = "BOUNDARY_GEOMETRY_CACHE"
CACHE_VERSION = 3  # 3: DeepFool refinement (boundary points moved)
POINT_CHUNK = 32
"""Boundary points per chunk of a product ``A V`` (at most): each chunk gives its points' terms and the caller sums
them batch by batch, so the numbers are those of one pass over each batch, whether the chunks run here or on Ray
workers (``geometry.distributed``); the chunks depend only on N and ``batch_size``."""
POINT_ALIGN = 8
"""Chunks start at multiples of this many points from their batch's start. On the CPU kernels of this torch a
point's gradient and Hessian products are bitwise the same in any batch whose blocks of 8 rows it shares with the
full batch (other cuts change the last bits of the tail points), so aligned chunks keep the numbers of one pass."""


def _noop(frac: float, msg: str) -> None:  # default progress callback
    pass


# ----------------------------------------------------------------- settings
def resolve_estimator(clf: Classifier, estimator: str = "auto", construction: str = DEFAULT_CONSTRUCTION) -> str:
    """``"auto"`` -> ``"exact"`` for smooth networks, ``"fd"`` for piecewise-linear or unknown ones; with
    ``construction="paper"`` always ``"fd"`` (the authors' central differences)."""
    if estimator not in ESTIMATORS:
        raise GeometryError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {estimator!r}")
    if estimator == "auto":
        if check_construction(construction) == "paper":
            return "fd"
        return "exact" if clf.piecewise_linear is False else "fd"
    return estimator


def check_construction(construction: str) -> str:
    if construction not in CONSTRUCTIONS:
        raise GeometryError(f"construction must be one of {', '.join(CONSTRUCTIONS)}, got {construction!r}")
    return construction


def resolve_select(select: str | None = None, signs: str | None = None) -> str:
    """The selection rule from ``select`` (:data:`SELECTIONS`) and/or its older name ``signs`` (:data:`SIGNS`);
    ``"most"`` when neither is given. Both given and different is an error."""
    if signs is not None and signs not in SIGNS:
        raise GeometryError(f"signs must be one of {', '.join(SIGNS)}, got {signs!r}")
    if select is not None and select not in SELECTIONS:
        raise GeometryError(f"select must be one of {', '.join(SELECTIONS)}, got {select!r}")
    if select is None:
        return _SIGN_TO_SELECT[signs] if signs is not None else DEFAULT_SELECT
    if signs is not None and _SIGN_TO_SELECT[signs] != select:
        raise GeometryError(f"signs={signs!r} (= select {_SIGN_TO_SELECT[signs]!r}) contradicts select={select!r}; "
                            "give one of them")
    return select


def selection_fields(select: str) -> dict:
    """How a selection is recorded in S's settings: ``{"signs": ...}`` exactly as before for most / positive /
    negative (so saved and shipped S keep their keys), plus ``"select"`` only for ``"both-ends"``."""
    out = {"signs": _SELECT_TO_SIGN[select]}
    if select not in _SIGN_TO_SELECT.values():
        out["select"] = select
    return out


def construction_fields(construction: str) -> dict:
    """How a construction is recorded in S's settings: nothing for the default ``"projected"`` (the keys of saved
    and shipped S stay as they were), the construction and the authors' constants for ``"paper"``."""
    if check_construction(construction) == DEFAULT_CONSTRUCTION:
        return {}
    return {"construction": construction, "deepfool_iter": PAPER_DEEPFOOL_ITER, "overshoot": PAPER_OVERSHOOT,
            "fraction": PAPER_FRACTION}


def resolve_step(clf: Classifier, estimator: str, step: float | None) -> float | None:
    """The finite-difference step h in pixels (``operators.default_step`` unless given); None for exact."""
    if estimator != "fd":
        return None
    h = default_step(clf) if step is None else float(step)
    if not h > 0 or not math.isfinite(h):
        raise GeometryError(f"finite-difference step must be a positive number of pixels, got {step}")
    return h


def cache_dir(path: str | Path | None = None) -> Path:
    """Where S (and detector calibrations) are saved: ``path``, else ``$BOUNDARY_GEOMETRY_CACHE``,
    else ``~/.cache/boundary-geometry``."""
    if path:
        return Path(path).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "boundary-geometry"


def model_fingerprint(clf: Classifier) -> str:
    """A short hash of the model's weights, input shape, pixel range and dtype (for cache keys)."""
    h = hashlib.sha1()
    h.update(repr((clf.input_shape, clf.pixel_range, clf.num_classes, str(clf.dtype))).encode())
    try:
        state = clf.module.state_dict()
    except Exception:  # exported programs may refuse; fall back to parameters
        state = {f"p{i}": p for i, p in enumerate(clf.module.parameters())}
    for name in sorted(state):
        t = state[name]
        if isinstance(t, torch.Tensor):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def settings_key(settings: dict) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


# ----------------------------------------------------------------- images
def dataset_images(clf: Classifier, n: int, *, split: str = "train", seed: int = 0):
    """``n`` images ``(n, *input_shape)`` and labels from the model's dataset, stratified by class.

    ``split`` is ``"train"`` (used for S) or ``"held_out"`` (the gallery, used for experiments).
    Images of another shape (foreign models) are converted like the gallery's."""
    from .data import load_split
    from .images import _array_to_pil, convert_pil, gallery_dataset

    if split not in ("train", "held_out"):
        raise GeometryError(f"split must be 'train' or 'held_out', got {split!r}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise GeometryError(f"the number of images must be a positive integer, got {n!r}")
    dataset = gallery_dataset(clf)
    data = load_split(dataset)[0 if split == "train" else 1]
    classes = np.unique(data.y)
    rng = np.random.default_rng(seed)
    per = [rng.permutation(np.flatnonzero(data.y == c)) for c in classes]
    # round-robin over classes so any n is as balanced as possible
    order = [idx[i] for i in range(max(len(p) for p in per)) for idx in per if i < len(idx)]
    if n > len(order):
        raise GeometryError(f"the {dataset} {split} split has {len(order)} images; ask for at most that many")
    keep = np.array(order[:n])
    arr = data.x[keep]
    if tuple(arr.shape[1:]) == clf.input_shape and clf.pixel_range == (0.0, 1.0):
        x = torch.from_numpy(arr.copy())
    else:
        x = torch.stack([convert_pil(_array_to_pil(a[0]), clf, digit_like=False).tensor for a in arr])
    return x, torch.from_numpy(data.y[keep].copy())


# ----------------------------------------------------------------- operator
class AverageCurvatureOperator(Operator):
    """``A = (1/N) sum_i P_i H_i P_i / |g_i|`` over boundary points ``z`` ``(N, *shape)``.

    ``k`` (near-side class, the image's label) and ``j`` (far-side class) are ``(N,)``.
    Each product ``A V`` (V ``(d, n)``) is one batched pass over the N points (in
    chunks of ``batch_size``): with ``"exact"`` a backward pass through a retained
    graph of every point's gradient (built once; ``engine="batched_hvp"`` uses
    ``operators.batched_hvp`` instead, for comparison), with ``"fd"`` ``operators.batched_hvp``.
    ``hvp_count`` counts per-point Hessian-vector products (N per column)."""

    projected = True  # P_i H_i P_i / |g_i|; False in AverageHessianOperator (raw H_i)

    def __init__(self, clf: Classifier, z, k, j, estimator: str = "exact", step: float | None = None,
                 batch_size: int = 256, engine: str = "cached"):
        z = clf.as_batch(z).detach()
        super().__init__(clf.dim, clf.dtype, clf.device)
        self.clf, self.z = clf, z
        self.k = torch.as_tensor(k, device=z.device).reshape(-1).long()
        self.j = torch.as_tensor(j, device=z.device).reshape(-1).long()
        if self.k.numel() != z.shape[0] or self.j.numel() != z.shape[0]:
            raise GeometryError(f"k and j must hold one class per boundary point ({z.shape[0]})")
        if bool((self.k == self.j).any()):
            raise GeometryError("k and j must differ at every boundary point (F = f_k - f_j)")
        self.estimator = resolve_estimator(clf, estimator)
        self.step = resolve_step(clf, self.estimator, step)
        self.batch_size = max(1, int(batch_size))
        if engine not in ("cached", "batched_hvp"):
            raise GeometryError(f"engine must be 'cached' or 'batched_hvp', got {engine!r}")
        self.engine = engine
        self._chunks = self._point_chunks()
        self._states = None
        self.gradient_norms = self.normals = None
        if not self.projected:
            return
        g = logit_difference_gradient(clf, z, self.k, self.j).reshape(z.shape[0], -1)
        gn = g.norm(dim=1)
        if not bool(torch.isfinite(gn).all()) or bool((gn <= 0).any()):
            raise GeometryError("the gradient of f_k - f_j vanishes at some boundary point, so the boundary has no "
                                "normal there; drop that image or use other images")
        self.gradient_norms = gn
        self.normals = g / gn[:, None]

    @property
    def num_points(self) -> int:
        return int(self.z.shape[0])

    def _point_chunks(self) -> list[tuple[int, int]]:
        """The chunks of points of one product: each batch of ``batch_size`` points cut into ranges of at most
        :data:`POINT_CHUNK` (a function of N and batch_size only, the same on every backend)."""
        out = []
        for s in range(0, self.num_points, self.batch_size):
            e = min(s + self.batch_size, self.num_points)
            out += [(s + a, s + b) for a, b in even_chunks(e - s, POINT_CHUNK, POINT_ALIGN)]
        return out

    def _chunk_states(self):
        if self._states is None:
            from .distributed import stateful_chunks

            data = [(self.z[s:e], self.k[s:e], self.j[s:e],
                     None if self.normals is None else self.normals[s:e],
                     None if self.gradient_norms is None else self.gradient_norms[s:e]) for s, e in self._chunks]
            self._states = stateful_chunks(_chunk_init, self.clf, data, self.estimator, self.step, self.engine)
        return self._states

    def close(self) -> None:
        """Free the chunks' states (Ray actors, when the products ran on Ray; geometry.distributed)."""
        if self._states is not None:
            self._states.close()
            self._states = None

    def _matmat(self, V):
        d, n = V.shape
        acc = torch.zeros(d, n, dtype=self.dtype, device=self.device)
        terms = self._chunk_states().map(_chunk_terms, V)  # per point (b, n, d), chunk by chunk
        by_start = dict(zip((s for s, _ in self._chunks), terms))
        for s in range(0, self.num_points, self.batch_size):
            e = min(s + self.batch_size, self.num_points)
            parts = [by_start[a] for a, b in self._chunks if s <= a < e]
            # one sum over the batch's points, exactly as when the whole batch is one pass
            acc += (parts[0] if len(parts) == 1 else torch.cat(parts)).sum(0).T
        self.hvp_count += self.num_points * n
        return acc / self.num_points


class _PointChunk:
    """Points of an average operator (z, k, j and, projected, their normals and |g|), with the graph of their
    gradients built once and reused by every product (``"exact"``). :meth:`terms` gives each point's term of
    ``A V`` before the average: ``P_i H_i P_i V / |g_i|`` (projected) or ``H_i V`` (raw). A point's term does not
    depend on which other points share its chunk."""

    def __init__(self, clf: Classifier, z, k, j, normals, gradient_norms, estimator: str, step: float | None,
                 engine: str):
        self.clf, self.z, self.k, self.j = clf, z, k, j
        self.normals, self.gradient_norms = normals, gradient_norms
        self.estimator, self.step, self.engine = estimator, step, engine
        self._graph_cache = None

    def _graph(self):
        if self._graph_cache is None:
            with torch.enable_grad():
                zz = self.z.clone().requires_grad_(True)
                out = self.clf.module(zz)
                F = (out.gather(1, self.k[:, None]) - out.gather(1, self.j[:, None])).sum()
                (g,) = torch.autograd.grad(F, zz, create_graph=True)
            self._graph_cache = (zz, g)
        return self._graph_cache

    def _hvp(self, V: torch.Tensor) -> torch.Tensor:
        """Hessian products for these points; V ``(b, n, *shape)`` -> ``(b, n, *shape)``."""
        if self.estimator == "fd":
            return batched_hvp(self.clf, self.z, self.k, self.j, V, "fd", self.step)
        if self.engine == "batched_hvp":
            return batched_hvp(self.clf, self.z, self.k, self.j, V, "exact")
        try:
            zz, g = self._graph()
        except RuntimeError:  # a module that refuses create_graph: the contract's batched_hvp
            return batched_hvp(self.clf, self.z, self.k, self.j, V, "exact")
        if not g.requires_grad:  # F is linear in z (piecewise-linear net): exact Hessian is zero
            return torch.zeros_like(V)
        cols = []
        for c in range(V.shape[1]):
            (hv,) = torch.autograd.grad(g, zz, grad_outputs=V[:, c], retain_graph=True, allow_unused=True)
            cols.append(torch.zeros_like(V[:, c]) if hv is None else hv.detach())
        return torch.stack(cols, dim=1)

    def terms(self, V: torch.Tensor) -> torch.Tensor:
        """V ``(d, n)`` -> the points' terms ``(b, n, d)``."""
        d, n = V.shape
        b, shape = self.z.shape[0], self.clf.input_shape
        if self.normals is None:  # raw Hessians: every point gets the same block V
            VB = V.T.unsqueeze(0).expand(b, n, d)
            return self._hvp(VB.reshape(b, n, *shape)).reshape(b, n, d)
        N = self.normals  # (b, d)
        PV = V.T.unsqueeze(0) - (N @ V).unsqueeze(2) * N.unsqueeze(1)  # (b, n, d)
        HV = self._hvp(PV.reshape(b, n, *shape)).reshape(b, n, d)
        PHV = HV - (HV @ N.unsqueeze(2)) * N.unsqueeze(1)
        return PHV / self.gradient_norms[:, None, None]


def _chunk_init(clf: Classifier, data, estimator: str, step: float | None, engine: str) -> _PointChunk:
    """A chunk's state (geometry.distributed.stateful_chunks): its points on the model's device."""
    z, k, j, normals, gn = (None if t is None else t.to(clf.device) for t in data)
    return _PointChunk(clf, z.to(clf.dtype), k, j, normals, gn, estimator, step, engine)


def _chunk_terms(clf: Classifier, state: _PointChunk, V: torch.Tensor) -> torch.Tensor:
    return state.terms(V.to(device=clf.device, dtype=clf.dtype))


class AverageHessianOperator(AverageCurvatureOperator):
    """``A = (1/N) sum_i H_i``: the raw Hessians of ``F_i = f_{k_i} - f_{j_i}`` at the points ``z`` ``(N, *shape)``,
    without tangent projection or division by ``|g_i|`` (the authors' construction, ``construction="paper"``;
    the points are ``x_i + 0.8 r_i``, see :func:`paper_points`). Same estimators, engines and counting as
    :class:`AverageCurvatureOperator`; the gradient may vanish at a point (it is not needed)."""

    projected = False


# ----------------------------------------------------------------- result
@dataclass
class CurvedSubspace:
    """S: ``basis`` ``(d, m)`` orthonormal columns, ordered by ``|eigenvalue|`` (largest first).

    ``eigenvalues`` ``(m,)``: the average curvature of the boundary along each direction
    (eigenvalues of the average curvature operator; docs/science.md sign). ``spectrum``: all
    Ritz values the solver returned (both ends, descending) for plotting. ``settings``
    records how S was made (images, split, seed, m, signs, estimator, step, ...; ``construction``
    and ``select`` only where they are not the defaults, see :attr:`construction`, :attr:`select`)."""

    basis: torch.Tensor
    eigenvalues: np.ndarray
    spectrum: np.ndarray
    input_shape: tuple
    model: str
    fingerprint: str
    settings: dict
    num_points: int
    hvp_count: int
    seconds: float
    converged: bool
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    boundary_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    path: str | None = None
    ritz_vectors: torch.Tensor | None = None  # every eigenpair the solver returned (both ends), for with_signs()
    ritz_values: np.ndarray | None = None

    @property
    def m(self) -> int:
        return int(self.basis.shape[1])

    @property
    def dim(self) -> int:
        return int(self.basis.shape[0])

    @property
    def construction(self) -> str:
        """``"projected"`` or ``"paper"`` (:data:`CONSTRUCTIONS`)."""
        return str(self.settings.get("construction", DEFAULT_CONSTRUCTION))

    @property
    def select(self) -> str:
        """How the directions were chosen (:data:`SELECTIONS`)."""
        return str(self.settings.get("select") or _SIGN_TO_SELECT.get(self.settings.get("signs", "both"),
                                                                       DEFAULT_SELECT))

    @property
    def random_baseline(self) -> float:
        """sqrt(m / d): the typical |P r| / |r| of a random m-dimensional subspace."""
        return math.sqrt(self.m / self.dim)

    def images(self) -> torch.Tensor:
        """The directions as images ``(m, *input_shape)``."""
        return self.basis.T.reshape(self.m, *self.input_shape)

    def basis_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.basis.to(device=x.device, dtype=x.dtype)

    def project(self, r) -> torch.Tensor:
        """Coordinates of each row of ``r`` ``(B, *shape)`` in S: ``(B, m)``."""
        r = torch.as_tensor(r)
        return r.reshape(r.shape[0], -1) @ self.basis_like(r)

    def concentration(self, r) -> torch.Tensor:
        """``|P_S r| / |r|`` per row of ``r`` ``(B, *shape)`` (NaN where r = 0)."""
        r = torch.as_tensor(r)
        flat = r.reshape(r.shape[0], -1)
        nr = flat.norm(dim=1)
        ratio = self.project(r).norm(dim=1) / nr
        return torch.where(nr > 0, ratio, torch.full_like(ratio, float("nan")))

    def with_signs(self, signs: str) -> "CurvedSubspace":
        """S re-selected from the same solver run: the (up to) m most ``"positive"``ly or ``"negative"``ly
        curved directions, or ``"both"`` (the m largest |curvature|). Without the solver's eigenpairs
        (hand-made S) the pool is S's own directions. Same as :meth:`with_select` under the older names."""
        if signs not in SIGNS:
            raise GeometryError(f"signs must be one of {', '.join(SIGNS)}, got {signs!r}")
        return self.with_select(_SIGN_TO_SELECT[signs])

    def with_select(self, select: str) -> "CurvedSubspace":
        """S re-selected from the same solver run by the rule ``select`` (:data:`SELECTIONS`), with m as now;
        identical to computing S with that ``select`` (same images, operator and solver run)."""
        select = resolve_select(select)
        if self.ritz_vectors is not None and self.ritz_values is not None:
            vals, vecs = np.asarray(self.ritz_values), self.ritz_vectors
        else:
            vals, vecs = np.asarray(self.eigenvalues), self.basis
        basis, picked = _select(vals, vecs, self.m, select)
        settings = {k: v for k, v in self.settings.items() if k != "select"}
        settings.update(selection_fields(select), m=int(basis.shape[1]))
        return CurvedSubspace(basis.to(self.basis.dtype), picked, self.spectrum, self.input_shape, self.model,
                              self.fingerprint, settings,
                              self.num_points, self.hvp_count, self.seconds, self.converged, self.labels,
                              self.boundary_labels, self.path, self.ritz_vectors, self.ritz_values)

    def summary(self) -> dict:
        return {"model": self.model, "m": self.m, "d": self.dim, "eigenvalues": [float(v) for v in self.eigenvalues],
                "positive": int((self.eigenvalues > 0).sum()), "negative": int((self.eigenvalues < 0).sum()),
                "num_points": self.num_points, "hvp_count": int(self.hvp_count), "seconds": float(self.seconds),
                "converged": bool(self.converged), "random_baseline": self.random_baseline,
                "construction": self.construction, "select": self.select,
                "settings": dict(self.settings), "cache_path": self.path}

    # ---------------------------------------------------------- persistence
    def save(self, path: str | Path) -> str:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"version": CACHE_VERSION, "input_shape": list(self.input_shape), "model": self.model,
                "fingerprint": self.fingerprint, "settings": self.settings, "num_points": self.num_points,
                "hvp_count": int(self.hvp_count), "seconds": float(self.seconds), "converged": bool(self.converged)}
        tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
        np.savez_compressed(tmp, basis=self.basis.detach().cpu().double().numpy(), eigenvalues=self.eigenvalues,
                            spectrum=self.spectrum, labels=self.labels, boundary_labels=self.boundary_labels,
                            ritz_vectors=(self.ritz_vectors.detach().cpu().double().numpy()
                                          if self.ritz_vectors is not None else np.zeros((self.dim, 0))),
                            ritz_values=(np.asarray(self.ritz_values, dtype=np.float64)
                                         if self.ritz_values is not None else np.zeros(0)),
                            meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)  # atomic: a reader never sees half a file
        self.path = str(path)
        return str(path)

    @classmethod
    def load(cls, path: str | Path) -> "CurvedSubspace":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(str(f["meta"]))
                out = cls(torch.from_numpy(f["basis"].copy()), f["eigenvalues"].copy(), f["spectrum"].copy(),
                          tuple(meta["input_shape"]), meta["model"], meta["fingerprint"], meta["settings"],
                          int(meta["num_points"]), int(meta["hvp_count"]), float(meta["seconds"]),
                          bool(meta["converged"]), f["labels"].copy(), f["boundary_labels"].copy(), str(path),
                          torch.from_numpy(f["ritz_vectors"].copy()) if f["ritz_vectors"].shape[1] else None,
                          f["ritz_values"].copy() if len(f["ritz_values"]) else None)
        except (OSError, KeyError, ValueError) as exc:
            raise GeometryError(f"{path} is not a saved curved subspace ({type(exc).__name__}); delete it and "
                                "compute S again") from None
        if meta.get("version") != CACHE_VERSION:
            raise GeometryError(f"{path} was saved by another version; delete it and compute S again")
        return out

    def for_model(self, clf: Classifier) -> torch.Tensor:
        """The basis on the model's device/dtype, after checking it belongs to a model of this shape."""
        if self.input_shape != clf.input_shape:
            raise GeometryError(f"S was computed for inputs {self.input_shape} but the model takes {clf.input_shape}; "
                                "compute S for this model")
        return self.basis.to(device=clf.device, dtype=clf.dtype)


# ----------------------------------------------------------------- computing S
def default_max_iter(m: int, d: int) -> int:
    """Lanczos budget for S: 5 m products (at least 40, at most d). The finite-difference operator is not
    exactly linear, so its Ritz residuals stall above any tight tolerance; the budget bounds the cost
    (``converged`` says whether the tolerance was met)."""
    return int(min(d, max(40, 5 * m)))


def _select(vals: np.ndarray, vecs: torch.Tensor, m: int, select: str) -> tuple[torch.Tensor, np.ndarray]:
    """Up to m of the eigenpairs ``(vals, vecs)`` by the rule ``select`` (:data:`SELECTIONS`; the older ``signs``
    names are accepted); one-signed rules keep only pairs of that sign, and ``"both-ends"`` takes up to
    ceil(m/2) positive then up to floor(m/2) negative pairs. Returns (orthonormal basis (d, m'), eigenvalues (m',))."""
    select = _SIGN_TO_SELECT.get(select, select)
    zero = 1e-9 * float(np.abs(vals).max()) if len(vals) else 0.0  # round-off is no sign
    positive = np.argsort(-vals, kind="stable")
    positive = positive[vals[positive] > zero]
    negative = np.argsort(vals, kind="stable")
    negative = negative[vals[negative] < -zero]
    if select == "most":
        pick = np.argsort(-np.abs(vals), kind="stable")[:m]
    elif select == "positive":
        pick = positive[:m]
    elif select == "negative":
        pick = negative[:m]
    elif select == "both-ends":
        pick = np.concatenate([positive[:(m + 1) // 2], negative[:m // 2]]).astype(np.int64)
        pick = pick[np.argsort(-np.abs(vals[pick]), kind="stable")]  # S is ordered by |eigenvalue|
    else:
        raise GeometryError(f"select must be one of {', '.join(SELECTIONS)}, got {select!r}")
    if len(pick) == 0:
        what = {"most": "nonzero", "both-ends": "positively or negatively"}.get(select, f"{select}ly")
        raise GeometryError(f"S has no {what} curved direction; use both signs or a larger m")
    idx = torch.as_tensor(pick.copy())
    chosen = vecs[:, idx].to(torch.float64)
    basis, _ = torch.linalg.qr(chosen)  # re-orthonormalise (Ritz vectors are orthonormal up to round-off)
    basis = basis * torch.sign((basis * chosen).sum(0))  # keep each vector's own sign
    return basis, vals[pick]


def _check_m(m: int, d: int) -> int:
    if not isinstance(m, (int, np.integer)) or not 1 <= m < d:
        raise GeometryError(f"m (the dimension of S) must be an integer in 1..{d - 1}, got {m!r}")
    return int(m)


def paper_points(clf: Classifier, x, *, candidates: int = 10, deepfool_result=None):
    """The points of the authors' construction for the images ``x`` ``(N, *shape)``: ``z_i = x_i + 0.8 r_i`` with
    ``r_i`` the untargeted DeepFool perturbation after at most :data:`PAPER_DEEPFOOL_ITER` iterations (overshoot
    :data:`PAPER_OVERSHOOT`, no clipping to the pixel range), ``k_i`` the label of ``x_i`` and ``j_i`` the label
    DeepFool reached. Returns ``(z, k, j, ok)`` for the images DeepFool fooled (``ok`` ``(N,)`` bool marks them).
    ``deepfool_result``: a ``BoundaryResult`` of :func:`geometry.boundary.deepfool` for ``x`` (skips the attack)."""
    from .boundary import deepfool

    x = clf.as_batch(x)
    res = deepfool_result
    if res is None:
        plain = {"refine": 0} if "refine" in inspect.signature(deepfool).parameters else {}  # the authors' DeepFool
        res = deepfool(clf, x, candidates=candidates, overshoot=PAPER_OVERSHOOT, max_iter=PAPER_DEEPFOOL_ITER,
                       clip=False, **plain)
    ok = res.converged & (res.boundary_label != res.label)
    z = (x[ok] + PAPER_FRACTION * res.perturbation[ok]).detach()
    return z, res.label[ok], res.boundary_label[ok], ok


def curved_subspace(clf: Classifier, x, *, m: int = DEFAULT_M, signs: str | None = None, estimator: str = "auto",
                    step: float | None = None, candidates: int = 10, tol: float = 1e-4, lanczos_tol: float = 1e-4,
                    max_iter: int | None = None, seed: int = 0, batch_size: int = 256,
                    progress: Progress | None = None, boundary=None, construction: str = DEFAULT_CONSTRUCTION,
                    select: str | None = None) -> CurvedSubspace:
    """S from the images ``x`` ``(N, *shape)``.

    Parameters
    ----------
    m : dimension of S (``1 <= m < d``).
    construction : ``"projected"`` (the average projected, normalised curvature operator at boundary points;
        default) or ``"paper"`` (the average raw Hessian at ``x + 0.8 r``, :func:`paper_points`); module docstring.
    select : ``"most"`` (the m largest |eigenvalues| of either sign, default), ``"positive"``, ``"negative"`` or
        ``"both-ends"`` (ceil(m/2) most positive and floor(m/2) most negative).
    signs : the older name of the first three selections (``"both"`` = ``"most"``).
    estimator, step : Hessian estimator (``"auto"``, ``"exact"``, ``"fd"``) and fd step h in pixels
        (``"auto"`` is ``"fd"`` for the paper construction).
    candidates, tol : passed to ``boundary.boundary_point`` (``candidates`` also to the paper's DeepFool).
    lanczos_tol, max_iter, seed : passed to ``lanczos.signed_eigs`` (``max_iter`` default :func:`default_max_iter`).
    boundary : a precomputed ``BoundaryResult`` for ``x``: of ``boundary.boundary_point`` (projected) or of the
        paper's ``boundary.deepfool`` run (paper, see :func:`paper_points`); skips that search.
    progress : ``progress(fraction, message)`` callback.

    Images whose boundary search did not converge (projected) or that DeepFool did not fool within its 5
    iterations (paper) are left out (their number is in ``settings["dropped"]``)."""
    from .boundary import boundary_point
    from .lanczos import signed_eigs

    progress = progress or _noop
    select = resolve_select(select, signs)
    construction = check_construction(construction)
    paper = construction == "paper"
    m = _check_m(m, clf.dim)
    est = resolve_estimator(clf, estimator, construction)
    h = resolve_step(clf, est, step)
    t0 = time.perf_counter()
    x = clf.as_batch(x)
    if paper:
        if boundary is None:
            progress(0.02, f"DeepFool ({PAPER_DEEPFOOL_ITER} iterations at most) on {x.shape[0]} images")
        z, k, j, ok = paper_points(clf, x, candidates=candidates, deepfool_result=boundary)
        if int(ok.sum()) < 1:
            raise GeometryError(f"DeepFool fooled none of these images within {PAPER_DEEPFOOL_ITER} iterations; "
                                "use more images")
        what = f"average Hessian at x + {PAPER_FRACTION:g} r over {int(ok.sum())} points ({est})"
    else:
        if boundary is None:
            progress(0.02, f"boundary points of {x.shape[0]} images (DeepFool + bisection)")
            boundary = boundary_point(clf, x, candidates=candidates, tol=tol)
        ok = boundary.converged & (boundary.boundary_label != boundary.side_label)
        if int(ok.sum()) < 1:
            raise GeometryError("no boundary point converged for these images; use more images or a larger "
                                "tolerance")
        z, k, j = boundary.point[ok], boundary.side_label[ok], boundary.boundary_label[ok]
        what = f"average curvature operator over {int(ok.sum())} boundary points ({est})"
    progress(0.2, what)
    op = (AverageHessianOperator if paper else AverageCurvatureOperator)(clf, z, k, j, est, h, batch_size)
    n_eig = min(m, clf.dim // 2)
    if max_iter is None:
        max_iter = default_max_iter(m, clf.dim)
    expected = max_iter
    matvec = op.matvec
    name = "average Hessian" if paper else "average operator"

    def counting(V):
        out = matvec(V)
        steps = op.hvp_count // max(1, op.num_points)
        progress(min(0.2 + 0.75 * steps / expected, 0.95), f"Lanczos on the {name}: {steps} products")
        return out

    op.matvec = counting  # progress per Lanczos step; the solver only sees a matvec
    try:
        res = signed_eigs(op, k=n_eig, tol=lanczos_tol, max_iter=max_iter, seed=seed)
    finally:
        op.close()
    vals = np.asarray(res.values, dtype=np.float64)
    vecs = res.vectors.to(torch.float64).cpu()
    if len(vals) < m:
        raise GeometryError(f"the solver returned {len(vals)} eigenpairs, fewer than m = {m}; lower m")
    basis, picked = _select(vals, vecs, m, select)
    settings = {"m": m, **selection_fields(select), "estimator": est, "step": h, "candidates": candidates,
                "tol": tol, "lanczos_tol": lanczos_tol, "max_iter": max_iter, "seed": seed, "images": int(x.shape[0]),
                "dropped": int((~ok).sum()), **construction_fields(construction)}
    if paper:  # points x + 0.8 r that are no longer in the image's class (the authors do not check)
        settings["past_boundary"] = int((clf.logits(z).argmax(1) != k).sum())
    progress(1.0, "done")
    return CurvedSubspace(basis, picked, np.sort(vals)[::-1], clf.input_shape, clf.name,
                          model_fingerprint(clf), settings, int(ok.sum()), int(op.hvp_count),
                          time.perf_counter() - t0, bool(np.all(res.converged)),
                          k.cpu().numpy(), j.cpu().numpy(), None, vecs, vals)


def subspace_settings(clf: Classifier, *, images: int = DEFAULT_IMAGES, m: int = DEFAULT_M, signs: str | None = None,
                      estimator: str = "auto", step: float | None = None, seed: int = 0, candidates: int = 10,
                      split: str = "train", construction: str = DEFAULT_CONSTRUCTION,
                      select: str | None = None) -> dict:
    """The settings that identify a cached S (estimator and step resolved). With the default construction the
    dict is exactly the one of earlier versions (so saved and shipped S keep matching); other choices add keys."""
    select = resolve_select(select, signs)
    est = resolve_estimator(clf, estimator, construction)
    return {"images": int(images), "m": int(m), **selection_fields(select), "estimator": est,
            "step": resolve_step(clf, est, step), "seed": int(seed), "candidates": int(candidates), "split": split,
            "dtype": str(clf.dtype).replace("torch.", ""), **construction_fields(construction)}


def subspace_path(clf: Classifier, settings: dict, directory: str | Path | None = None) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in clf.name)[:40] or "model"
    return cache_dir(directory) / "subspace" / f"{safe}-{model_fingerprint(clf)}-{settings_key(settings)}.npz"


def model_subspace(clf: Classifier, *, images: int = DEFAULT_IMAGES, m: int = DEFAULT_M, signs: str | None = None,
                   estimator: str = "auto", step: float | None = None, seed: int = 0, candidates: int = 10,
                   split: str = "train", cache: str | Path | None | bool = None, recompute: bool = False,
                   progress: Progress | None = None, construction: str = DEFAULT_CONSTRUCTION,
                   select: str | None = None) -> CurvedSubspace:
    """S for a model from ``images`` images of its dataset's ``split``, loaded from the cache when saved.

    ``construction`` (``"projected"`` | ``"paper"``) and ``select`` (``"most"`` | ``"positive"`` | ``"negative"`` |
    ``"both-ends"``; ``signs`` is its older name) as in :func:`curved_subspace`.

    Looks first for the S shipped with a bundled model for these settings (``geometry.precomputed``:
    used only when the model's fingerprint, the settings, the images and the code version match),
    then in the cache, and computes S only when neither has it.
    ``cache``: a folder, ``None`` for :func:`cache_dir`, or ``False`` to neither read nor write (shipped
    results included). ``recompute=True`` ignores every saved S (and overwrites the cached one)."""
    select = resolve_select(select, signs)
    settings = subspace_settings(clf, images=images, m=m, select=select, estimator=estimator, step=step, seed=seed,
                                 candidates=candidates, split=split, construction=construction)
    if cache is not False and not recompute:
        from .precomputed import shipped_subspace

        S = shipped_subspace(clf, settings)
        if S is not None:
            if progress:
                progress(1.0, "loaded the S shipped with this model (assets/precomputed)")
            return S
    path = None if cache is False else subspace_path(clf, settings, cache)
    if path is not None and path.exists() and not recompute:
        try:
            S = CurvedSubspace.load(path)
        except GeometryError:  # another version or a damaged file: compute again and overwrite it
            S = None
        if S is not None and S.fingerprint == model_fingerprint(clf):
            if progress:
                progress(1.0, f"loaded S from {path}")
            return S
    x, _ = dataset_images(clf, images, split=split, seed=seed)
    S = curved_subspace(clf, x, m=m, select=select, estimator=settings["estimator"], step=settings["step"],
                        candidates=candidates, seed=seed, progress=progress, construction=construction)
    S.settings.update(split=split, dtype=settings["dtype"])
    if path is not None:
        try:
            S.save(path)
        except OSError as exc:  # a read-only home must not break the analysis
            S.settings["cache_error"] = f"could not save S to {path}: {exc}"
    return S
