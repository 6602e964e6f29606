"""Curvature asymmetry over many images: the paper's mean sorted spectrum (docs/science.md section 3).

The paper reports that near natural images the decision boundary bends more strongly one way than the
other: averaged over many boundary points, the sorted principal curvatures are larger on the positive side
than on the negative side. :func:`curvature_asymmetry` measures that statistic on held-out images.

For each image x (``subspace.dataset_images``, held-out split) and each *location*:

- ``"boundary"``: the boundary point z of ``boundary.boundary_point`` (DeepFool without overshoot, clipped to
  the pixel range, then bracketed onto the boundary; the convention of ``curvature.principal_curvatures``),
  between k = the near-side class and j = the class across;
- ``"inside"``: the authors' point ``x + 0.8 r`` (``subspace.paper_points``: untargeted DeepFool, at most 5
  iterations, overshoot 0.05, not clipped), k = label of x, j = the label DeepFool reached; usually still
  inside class k, so the curvatures are those of the level set ``{F = F(p)}`` through p, not of the boundary;

the curvature operator ``P H P / |grad F|`` of ``F = f_k - f_j`` (``operators.curvature_operator``, the operator of
``principal_curvatures``, same sign: :data:`geometry.curvature.SIGN_CONVENTION`) gives its k most positive and k
most negative eigenvalues. How (``method``, :data:`METHODS`): ``"lanczos"`` is signed Lanczos
(``lanczos.signed_eigs``, orthogonal to the normal); ``"full"`` the dense spectrum on the tangent space
(the eigenvalues of ``lanczos.full_spectrum``, d products, without eigenvectors); ``"auto"``
(default) follows ``curvature.auto_full`` exactly as the single-image analysis does: dense for d <= 256, and
for finite differences up to d = 1024 (MNIST), because at a finite step the fd map is not linear and Lanczos on
it does not converge on ReLU networks (docs/curvature.md, *Signed spectra*), else Lanczos. For a model known
to be piecewise linear, ``"exact"`` gives zeros without a product (the exact answer almost everywhere), with a
warning, as ``principal_curvatures`` does.

Estimators and steps (``estimators``, ``steps``): ``None`` is the automatic choice :func:`resolve_estimators`:
smooth networks -> ``("exact",)``; piecewise-linear or unknown ones -> ``("fd",)`` at the steps
:data:`STEP_FACTORS` x ``operators.default_step`` (curvature at three scales). ``steps`` overrides the fd steps
(pixel-space lengths); without it fd runs at the default step for a smooth model and at the three steps
otherwise.

Statistics per (estimator, step, location), over the points used (each point's 2k values sorted descending:
indices 0..k-1 the most positive, k..2k-1 the most negative, the last the most negative):

- ``mean``: the mean spectrum (2k values); ``band_low``/``band_high``: a 95% percentile-bootstrap band of that
  mean, per index (:data:`BOOTSTRAP` resamples of the points with replacement, generator seeded by ``seed``;
  the 2.5 and 97.5 percentiles). All points with the same spectrum -> the band collapses onto it. A single
  point -> no band (None values; ``asymmetry_ratio_band`` None): one point says nothing about the spread.
- ``mostly_positive`` / ``mostly_negative``: the fraction of points whose sum of their 2k values (top k plus
  bottom k) is > 0 / < 0 (a point summing to exactly 0 counts in neither); ``positive_values``: the fraction of
  all 2k x n values that are > 0.
- ``mean_top`` (mean of the top-k values over points and indices), ``mean_abs_bottom`` (mean of |bottom-k|),
  ``asymmetry_ratio = mean_top / mean_abs_bottom`` (None when the denominator is 0) with its bootstrap band
  ``asymmetry_ratio_band`` from the same resamples; > 1: the positive end is larger.
- counts: ``points_used``, ``points_dropped`` (= ``dropped_search`` images whose boundary search did not
  converge or that DeepFool did not fool in 5 iterations, + ``dropped_curvature`` points where the operator
  could not be formed, e.g. a zero gradient), ``converged`` (eigen-solves that met their criterion; a dense
  spectrum always does), ``hvp_count``, ``seconds``.

:meth:`AsymmetryResult.to_dict` is the JSON contract (keys in :data:`RESULT_KEYS` and :data:`ENTRY_KEYS`);
:meth:`AsymmetryResult.arrays` gives the per-point spectra for figures and NPZ export.

Imports torch and numpy; never Streamlit or Plotly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .classifier import Classifier
from .curvature import SIGN_CONVENTION, auto_full
from .errors import GeometryError
from .lanczos import FULL_SPECTRUM_MAX_DIM, full_spectrum, signed_eigs
from .operators import ESTIMATORS, curvature_operator, default_step

Progress = Callable[[float, str], None]

LOCATIONS = ("boundary", "inside")
METHODS = ("auto", "lanczos", "full")
STEP_FACTORS = (0.5, 1.0, 2.0)
"""fd steps for a piecewise-linear (or unknown) model: these multiples of ``operators.default_step``."""
BOOTSTRAP = 2000
"""Bootstrap resamples of the points for the 95% bands."""
BOOTSTRAP_CHUNK_VALUES = 4_000_000  # resampled values held at once (about 32 MB of float64)
BAND = ("95% percentile bootstrap over points: 2.5 and 97.5 percentiles of the mean of {n} resamples of the points "
        "with replacement (numpy default_rng(seed))")
DEFAULT_POINTS = 100
DEFAULT_K = 10
LANCZOS_TOL = 1e-6

RESULT_KEYS = ("model", "points", "k", "seed", "split", "method", "estimators", "steps", "sign_convention", "band",
               "bootstrap", "locations", "results", "seconds")
"""Top-level keys of :meth:`AsymmetryResult.to_dict`."""
LOCATION_KEYS = ("requested", "found", "dropped", "past_boundary", "seconds")
"""Keys of each ``to_dict()["locations"][location]`` (``past_boundary``: inside points already across; None at
the boundary)."""
ENTRY_KEYS = ("estimator", "step", "location", "method", "points_used", "points_dropped", "dropped_search",
              "dropped_curvature", "mean", "band_low", "band_high", "mostly_positive", "mostly_negative",
              "positive_values", "mean_top", "mean_abs_bottom", "asymmetry_ratio", "asymmetry_ratio_band",
              "converged", "hvp_count", "seconds", "warning")
"""Keys of each ``to_dict()["results"][i]``, one per (estimator, step, location)."""


def _noop(frac: float, msg: str) -> None:
    pass


# ------------------------------------------------------------------ settings
def resolve_estimators(clf: Classifier, estimators=None, steps=None) -> list[tuple[str, float | None]]:
    """The (estimator, step) pairs to run: ``estimators=None`` -> exact for a smooth network (``piecewise_linear``
    False), fd otherwise; fd runs at ``steps`` (pixel lengths) when given, else at the default step for a smooth
    network and at :data:`STEP_FACTORS` x the default step otherwise. Step None for exact."""
    smooth = clf.piecewise_linear is False
    if estimators is None or estimators == "auto":
        estimators = ("exact",) if smooth else ("fd",)
    elif isinstance(estimators, str):
        estimators = ("exact", "fd") if estimators == "both" else (estimators,)
    estimators = tuple(estimators)
    if not estimators:
        raise GeometryError("estimators must name at least one of 'exact' and 'fd'")
    for e in estimators:
        if e not in ESTIMATORS:
            raise GeometryError(f"estimators must be 'exact' and/or 'fd' (or None for the automatic choice), got {e!r}")
    if steps is not None:
        steps = [float(s) for s in (steps if isinstance(steps, (list, tuple)) else [steps])]
        if not steps:
            raise GeometryError("steps must hold at least one finite-difference step")
        for s in steps:
            if not (s > 0 and math.isfinite(s)):
                raise GeometryError(f"every finite-difference step must be a positive number of pixels, got {s}")
        if "fd" not in estimators:
            raise GeometryError("steps are finite-difference steps; add 'fd' to the estimators to use them")
    h0 = default_step(clf)
    fd_steps = steps if steps is not None else ([h0] if smooth else [f * h0 for f in STEP_FACTORS])
    out: list[tuple[str, float | None]] = []
    for e in dict.fromkeys(estimators):
        if e == "exact":
            out.append(("exact", None))
        else:
            out.extend(("fd", float(h)) for h in dict.fromkeys(fd_steps))
    return out


def _check_locations(locations) -> tuple[str, ...]:
    if isinstance(locations, str):
        locations = LOCATIONS if locations == "both" else (locations,)
    locations = tuple(dict.fromkeys(locations))
    if not locations or any(loc not in LOCATIONS for loc in locations):
        raise GeometryError(f"locations must be 'boundary' and/or 'inside', got {list(locations)!r}")
    return locations


def _method(d: int, estimator: str, method: str) -> str:
    """The eigen-solver for one estimator: 'lanczos' or 'full' (``method='auto'``: ``curvature.auto_full``)."""
    if method == "auto":
        return "full" if auto_full(d, estimator) else "lanczos"
    return method


# ------------------------------------------------------------------ results
@dataclass
class AsymmetryEntry:
    """Per-point spectra and statistics for one (estimator, step, location)."""

    estimator: str
    step: float | None
    location: str
    method: str
    spectra: np.ndarray            # (n_used, 2k) descending per row
    image_index: np.ndarray        # (n_used,) index into the images of each row
    dropped_search: int
    dropped_curvature: int
    converged: int
    hvp_count: int
    seconds: float
    stats: dict = field(default_factory=dict)
    warning: str | None = None

    def to_dict(self) -> dict:
        return {"estimator": self.estimator, "step": self.step, "location": self.location, "method": self.method,
                "points_used": int(self.spectra.shape[0]),
                "points_dropped": int(self.dropped_search + self.dropped_curvature),
                "dropped_search": int(self.dropped_search), "dropped_curvature": int(self.dropped_curvature),
                **self.stats, "converged": int(self.converged), "hvp_count": int(self.hvp_count),
                "seconds": float(self.seconds), "warning": self.warning}


@dataclass
class AsymmetryResult:
    """What :func:`curvature_asymmetry` measured: one :class:`AsymmetryEntry` per (estimator, step, location)."""

    model: str
    points: int
    k: int
    seed: int
    split: str
    method: str
    locations: dict
    entries: list
    seconds: float

    def entry(self, estimator: str, location: str, step: float | None = None) -> AsymmetryEntry:
        """The entry for an estimator and location (and fd step, when several were run)."""
        for e in self.entries:
            if e.estimator == estimator and e.location == location and (step is None or e.step == step):
                return e
        raise KeyError((estimator, location, step))

    def to_dict(self) -> dict:
        """JSON-ready (keys :data:`RESULT_KEYS`; ``locations`` by :data:`LOCATION_KEYS`; ``results`` entries by
        :data:`ENTRY_KEYS`). No per-point arrays: see :meth:`arrays`."""
        return {"model": self.model, "points": int(self.points), "k": int(self.k), "seed": int(self.seed),
                "split": self.split, "method": self.method,
                "estimators": list(dict.fromkeys(e.estimator for e in self.entries)),
                "steps": list(dict.fromkeys(e.step for e in self.entries if e.step is not None)),
                "sign_convention": SIGN_CONVENTION, "band": BAND.format(n=BOOTSTRAP), "bootstrap": BOOTSTRAP,
                "locations": {loc: dict(v) for loc, v in self.locations.items()},
                "results": [e.to_dict() for e in self.entries], "seconds": float(self.seconds)}

    def arrays(self) -> dict:
        """Per-point spectra ``(n_used, 2k)`` and image indices per entry, named ``{location}_{estimator}[_h{step}]``
        (for NPZ export and figures)."""
        out = {}
        for e in self.entries:
            name = f"{e.location}_{e.estimator}" + (f"_h{e.step:.4g}" if e.step is not None else "")
            out[f"{name}_spectra"] = e.spectra
            out[f"{name}_image_index"] = e.image_index
        return out


# ------------------------------------------------------------------ statistics
def spectrum_statistics(spectra: np.ndarray, k: int, seed: int = 0, bootstrap: int = BOOTSTRAP) -> dict:
    """The statistics of the module docstring from per-point spectra ``(n, 2k)`` (rows descending: top k, then
    bottom k). Values are plain floats / lists (JSON-ready); None where undefined (no points)."""
    S = np.asarray(spectra, dtype=np.float64)
    n = S.shape[0]
    if n == 0:
        return {"mean": [], "band_low": [], "band_high": [], "mostly_positive": None, "mostly_negative": None,
                "positive_values": None, "mean_top": None, "mean_abs_bottom": None, "asymmetry_ratio": None,
                "asymmetry_ratio_band": None}
    top, bottom = S[:, :k], S[:, k:]
    mean = S.mean(axis=0)
    rng = np.random.default_rng(seed)
    boot, boot_top, boot_bot = [], [], []
    chunk = max(1, BOOTSTRAP_CHUNK_VALUES // (n * S.shape[1]))  # resamples per draw: bounded memory for any n
    for start in range(0, int(bootstrap), chunk):
        R = S[rng.integers(0, n, size=(min(chunk, int(bootstrap) - start), n))]  # (c, n, 2k)
        boot.append(R.mean(axis=1))
        boot_top.append(R[:, :, :k].mean(axis=(1, 2)))
        boot_bot.append(np.abs(R[:, :, k:]).mean(axis=(1, 2)))
    boot, boot_top, boot_bot = np.concatenate(boot), np.concatenate(boot_top), np.concatenate(boot_bot)
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    if n < 2:  # one point: every resample is that point, a zero-width "band" that says nothing about spread
        low = high = [None] * S.shape[1]
    sums = S.sum(axis=1)

    def ratio(t, b):
        return float(t / b) if b > 0 else None

    mean_top, mean_abs_bottom = float(top.mean()), float(np.abs(bottom).mean())
    r = ratio(mean_top, mean_abs_bottom)
    ok = boot_bot > 0
    r_band = None
    if r is not None and ok.all() and n >= 2:
        rb = boot_top / boot_bot
        r_band = [float(v) for v in np.percentile(rb, [2.5, 97.5])]
    return {"mean": [float(v) for v in mean], "band_low": [None if v is None else float(v) for v in low],
            "band_high": [None if v is None else float(v) for v in high], "mostly_positive": float(np.mean(sums > 0)),
            "mostly_negative": float(np.mean(sums < 0)), "positive_values": float(np.mean(S > 0)),
            "mean_top": mean_top, "mean_abs_bottom": mean_abs_bottom, "asymmetry_ratio": r,
            "asymmetry_ratio_band": r_band}


# ------------------------------------------------------------------ points
def _boundary_points(clf: Classifier, x: torch.Tensor):
    from .boundary import boundary_point

    b = boundary_point(clf, x)
    ok = b.converged & (b.boundary_label != b.side_label)
    return b.point, b.side_label, b.boundary_label, ok, None


def _inside_points(clf: Classifier, x: torch.Tensor):
    from .subspace import paper_points

    z, k, j, ok = paper_points(clf, x)
    pts = x.clone()
    pts[ok] = z
    kk = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    jj = torch.zeros_like(kk)
    kk[ok], jj[ok] = k, j
    past = int((clf.logits(z).argmax(1) != k).sum()) if z.shape[0] else 0
    return pts, kk, jj, ok, past


def _spectrum(clf: Classifier, z, k: int, j: int, estimator: str, step, kk: int, method: str, seed: int,
              max_iter: int | None):
    """(2k values descending, hvp_count, converged) at one point; raises GeometryError if F has no gradient."""
    op = curvature_operator(clf, z, k, j, estimator, step)
    normal = op.normal[:, None]
    if estimator == "exact" and clf.piecewise_linear:
        return np.zeros(2 * kk), 0, True
    if method == "full":
        start = op.hvp_count
        vals = full_spectrum(op, exclude=op.normal, vectors=False).values
        return np.concatenate([vals[:kk], vals[-kk:]]), int(op.hvp_count - start), True
    else:
        e = signed_eigs(op, kk, tol=LANCZOS_TOL, max_iter=max_iter, seed=seed, exclude=normal)
        vals = np.asarray(e.values)
        if len(vals) < 2 * kk:  # never split fewer values into two ends (they would overlap)
            raise GeometryError(f"the eigen-solver returned {len(vals)} values, fewer than 2k = {2 * kk}")
        if len(vals) != 2 * kk:
            vals = np.concatenate([vals[:kk], vals[-kk:]])
    return np.asarray(vals, dtype=np.float64), int(e.hvp_count), bool(e.converged)


# ------------------------------------------------------------------ main
def curvature_asymmetry(clf: Classifier, *, points: int = DEFAULT_POINTS, k: int = DEFAULT_K, estimators=None,
                        steps=None, locations=LOCATIONS, seed: int = 0, split: str = "held_out",
                        progress: Progress | None = None, images=None, method: str = "auto",
                        max_iter: int | None = None) -> AsymmetryResult:
    """The mean sorted principal-curvature spectrum over many images, with its band and sign fractions.

    Parameters
    ----------
    points : how many images of the model's dataset ``split`` (``subspace.dataset_images``, stratified by class,
        seeded by ``seed``).
    k : curvatures per end (2k values per point; ``2k <= d - 1``).
    estimators : None (automatic: exact for smooth networks, fd otherwise), or a sequence of "exact"/"fd"
        ("both" = both); see :func:`resolve_estimators`.
    steps : fd steps in pixel units (default: the default step for smooth networks, 0.5/1/2 x it otherwise).
    locations : "boundary" and/or "inside" (or "both"); module docstring.
    seed : images, Lanczos start vector and bootstrap.
    progress : ``progress(fraction, message)``, called once per point.
    images : ``(N, *input_shape)`` images to use instead of ``points`` dataset images (e.g. a model without a
        dataset).
    method : "auto" (``curvature.auto_full``), "lanczos" or "full".
    max_iter : Lanczos product budget (default that of ``lanczos.signed_eigs``).

    Points whose search fails are dropped and counted, never silently. Returns an :class:`AsymmetryResult`."""
    progress = progress or _noop
    t_all = time.perf_counter()
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise GeometryError(f"k must be a positive integer, got {k!r}")
    d = clf.dim
    if 2 * k > d - 1:
        raise GeometryError(f"k = {k} asks for {2 * k} curvatures but the tangent space has only {d - 1} directions; "
                            f"use k <= {(d - 1) // 2}")
    if method not in METHODS:
        raise GeometryError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if max_iter is not None and (not isinstance(max_iter, (int, np.integer)) or max_iter < 1):
        raise GeometryError(f"max_iter must be a positive integer, got {max_iter!r}")
    locations = _check_locations(locations)
    pairs = resolve_estimators(clf, estimators, steps)
    for est, _ in pairs:
        if _method(d, est, method) == "lanczos" and max_iter is not None and max_iter < 2 * k:
            # fewer products give fewer than 2k Ritz values: the two ends would overlap (same values counted twice)
            raise GeometryError(f"max_iter = {max_iter} products cannot give the {2 * k} curvatures of k = {k} per "
                                f"end; use max_iter >= {2 * k}")
        if _method(d, est, method) == "full" and d > FULL_SPECTRUM_MAX_DIM:
            raise GeometryError(f"the full spectrum is offered up to d = {FULL_SPECTRUM_MAX_DIM} (this model has "
                                f"d = {d}); use method='lanczos'")
    if images is None:
        if not isinstance(points, (int, np.integer)) or isinstance(points, bool) or points < 1:
            raise GeometryError(f"points must be a positive integer, got {points!r}")
        from .subspace import dataset_images

        x, _ = dataset_images(clf, int(points), split=split, seed=seed)
        source = split
    else:
        x = clf.as_batch(images)
        source = "given"
    x = clf.as_batch(x)
    n = int(x.shape[0])
    total = len(locations) * len(pairs) * n
    done = 0
    loc_info: dict = {}
    entries: list[AsymmetryEntry] = []
    for loc in locations:
        t0 = time.perf_counter()
        progress(done / max(total, 1), f"{loc} points of {n} images")
        z, kc, jc, ok, past = (_boundary_points if loc == "boundary" else _inside_points)(clf, x)
        found = int(ok.sum())
        loc_info[loc] = {"requested": n, "found": found, "dropped": n - found, "past_boundary": past,
                         "seconds": time.perf_counter() - t0}
        use = ok.nonzero().flatten().tolist()
        for est, h in pairs:
            m = _method(d, est, method)
            t1 = time.perf_counter()
            rows, index, conv, hvp, bad = [], [], 0, 0, 0
            label = f"{est}" + (f", h = {h:.3g}" if h is not None else "")
            for count, i in enumerate(use):
                try:
                    vals, nh, c = _spectrum(clf, z[i:i + 1], int(kc[i]), int(jc[i]), est, h, int(k), m, seed,
                                            max_iter)
                except GeometryError:
                    bad += 1
                else:
                    rows.append(vals)
                    index.append(i)
                    conv += int(c)
                    hvp += nh
                done += 1
                progress(done / max(total, 1), f"{loc}, {label}: point {count + 1} of {len(use)}")
            done += n - len(use)
            spectra = np.asarray(rows, dtype=np.float64).reshape(len(rows), 2 * int(k))
            warning = None
            if est == "exact" and clf.piecewise_linear:
                warning = ("the network is piecewise linear: its exact Hessian is zero almost everywhere, so every "
                           "exact curvature is 0 (not computed); use fd to see curvature at a scale h")
            elif not rows:
                warning = f"no usable point at the {loc} location"
            entry = AsymmetryEntry(est, h, loc, m, spectra, np.asarray(index, dtype=np.int64), n - found, bad, conv,
                                   hvp, time.perf_counter() - t1, warning=warning)
            entry.stats = spectrum_statistics(spectra, int(k), seed)
            entries.append(entry)
    progress(1.0, "done")
    return AsymmetryResult(clf.name, n, int(k), int(seed), source, method, loc_info, entries,
                           time.perf_counter() - t_all)
