"""Connectivity of classification regions: piecewise-linear paths, proven or sampled (docs/science.md section 1).

Two images ``x1, x2`` of one predicted class ``i`` are *connected* when a continuous
path from one to the other stays in the region ``R_i = {x : k(x) = i}``. We look
for a piecewise-linear path through anchor points ``x1 = p0, p1, ..., pn, p(n+1) = x2``
by recursive bisection (Fawzi et al., CVPR 2018):

1. check the segment ``[a, b]`` densely (see *Verification* below); accept it when it
   passes;
2. otherwise take the midpoint ``m``; when ``m`` is not in ``R_i`` move it into ``R_i``
   with a minimal targeted DeepFool step (overshoot :data:`PROJECTION_OVERSHOOT`);
3. recurse on ``[a, m]`` and ``[m, b]``, until every segment passes or the anchor budget
   runs out. Then the result says ``connected=False`` and where the search stopped:
   a path is never reported unless every one of its segments passed the check.

All pending segments of all pairs are checked in one batched pass per round, and all
midpoints that need projecting go through one batched DeepFool call.

Verification (the resolution rule, :data:`VERIFICATION_RULE`)
-------------------------------------------------------------
For the target class ``i`` and every other class ``j`` let ``g_j = f_i - f_j``; a point is
in ``R_i`` iff ``g_j > 0`` for all ``j``. If ``g_j`` changes by at most ``L_j`` per unit of L2
distance, then between two samples at distance ``D`` apart with values ``g_j(s)``,
``g_j(s')`` it cannot reach zero when ``g_j(s) + g_j(s') > L_j * D``. A segment is
sampled on a grid (at least ``min_points`` points, spacing at most ``max_step``); every
interval whose two samples do not satisfy this for all ``j`` is subdivided (into as many
pieces as the inequality asks for), and the slopes are re-estimated, until every
interval satisfies it (the segment passes), a sample has another label (it fails: a
label change was found), an interval is shorter than ``min_step`` or the segment has
used ``max_samples`` points (it fails: unresolved). So the step is adaptive: about
``2 * margin / L`` in L2, fine where the margin is small and coarse where it is large.
The computed values differ from the exact ones by rounding; :func:`check_segments` says
how that is bounded (rigorously for plain chains, in float64 where float32 is too coarse).

What bounds ``L_j``, and what a passed check means (``ConnectingPath.guarantee``):

- ``"bound"``: a Lipschitz constant of ``f_i - f_j`` derived from the weights
  (:func:`geometry.lipschitz.margin_lipschitz_bound`: product of exact layer operator
  norms -- SVD for linear layers, the Fourier bound of Sedghi et al. 2019 for
  convolutions -- and the activations' largest slopes; the last layer contributes
  ``|w_i - w_j|``), with the rounding of the forward pass bounded too. A segment that
  passes is **proven** to lie in ``R_i`` of the network the weights define. Available for
  plain ``nn.Sequential`` chains of known layers (all bundled models).
- ``"local"``: ``L_j = safety * (steepest slope of g_j between adjacent samples of this
  segment)``. This is a **sampled** check, not a proof: it is right when the slope along the
  segment never exceeds ``safety`` times the steepest slope seen on the grid; a thin
  slab of another class between two samples goes unseen.
- ``"auto"`` (default): ``"bound"`` when the model allows it, else ``"local"``.
- a number: that slope bound for every class (**given_bound**: a proof if it really bounds
  the slopes along the path).

``verified`` is True only for ``proven`` and ``given_bound`` paths; a path that passed only
sampled checks is ``connected`` but not ``verified`` (:data:`GUARANTEES`).

Imports torch and numpy (and :mod:`geometry.boundary` for DeepFool); never Streamlit
or Plotly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from .classifier import Classifier
from .errors import ConvergenceError, GeometryError
from .lipschitz import ACTIVATION_SLOPES, LipschitzBound, _conv_norm, _leaves, _pool_norm, margin_lipschitz_bound

# the Lipschitz bound moved to geometry.lipschitz; these names stay importable from here
_REEXPORTED = (ACTIVATION_SLOPES, _conv_norm, _leaves, _pool_norm)

PROJECTION_OVERSHOOT = 0.02  # targeted DeepFool overshoot when a midpoint is moved back into the region
# After DeepFool, an anchor is pushed to a first-order distance of at least ANCHOR_DEPTH_C * sqrt(d) * pixel_span
# inside the boundary (0.028 in L2 for MNIST, a third of a percent of a typical chord). DeepFool's relative
# overshoot alone leaves anchors ~1e-4 logit units inside when the midpoint was barely outside; no float32 check
# with a weight-derived slope bound can resolve that (our convention; the paper only says "small overshoot").
ANCHOR_DEPTH_C = 1e-3
DEFAULT_MAX_ANCHORS = 16
DEFAULT_SAFETY = 2.0
DEFAULT_MIN_POINTS = 16
DEFAULT_MAX_SAMPLES = 20_000
CHORD_SAMPLES = 256
MAX_PIECES = 64  # most pieces one interval is cut into in one refinement round
VERIFICATION_MODES = ("auto", "bound", "local")
VERIFICATION_RULE = ("interval [s, s'] of length D passes when g_j(s) + g_j(s') > L_j * (D + 2*delta) + tol_j(s) + "
                     "tol_j(s') for every class j != i, where g_j = f_i - f_j, L_j bounds the slope of g_j, delta the "
                     "rounding of sample coordinates and tol_j(s) bounds the rounding error of the computed g_j(s)")
GUARANTEES = {
    "proven": "every segment passed the check with the weight-derived Lipschitz bound and the rounding of the "
              "forward pass bounded: the path lies in the region of the network the weights define",
    "given_bound": "every segment passed the check with the given slope bound: a proof if that number bounds the "
                   "slope of every logit difference along the path",
    "sampled": "every segment passed on its samples, not proven: a label change between samples is not excluded",
    "none": "no path was found",
}
"""Values of ``ConnectingPath.guarantee`` (a short machine value; the sentence is ``guarantee_text``)."""


# ------------------------------------------------------------------ counting
class _Counted(nn.Module):
    """Counts images through the model (and those with autograd on), for ``evaluations``."""

    _transparent = True  # geometry.lipschitz.unwrap sees through it

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.images = 0
        self.grad_images = 0

    def forward(self, x):
        n = int(x.shape[0]) if x.dim() > 0 else 1
        self.images += n
        if torch.is_grad_enabled():
            self.grad_images += n
        return self.inner(x)


def _counted(clf: Classifier) -> tuple[Classifier, _Counted]:
    wrapper = _Counted(clf.module)
    return Classifier(wrapper, clf.input_shape, clf.class_names, clf.pixel_range, clf.name, clf.dataset,
                      clf.card), wrapper


# ------------------------------------------------------------------ segment checks
@dataclass
class SegmentCheck:
    """The dense check of one segment ``a + t (b - a)``, ``t`` in [0, 1], for class ``label``.

    ``t`` and ``margin`` (``f_i - max_{j != i} f_j``) are the samples actually evaluated
    (sorted), in the arithmetic named by ``precision``. ``reason``: "proven" (passed, and
    every interval satisfies the rule with the rounding bound: nothing can hide between
    samples), "sampled" (passed on the samples, not proven: a ``local`` slope estimate, or
    intervals whose margin the rounding bound swallows even in float64), "label change" (a
    sample has another label: ``bad_t``, ``bad_label``), "unresolved" (an interval below
    ``min_step`` could not be decided) or "sample budget". ``certified_margin`` is the lower
    bound of the margin along the segment the rule gives: proven when ``proven``, an
    estimate otherwise. ``rounding``: "bounded" (rigorous rounding bound of the computed
    logits, :class:`geometry.lipschitz.Chain`), "assumed" (``tol`` only: models that are not
    plain chains) or None (``local``). ``evaluations`` counts model passes (float64
    re-evaluations included)."""

    ok: bool
    reason: str
    label: int
    length: float
    t: np.ndarray
    margin: np.ndarray
    slope_bound: float
    certified_margin: float | None
    bad_t: float | None = None
    bad_label: int | None = None
    proven: bool = False
    precision: str = "float32"
    rounding: str | None = None
    rounding_bound: float = 0.0
    evaluations: int = 0

    @property
    def samples(self) -> int:
        return int(len(self.t))


def _slope_bounds(mode, bound: LipschitzBound | None, labels: np.ndarray, L: int) -> np.ndarray | None:
    """(S, L) per-segment, per-class slope bounds, or None for the local estimate."""
    if mode == "local":
        return None
    if mode == "bound":
        return bound.pairwise[labels]
    return np.full((len(labels), L), float(mode))


def _count(clf: Classifier, n: int) -> None:
    """Count images that went through the model's layers outside its own forward (chain evaluation)."""
    if isinstance(clf.module, _Counted):
        clf.module.images += int(n)


def check_segments(clf: Classifier, a: torch.Tensor, b: torch.Tensor, labels, *, verification="auto",
                   safety: float = DEFAULT_SAFETY, max_step: float | None = None, min_points: int = DEFAULT_MIN_POINTS,
                   min_step: float | None = None, max_samples: int = DEFAULT_MAX_SAMPLES,
                   batch_size: int = 2048, precise_fallback: bool = True) -> list[SegmentCheck]:
    """Check segments ``[a_s, b_s]`` (``(S, *shape)`` each) for labels ``(S,)`` by the rule in the module
    docstring; all segments advance together, each round is one batched forward (in chunks).

    Floating point. ``delta = 4 * eps * |max(|a|, |b|)|`` covers the rounding of the sample coordinates.
    For a plain chain of known layers (the ``bound`` mode, and a numeric slope bound on such a model) every
    sample gets a rigorous bound ``tol_j(s)`` of |computed - exact| of ``g_j`` from the activations' sizes
    (:meth:`geometry.lipschitz.Chain.tolerances`); a segment is *proven* when every interval satisfies
    ``g_j(s) + g_j(s') > L_j (D + 2 delta) + tol_j(s) + tol_j(s')``. When an interval cannot satisfy it at
    any spacing because the rounding bound is as large as its margin, the segment is re-evaluated with a
    float64 copy of the model (``precise_fallback``), where the bound is 2**29 times smaller. What still
    cannot be proven passes only as *sampled* (with ``tol = 32 * eps * (1 + max |logit|)`` in place of the
    bound). A sample whose computed margin is at most ``tol`` is a label change. Other models have no
    rounding bound: ``tol`` stands in for it (``rounding="assumed"``)."""
    mode, bound = resolve_verification(clf, verification)
    chain = None
    if mode != "local":
        lb = bound if bound is not None else margin_lipschitz_bound(clf)
        chain = lb.chain if lb is not None else None
    strict_capable = mode != "local"
    a = clf.as_batch(a).reshape(-1, clf.dim)
    b = clf.as_batch(b).reshape(-1, clf.dim)
    S, L = a.shape[0], clf.num_classes
    labels = np.broadcast_to(np.asarray(torch.as_tensor(labels).cpu().numpy(), dtype=np.int64), (S,)).copy()
    if max_step is None:
        max_step = default_max_step(clf)
    if min_step is None:
        min_step = 1e-6 * clf.pixel_span * math.sqrt(clf.dim)
    eps = float(torch.finfo(clf.dtype).eps)
    can_refine = chain is not None and clf.dtype != torch.float64 and precise_fallback
    base_precision = str(clf.dtype).replace("torch.", "")
    diff = b - a
    lengths = diff.double().norm(dim=1).cpu().numpy()
    delta = (4 * eps * torch.maximum(a.abs(), b.abs()).double().norm(dim=1)).cpu().numpy()
    fixed = _slope_bounds(mode, bound, labels, L)
    ts: list[np.ndarray] = [np.zeros(0)] * S
    gs: list[np.ndarray] = [np.zeros((0, L))] * S
    tgs: list[np.ndarray] = [np.zeros((0, L))] * S
    evals = np.zeros(S, dtype=np.int64)
    precise = np.zeros(S, dtype=bool)
    results: list[SegmentCheck | None] = [None] * S
    new_t = [np.linspace(0.0, 1.0, max(min_points, 2, int(math.ceil(lengths[s] / max_step)) + 1))
             if lengths[s] > 0 else np.zeros(1) for s in range(S)]
    replace = np.zeros(S, dtype=bool)  # re-evaluate all of a segment's samples (its precision changed)
    max_abs = 0.0
    eye = np.eye(L, dtype=bool)

    def evaluate(idx: np.ndarray, tt: np.ndarray, hi: bool):
        out = np.empty((len(tt), L))
        tol = np.zeros((len(tt), L))
        for c0 in range(0, len(tt), batch_size):
            ii = torch.as_tensor(idx[c0:c0 + batch_size], device=a.device)
            tc = torch.as_tensor(tt[c0:c0 + batch_size], device=a.device, dtype=a.dtype)[:, None]
            pts = (a[ii] + tc * diff[ii]).reshape(-1, *clf.input_shape)
            sl = slice(c0, c0 + len(tc))
            if chain is not None:
                logits, E, A, eps_last = chain.forward(pts, precise=hi)
                _count(clf, len(tc))
                out[sl] = logits.cpu().numpy()
                tol[sl] = chain.tolerances(labels[idx[sl]], E.cpu().numpy(), A.cpu().numpy(), eps_last)
            else:
                with torch.no_grad():
                    out[sl] = clf.module(pts).double().cpu().numpy()
        return out, tol

    while True:
        for hi in (False, True):
            sel_s = [s for s in range(S) if len(new_t[s]) and bool(precise[s]) == hi]
            if not sel_s:
                continue
            idx = np.concatenate([np.full(len(new_t[s]), s) for s in sel_s])
            tt = np.concatenate([new_t[s] for s in sel_s])
            out, tol = evaluate(idx, tt, hi)
            max_abs = max(max_abs, float(np.abs(out).max()))
            lab = labels[idx]
            g = out[np.arange(len(tt)), lab][:, None] - out  # g_j = f_i - f_j
            g[np.arange(len(tt)), lab] = np.inf
            tol[np.arange(len(tt)), lab] = 0.0
            for s in sel_s:
                sel = idx == s
                evals[s] += int(sel.sum())
                if replace[s]:
                    ts[s], gs[s], tgs[s] = tt[sel], g[sel], tol[sel]
                    replace[s] = False
                    continue
                t_all = np.concatenate([ts[s], tt[sel]])
                order = np.argsort(t_all, kind="stable")
                ts[s] = t_all[order]
                gs[s] = np.concatenate([gs[s], g[sel]])[order]
                tgs[s] = np.concatenate([tgs[s], tol[sel]])[order]
        tol0 = 32 * eps * (1 + max_abs)
        new_t = [np.zeros(0)] * S
        pending = False
        for s in range(S):
            if results[s] is not None:
                continue
            t, g, i = ts[s], gs[s], int(labels[s])
            tg = tgs[s] + tol0 if chain is not None else np.where(eye[i][None, :], 0.0, np.full_like(g, tol0))
            tg = np.where(eye[i][None, :], 0.0, tg)
            prec = "float64" if precise[s] else base_precision
            rounding = None if not strict_capable else ("bounded" if chain is not None else "assumed")
            rb = float(tg.max()) if strict_capable and len(tg) else 0.0
            common = dict(proven=False, precision=prec, rounding=rounding, rounding_bound=rb,
                          evaluations=int(evals[s]))
            margin = g.min(axis=1)
            bad = np.flatnonzero(margin <= tol0)
            if len(bad):
                k = bad[0]
                results[s] = SegmentCheck(False, "label change", i, float(lengths[s]), t, margin, float("nan"), None,
                                          float(t[k]), int(np.argmin(g[k])), **common)
                continue
            if len(t) < 2:  # zero-length segment: its one point is in the class
                slack_strict = float((g - tg).min())
                if strict_capable and slack_strict <= 0 and can_refine and not precise[s]:
                    precise[s], replace[s], new_t[s], pending = True, True, t.copy(), True
                    continue
                proven = strict_capable and slack_strict > 0
                common["proven"] = proven
                results[s] = SegmentCheck(True, "proven" if proven else "sampled", i, 0.0, t, margin, 0.0,
                                          slack_strict if proven else float(margin.min()), **common)
                continue
            D = np.diff(t) * lengths[s]  # (n-1,)
            gfin = np.where(eye[i][None, :], 0.0, g)
            if fixed is None:
                slope = (np.abs(np.diff(gfin, axis=0)) / np.maximum(D, 1e-300)[:, None]).max(axis=0)
                Lj = safety * slope
            else:
                Lj = fixed[s]
            Lj = np.where(eye[i], 0.0, Lj)
            sums = g[:-1] + g[1:]  # (n-1, L), +inf for j == i
            spread = Lj[None, :] * (D[:, None] + 2 * delta[s])
            loose_tol = 2 * tol0
            with np.errstate(invalid="ignore"):
                loose_fail = (sums - spread <= loose_tol).any(axis=1)
                if strict_capable:
                    tsum = tg[:-1] + tg[1:]
                    strict_fail = (sums - spread <= tsum).any(axis=1)
                    # no spacing can help: the rounding bound alone reaches the margin
                    hopeless = strict_fail & (sums - Lj[None, :] * 2 * delta[s] <= tsum).any(axis=1)
                else:
                    tsum = np.full_like(sums, loose_tol)
                    strict_fail = np.ones(len(D), dtype=bool)
                    hopeless = strict_fail
            if hopeless.any() and can_refine and not precise[s]:
                # float rounding is as large as the margin: decide this segment in float64
                precise[s], replace[s], new_t[s], pending = True, True, t.copy(), True
                continue
            fail = strict_fail & (~hopeless | loose_fail)
            used = np.where(hopeless[:, None], loose_tol, tsum)  # the rounding allowance each interval is held to
            if not fail.any():
                slack = np.where(eye[i][None, :], np.inf, (sums - spread - used) / 2)
                proven = strict_capable and not strict_fail.any()
                common["proven"] = proven
                results[s] = SegmentCheck(True, "proven" if proven else "sampled", i, float(lengths[s]), t, margin,
                                          float(Lj.max()), float(slack.min()), **common)
                continue
            fk = np.flatnonzero(fail)
            if (D[fk] < min_step).any():
                results[s] = SegmentCheck(False, "unresolved", i, float(lengths[s]), t, margin, float(Lj.max()), None,
                                          float(t[fk[np.argmin(D[fk])]]), None, **common)
                continue
            # pieces so that the new spacing meets the inequality if the values stay similar
            with np.errstate(divide="ignore", invalid="ignore"):
                room = sums[fk] - Lj[None, :] * 2 * delta[s] - used[fk]
                ratio = np.where(eye[i][None, :], 0.0, Lj[None, :] * D[fk, None] / np.maximum(room, 1e-300))
            pieces = np.clip(np.ceil(1.25 * np.nan_to_num(ratio, nan=0.0).max(axis=1)), 2, MAX_PIECES).astype(int)
            if len(t) + int((pieces - 1).sum()) > max_samples:
                results[s] = SegmentCheck(False, "sample budget", i, float(lengths[s]), t, margin, float(Lj.max()),
                                          None, float(t[fk[0]]), None, **common)
                continue
            new_t[s] = np.concatenate([t[k] + (t[k + 1] - t[k]) * np.arange(1, p) / p for k, p in zip(fk, pieces)])
            pending = True
        if not pending:
            return results  # type: ignore[return-value]


def default_max_step(clf: Classifier) -> float:
    """Largest spacing of a segment's first sampling grid: ``sqrt(d) * pixel_span / 64`` in L2
    (0.44 for MNIST): the refinement decides the final step; this only keeps the slope
    estimate of ``"local"`` from seeing a too coarse grid."""
    return math.sqrt(clf.dim) * clf.pixel_span / 64.0


def resolve_verification(clf: Classifier, verification) -> tuple[object, LipschitzBound | None]:
    """("bound" | "local" | number, bound) for a requested verification mode."""
    if isinstance(verification, (int, float)) and not isinstance(verification, bool):
        if not verification > 0:
            raise GeometryError(f"a numeric verification slope bound must be positive, got {verification}")
        return float(verification), None
    if verification not in VERIFICATION_MODES:
        raise GeometryError(f"verification must be one of {', '.join(VERIFICATION_MODES)} or a positive number, "
                            f"got {verification!r}")
    if verification == "local":
        return "local", None
    bound = margin_lipschitz_bound(clf)
    if bound is None:
        if verification == "bound":
            raise GeometryError(f"no weight-derived Lipschitz bound for {clf.name}: it is not a plain chain of known "
                                "layers; use verification 'local' (sampled check) or give a slope bound")
        return "local", None
    return "bound", bound


# ------------------------------------------------------------------ results
@dataclass
class ConnectingPath:
    """A path (or the failed search for one) between ``x1`` and ``x2`` inside the region of ``label``.

    ``anchors`` ``(n, *shape)`` are the intermediate points of the piecewise-linear path
    ``x1, anchors..., x2``. ``connected`` is True when every segment passed the check (module
    docstring); ``verified`` only when that check is a proof (``guarantee`` "proven" or
    "given_bound"), so a path that passed sampled checks only is connected but not verified.
    When the search failed, both are False, ``anchors`` is the partial path where it stopped
    and ``stopped`` says why and where. ``statistics`` holds the numbers of docs/science.md
    section 1 and ``guarantee`` / ``guarantee_text``; ``evaluations`` counts images passed
    through the model (forward and gradient passes, float64 re-checks included)."""

    x1: torch.Tensor
    x2: torch.Tensor
    label: int
    anchors: torch.Tensor
    connected: bool
    verified: bool
    statistics: dict
    evaluations: int
    parameters: dict
    stopped: dict | None = None
    segments: list = field(default_factory=list)
    moved: np.ndarray | None = None
    chord_t: np.ndarray | None = None
    chord_margin: np.ndarray | None = None
    chord_labels: np.ndarray | None = None
    seconds: float = 0.0

    @property
    def points(self) -> torch.Tensor:
        """``(n + 2, *shape)``: x1, the anchors, x2."""
        return torch.cat([self.x1[None], self.anchors, self.x2[None]])

    @property
    def n_anchors(self) -> int:
        return int(self.anchors.shape[0])

    @property
    def guarantee(self) -> str:
        """"proven" | "given_bound" | "sampled" | "none" (:data:`GUARANTEES`)."""
        return self.statistics.get("guarantee", "none")

    def arc_positions(self) -> np.ndarray:
        """Cumulative arc length at each point of :attr:`points`, as a fraction of the path length."""
        P = self.points.reshape(self.n_anchors + 2, -1).double()
        seg = (P[1:] - P[:-1]).norm(dim=1).cpu().numpy()
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        return cum / cum[-1] if cum[-1] > 0 else cum

    def margin_profile(self) -> tuple[np.ndarray, np.ndarray]:
        """(position as a fraction of the path length, margin) at every verification sample."""
        if not self.segments or any(s is None for s in self.segments):
            return np.zeros(0), np.zeros(0)
        pos = self.arc_positions()
        s = np.concatenate([pos[k] + c.t * (pos[k + 1] - pos[k]) for k, c in enumerate(self.segments)])
        m = np.concatenate([c.margin for c in self.segments])
        order = np.argsort(s, kind="stable")
        return s[order], m[order]

    def along(self, n: int = 41) -> tuple[np.ndarray, torch.Tensor]:
        """``n`` points evenly spaced in arc length along the path: (positions in [0, 1], ``(n, *shape)``)."""
        pos = self.arc_positions()
        P = self.points
        s = np.linspace(0.0, 1.0, n)
        k = np.clip(np.searchsorted(pos, s, side="right") - 1, 0, len(pos) - 2)
        span = np.maximum(pos[k + 1] - pos[k], 1e-300)
        w = torch.as_tensor((s - pos[k]) / span, dtype=P.dtype, device=P.device).reshape(-1, *([1] * (P.dim() - 1)))
        kk = torch.as_tensor(k, device=P.device)
        return s, P[kk] + w * (P[kk + 1] - P[kk])

    def to_dict(self) -> dict:
        """JSON-ready summary (the CLI's fields, then details)."""
        st = self.statistics
        out = {"label": self.label, "connected": self.connected, "verified": self.verified,
               "anchors": self.n_anchors}
        for k in ("length_ratio", "max_chord_deviation", "chord_outside_fraction", "min_margin"):
            out[k] = st.get(k)
        out["evaluations"] = self.evaluations
        out.update({k: st.get(k) for k in ("moved_anchors", "certified_margin", "chord_length", "samples",
                                           "gradient_evaluations", "guarantee", "guarantee_text", "slope_bound",
                                           "rounding_bound", "float64_segments")})
        out["seconds"] = round(self.seconds, 3)
        out["stopped"] = self.stopped
        out["parameters"] = self.parameters
        return out

    def arrays(self) -> dict:
        """Arrays for an NPZ export."""
        s, m = self.margin_profile()
        return {"x1": self.x1, "x2": self.x2, "anchors": self.anchors, "points": self.points,
                "arc_positions": self.arc_positions(), "moved": self.moved, "path_position": s, "path_margin": m,
                "chord_t": self.chord_t, "chord_margin": self.chord_margin, "chord_labels": self.chord_labels}


def describe_guarantee(path: ConnectingPath) -> str:
    """One sentence on what the result of a path search establishes, for people (CLI, app, reports).

    The words follow :data:`GUARANTEES`: "proven" only for a proof, "connected on N samples, not
    proven" for sampled checks (N = the points evaluated on the path's segments)."""
    st = path.statistics
    n = int(st.get("samples") or 0)
    g = path.guarantee
    if not path.connected:
        return f"no path found ({n:,} points evaluated on the partial path)"
    if g == "proven":
        f64 = int(st.get("float64_segments") or 0)
        return (f"proven on {n:,} samples: weight-derived Lipschitz bound, float rounding bounded"
                + (f"; {f64} segment(s) decided in float64" if f64 else ""))
    if g == "given_bound":
        rounding = ("float rounding bounded" if st.get("rounding") == "bounded" else
                    f"float rounding assumed below {st.get('rounding_bound', 0):.2g}")
        return (f"proven on {n:,} samples if {st.get('slope_bound'):.4g} bounds the slope of every logit "
                f"difference along the path (given slope bound; {rounding})")
    why = ("slope estimated from the samples" if path.parameters.get("verification_used") == "local" else
           "float rounding of the forward pass is as large as the margin on some segment, even in float64")
    return f"connected on {n:,} samples, not proven ({why})"


# ------------------------------------------------------------------ the search
@dataclass
class _Pair:
    label: int
    points: list  # flat (d,) tensors
    moved: list  # bool per point
    checks: list  # SegmentCheck | None per segment
    depths: list = field(default_factory=list)  # anchor depth target per point (0 for the ends)
    stopped: dict | None = None
    evals: float = 0.0
    grad_evals: float = 0.0

    @property
    def active(self) -> bool:
        return self.stopped is None and any(c is None or not c.ok for c in self.checks)


def default_anchor_depth(clf: Classifier) -> float:
    """``ANCHOR_DEPTH_C * sqrt(d) * pixel_span``: how far (L2, first order) anchors are pushed inside."""
    return ANCHOR_DEPTH_C * math.sqrt(clf.dim) * clf.pixel_span


def _deepen(clf: Classifier, p: torch.Tensor, labels: torch.Tensor, depth, iters: int = 4,
            competitors: int = 3) -> torch.Tensor:
    """Move points of class ``labels`` so that their first-order distance ``g_j / |grad g_j|`` to every
    boundary ``g_j = f_i - f_j = 0`` is at least ``depth`` (per point).

    Each iteration takes the ``competitors`` classes nearest to first order and makes the
    minimal-norm step that puts all of them at ``1.05 * depth`` in the linearisation (several
    classes at once: at a junction of classes, a step away from one alone walks into
    another); a step that would lose the class is halved, then dropped. All points together."""
    from .boundary import candidate_gradients

    depth = torch.as_tensor(depth, dtype=p.dtype, device=p.device).expand(p.shape[0])
    if p.shape[0] == 0 or not bool((depth > 0).any()):
        return p
    p = p.clone()
    B = p.shape[0]
    C = min(competitors, clf.num_classes - 1)
    ar = torch.arange(B, device=p.device)
    for _ in range(iters):
        logits = clf.logits(p)
        gap = logits.gather(1, labels[:, None]) - logits  # (B, L), g_j
        gap[ar, labels] = float("inf")
        # nearest competitors by logit gap (gradients of all classes would cost a pass per class)
        comp = gap.topk(C, dim=1, largest=False).indices  # (B, C)
        _, grads = candidate_gradients(clf, p, torch.cat([labels[:, None], comp], dim=1))
        W = (grads[:, :1] - grads[:, 1:]).reshape(B, C, -1)  # rows: grad g_j
        g = gap.gather(1, comp)  # (B, C)
        wn = W.norm(dim=2).clamp_min(1e-30)
        short = (g / wn < depth[:, None]) & (wn > 1e-20)
        need = short.any(1)
        if not bool(need.any()):
            break
        # minimal-norm delta with W_j . delta = target_j - g_j on the short rows (least squares, damped)
        c = torch.where(short, 1.05 * depth[:, None] * wn - g, torch.zeros_like(g))
        Ws = W * short[:, :, None]
        G = Ws @ Ws.transpose(1, 2) + 1e-8 * torch.eye(C, dtype=p.dtype, device=p.device) * \
            (wn ** 2).max(1).values[:, None, None]
        lam = torch.linalg.solve(G, c[:, :, None])
        delta = (Ws.transpose(1, 2) @ lam)[:, :, 0].reshape(p.shape)
        delta = torch.where(need.reshape(-1, *([1] * (p.dim() - 1))), delta, torch.zeros_like(delta))
        moved = torch.zeros(B, dtype=torch.bool, device=p.device)
        for scale in (1.0, 0.5):
            cand = clf.clip(p + scale * delta)
            keep = (clf.predict(cand) == labels) & ~moved & need
            p = torch.where(keep.reshape(-1, *([1] * (p.dim() - 1))), cand, p)
            moved |= keep
    return p


def _validate(max_anchors, overshoot, safety, chord_samples):
    if not isinstance(max_anchors, (int, np.integer)) or max_anchors < 0:
        raise GeometryError(f"max_anchors must be an integer >= 0, got {max_anchors!r}")
    if not overshoot >= 0:
        raise GeometryError(f"overshoot must be >= 0, got {overshoot}")
    if not safety >= 1:
        raise GeometryError(f"safety must be >= 1 (it multiplies the observed slope), got {safety}")
    if not isinstance(chord_samples, (int, np.integer)) or chord_samples < 2:
        raise GeometryError(f"chord_samples must be an integer >= 2, got {chord_samples!r}")


def connecting_paths(clf: Classifier, x1, x2, *, max_anchors: int = DEFAULT_MAX_ANCHORS,
                     overshoot: float = PROJECTION_OVERSHOOT, verification="auto", safety: float = DEFAULT_SAFETY,
                     max_step: float | None = None, min_points: int = DEFAULT_MIN_POINTS,
                     max_samples: int = DEFAULT_MAX_SAMPLES, chord_samples: int = CHORD_SAMPLES,
                     deepfool_iter: int = 50, anchor_depth: float | None = None, label=None,
                     progress: Callable[[float, str], None] | None = None) -> list[ConnectingPath]:
    """Search paths for a batch of pairs ``x1[p] -> x2[p]`` (``(P, *shape)`` each) together.

    Each pair's class is ``label[p]`` (default: the predicted class of ``x1[p]``); ``x2[p]``
    must be predicted in that class too. See :func:`connecting_path` for the parameters."""
    _validate(max_anchors, overshoot, safety, chord_samples)
    from .boundary import deepfool  # the boundary module owns DeepFool

    t0 = time.perf_counter()
    x1 = clf.as_batch(x1).detach()
    x2 = clf.as_batch(x2).detach()
    if x1.shape != x2.shape:
        raise GeometryError(f"x1 and x2 must hold the same number of images; got {x1.shape[0]} and {x2.shape[0]}")
    P = x1.shape[0]
    mode, bound = resolve_verification(clf, verification)
    cclf, counter = _counted(clf)
    l12 = cclf.predict(torch.cat([x1, x2]))
    l1, l2 = l12[:P], l12[P:]
    labels = l1 if label is None else torch.as_tensor(label, device=x1.device).reshape(-1).expand(P).long()
    for p in range(P):
        for name, lab in (("x1", l1[p]), ("x2", l2[p])):
            if int(lab) != int(labels[p]):
                raise GeometryError(
                    f"pair {p}: {name} is predicted as {clf.class_names[int(lab)]} but the path is sought inside class "
                    f"{clf.class_names[int(labels[p])]}; choose two images of one predicted class, or build the second "
                    "end as an adversarial image pushed into that class (--adversarial-from)")
    depth = default_anchor_depth(clf) if anchor_depth is None else float(anchor_depth)
    if not depth >= 0:
        raise GeometryError(f"anchor_depth must be >= 0 (an L2 distance in pixels), got {anchor_depth}")
    params = {"max_anchors": int(max_anchors), "overshoot": float(overshoot), "anchor_depth": depth, "verification": str(verification),
              "verification_used": mode if isinstance(mode, str) else float(mode), "safety": float(safety),
              "max_step": float(max_step if max_step is not None else default_max_step(clf)),
              "min_points": int(min_points), "max_samples": int(max_samples), "chord_samples": int(chord_samples),
              "deepfool_iter": int(deepfool_iter), "rule": VERIFICATION_RULE, "model": clf.name}
    check_kw = dict(verification=mode if not isinstance(mode, str) else ("bound" if mode == "bound" else "local"),
                    safety=safety, max_step=max_step, min_points=min_points, max_samples=max_samples)
    # chord: uniform samples for the outside fraction and the comparison profile
    base = counter.images
    tc = torch.linspace(0, 1, chord_samples, device=x1.device, dtype=x1.dtype)
    chords = (x1[:, None] + tc.reshape(1, -1, *([1] * len(clf.input_shape))) * (x2 - x1)[:, None])
    chord_logits = cclf.logits(chords.reshape(-1, *clf.input_shape)).reshape(P, chord_samples, -1)
    chord_evals = (counter.images - base) / P
    pairs = [_Pair(int(labels[p]), [x1[p].reshape(-1), x2[p].reshape(-1)], [False, False], [None],
                   depths=[0.0, 0.0], evals=chord_evals)
             for p in range(P)]
    rounds = 0
    while any(pr.active for pr in pairs):
        rounds += 1
        todo = [(pi, si) for pi, pr in enumerate(pairs) if pr.stopped is None for si, c in enumerate(pr.checks)
                if c is None]
        if todo:
            if progress:
                done = sum(not pr.active for pr in pairs)
                progress(done / P, f"round {rounds}: checking {len(todo)} segment(s)")
            A = torch.stack([pairs[pi].points[si] for pi, si in todo])
            B = torch.stack([pairs[pi].points[si + 1] for pi, si in todo])
            labs = torch.as_tensor([pairs[pi].label for pi, _ in todo])
            base = counter.images
            res = check_segments(cclf, A.reshape(-1, *clf.input_shape), B.reshape(-1, *clf.input_shape), labs,
                                 **check_kw)
            assert counter.images - base == sum(r.evaluations for r in res)
            for (pi, si), r in zip(todo, res):
                pairs[pi].checks[si] = r
                pairs[pi].evals += r.evaluations
        # split every failing segment of every pair that still has budget
        mids, owners, depths = [], [], []
        for pi, pr in enumerate(pairs):
            if not pr.active:
                continue
            failing = [si for si, c in enumerate(pr.checks) if not c.ok]
            used = len(pr.points) - 2
            if used + len(failing) > max_anchors:
                pr.stopped = _stop_info(pr, failing, "anchor budget exhausted",
                                        f"{len(failing)} segment(s) still fail with {used} of {max_anchors} anchors used")
                continue
            for si in failing:
                mids.append((pr.points[si] + pr.points[si + 1]) / 2)
                owners.append((pi, si))
                # depth doubles next to an anchor whose segment failed again (capped at a quarter segment)
                seg_len = float((pr.points[si + 1] - pr.points[si]).norm())
                depths.append(min(max(depth, 2 * max(pr.depths[si], pr.depths[si + 1])), max(depth, seg_len / 4)))
        if not mids:
            continue
        M = torch.stack(mids).reshape(-1, *clf.input_shape)
        owner_labels = torch.as_tensor([pairs[pi].label for pi, _ in owners], device=M.device)
        dep = torch.as_tensor(depths, dtype=M.dtype, device=M.device)
        base, gbase = counter.images, counter.grad_images
        inside = (cclf.predict(M) == owner_labels).cpu()
        out_idx = torch.nonzero(~inside).flatten().tolist()
        ok_proj = torch.ones(len(owners), dtype=torch.bool)
        if out_idx:
            if progress:
                progress(sum(not pr.active for pr in pairs) / P, f"round {rounds}: moving {len(out_idx)} midpoint(s) "
                                                                 "into the region (targeted DeepFool)")
            df = deepfool(cclf, M[out_idx], target=owner_labels[out_idx], overshoot=overshoot,
                          max_iter=deepfool_iter, clip=True)
            M[out_idx] = df.point
            ok_proj[out_idx] = df.converged.cpu()
        # inside midpoints (projected or not) are pushed to their depth when shallower (first order)
        new_pts = _deepen(cclf, M, owner_labels, dep)
        ok_proj &= (cclf.predict(new_pts) == owner_labels).cpu()
        share = (counter.images - base) / len(owners)
        gshare = (counter.grad_images - gbase) / len(owners)
        for pi, _ in owners:
            pairs[pi].evals += share
            pairs[pi].grad_evals += gshare
        # insert (from the right so indices stay valid)
        for k in sorted(range(len(owners)), key=lambda k: (owners[k][0], -owners[k][1])):
            pi, si = owners[k]
            pr = pairs[pi]
            if pr.stopped is not None:
                continue
            if not ok_proj[k]:
                pr.stopped = _stop_info(pr, [si], "projection failed",
                                        "targeted DeepFool could not move the midpoint of this segment into the class "
                                        f"within {deepfool_iter} iterations")
                continue
            pr.points.insert(si + 1, new_pts[k].reshape(-1))
            pr.moved.insert(si + 1, k in out_idx)
            pr.depths.insert(si + 1, depths[k])
            pr.checks[si:si + 1] = [None, None]
    # every image through the model is counted; the per-pair split of shared batches is by rows
    results = [_finish(clf, x1[p], x2[p], pairs[p], chord_logits[p], tc, params, mode, bound)
               for p in range(P)]
    seconds = time.perf_counter() - t0
    total = counter.images
    for r in results:
        r.seconds = seconds / P
    if progress:
        progress(1.0, f"done: {sum(r.connected for r in results)} of {P} connected, {total} evaluations")
    return results


def _stop_info(pr: _Pair, failing: list[int], reason: str, detail: str) -> dict:
    si = failing[0]
    c = pr.checks[si]
    P = torch.stack(pr.points).double()
    seg = (P[1:] - P[:-1]).norm(dim=1).cpu().numpy()
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    total = cum[-1] if cum[-1] > 0 else 1.0
    where = None
    if c is not None and c.bad_t is not None:
        where = float((cum[si] + c.bad_t * seg[si]) / total)
    return {"reason": reason, "detail": detail, "segment": int(si), "segments": len(pr.checks),
            "failing_segments": [int(s) for s in failing], "anchors_used": len(pr.points) - 2,
            "check": None if c is None else c.reason,
            "check_precision": None if c is None else c.precision,  # the arithmetic that decided it
            "position": where,  # fraction of the (partial) path length where the first bad sample lies
            "bad_label": None if c is None else c.bad_label,
            "segment_length": float(seg[si])}


def _finish(clf, x1, x2, pr: _Pair, chord_logits, tc, params, mode, bound) -> ConnectingPath:
    lab = pr.label
    shape = clf.input_shape
    pts = torch.stack(pr.points)
    anchors = pts[1:-1].reshape(-1, *shape).detach()
    connected = pr.stopped is None and all(c is not None and c.ok for c in pr.checks)
    cl = chord_logits.double().cpu().numpy()
    others = cl.copy()
    others[:, lab] = -np.inf
    chord_margin = cl[:, lab] - others.max(axis=1)
    chord_labels = cl.argmax(axis=1)
    c = (x2 - x1).reshape(-1).double()
    clen = float(c.norm())
    stats = {"anchors": int(anchors.shape[0]), "moved_anchors": int(sum(pr.moved[1:-1])),
             "largest_anchor_depth": float(max(pr.depths[1:-1], default=0.0)),
             "chord_length": clen, "chord_outside_fraction": float(np.mean(chord_labels != lab)),
             "samples": int(sum(ch.samples for ch in pr.checks if ch is not None)),
             "gradient_evaluations": int(round(pr.grad_evals))}
    done = [ch for ch in pr.checks if ch is not None]
    if not connected:
        guarantee = "none"
    elif all(ch.proven for ch in done):
        guarantee = "proven" if mode == "bound" else "given_bound"
    else:
        guarantee = "sampled"
    stats["guarantee"] = guarantee
    stats["rounding"] = (None if mode == "local" else
                         "bounded" if done and all(ch.rounding == "bounded" for ch in done) else "assumed")
    stats["rounding_bound"] = float(max((ch.rounding_bound for ch in done), default=0.0))
    stats["float64_segments"] = int(sum(ch.precision == "float64" and str(clf.dtype) != "torch.float64"
                                        for ch in done))
    if connected:
        P = pts.double()
        length = float((P[1:] - P[:-1]).norm(dim=1).sum())
        if clen > 0:
            u = c / clen
            rel = P[1:-1] - x1.reshape(-1).double()
            tpar = (rel @ u).clamp(0, clen)
            dev = (rel - tpar[:, None] * u).norm(dim=1)
            stats["max_chord_deviation"] = float(dev.max() / clen) if len(dev) else 0.0
            stats["length_ratio"] = length / clen
        else:
            stats["max_chord_deviation"], stats["length_ratio"] = 0.0, 1.0
        stats["path_length"] = length
        stats["min_margin"] = float(min(ch.margin.min() for ch in pr.checks))
        stats["certified_margin"] = float(min(ch.certified_margin for ch in pr.checks))
        stats["slope_bound"] = float(max(ch.slope_bound for ch in pr.checks))
    else:
        for k in ("max_chord_deviation", "length_ratio", "path_length", "min_margin", "certified_margin",
                  "slope_bound"):
            stats[k] = None
    evals = int(round(pr.evals))
    verified = connected and guarantee in ("proven", "given_bound")
    path = ConnectingPath(x1.detach(), x2.detach(), lab, anchors, connected, verified, stats, evals, dict(params),
                          pr.stopped, list(pr.checks), np.asarray(pr.moved[1:-1], dtype=bool),
                          tc.double().cpu().numpy(), chord_margin, chord_labels)
    stats["guarantee_text"] = describe_guarantee(path)
    return path


def connecting_path(clf: Classifier, x1, x2, *, max_anchors: int = DEFAULT_MAX_ANCHORS,
                    overshoot: float = PROJECTION_OVERSHOOT, verification="auto", safety: float = DEFAULT_SAFETY,
                    max_step: float | None = None, min_points: int = DEFAULT_MIN_POINTS,
                    max_samples: int = DEFAULT_MAX_SAMPLES, chord_samples: int = CHORD_SAMPLES,
                    deepfool_iter: int = 50, anchor_depth: float | None = None, label: int | None = None,
                    progress: Callable[[float, str], None] | None = None) -> ConnectingPath:
    """A piecewise-linear path from ``x1`` to ``x2`` inside one classification region, proven or sampled
    (``guarantee``; module docstring).

    Parameters
    ----------
    x1, x2 : one image each (``input_shape`` or ``(1, *input_shape)``), in pixel space, both
        predicted in class ``label`` (default: the class of ``x1``).
    max_anchors : anchor budget; when the path would need more, the search stops and the
        result says ``connected=False`` with ``stopped`` (reason, segment, position).
    overshoot : targeted-DeepFool overshoot for moving an outside midpoint into the region
        (:data:`PROJECTION_OVERSHOOT`; small, so the anchor sits just inside).
    anchor_depth : after DeepFool, anchors are pushed to at least this first-order L2 distance inside
        the boundary (default :func:`default_anchor_depth`; see :data:`ANCHOR_DEPTH_C`).
    verification : "auto" | "bound" | "local" | slope bound (module docstring).
    safety : factor on the observed slope for "local".
    max_step : largest first-grid spacing (L2, pixels; :func:`default_max_step`).
    min_points, max_samples : smallest first grid and sample budget per segment.
    chord_samples : uniform samples of the straight chord (outside fraction, margin profile).

    Returns a :class:`ConnectingPath`."""
    x1b, x2b = clf.as_batch(x1), clf.as_batch(x2)
    if x1b.shape[0] != 1 or x2b.shape[0] != 1:
        raise GeometryError("connecting_path takes one image per end; use connecting_paths for batches")
    return connecting_paths(clf, x1b, x2b, max_anchors=max_anchors, overshoot=overshoot, verification=verification,
                            safety=safety, max_step=max_step, min_points=min_points, max_samples=max_samples,
                            chord_samples=chord_samples, deepfool_iter=deepfool_iter, anchor_depth=anchor_depth,
                            label=None if label is None else [label], progress=progress)[0]


# ------------------------------------------------------------------ endpoints and many pairs
def adversarial_endpoint(clf: Classifier, source, target: int, *, overshoot: float = PROJECTION_OVERSHOOT,
                         anchor_depth: float | None = None, max_iter: int = 50) -> torch.Tensor:
    """An image of another class pushed into class ``target``: targeted DeepFool from ``source``
    (``(B, *shape)`` or one image), then the same small depth push as anchors get. Returns ``(B, *shape)``."""
    from .boundary import deepfool

    x = clf.as_batch(source).detach()
    if not 0 <= int(target) < clf.num_classes:
        raise GeometryError(f"target class must be in 0..{clf.num_classes - 1}, got {target}")
    tg = torch.full((x.shape[0],), int(target), dtype=torch.long, device=x.device)
    if bool((clf.predict(x) == tg).any()):
        raise GeometryError(f"the adversarial source is already classified as {clf.class_names[int(target)]}; "
                            "choose an image of another class as the source")
    df = deepfool(clf, x, target=tg, overshoot=overshoot, max_iter=max_iter, clip=True)
    depth = default_anchor_depth(clf) if anchor_depth is None else float(anchor_depth)
    point = _deepen(clf, df.point, tg, depth)
    if not bool(df.converged.all()) or bool((clf.predict(point) != tg).any()):
        raise ConvergenceError(f"targeted DeepFool did not push the source into class {clf.class_names[int(target)]} "
                               f"within {max_iter} iterations; try another source image or a larger max_iter")
    return point.detach()


@dataclass
class PairSet:
    """Pairs of endpoints ``x1[p] -> x2[p]`` (``(P, *shape)``) in class ``labels[p]``, with a description each."""

    x1: torch.Tensor
    x2: torch.Tensor
    labels: torch.Tensor
    descriptions: list[str]
    kind: str


PAIR_KINDS = ("natural", "adversarial")


def gallery_pairs(clf: Classifier, n: int, *, kind: str = "natural", seed: int = 0,
                  overshoot: float = PROJECTION_OVERSHOOT) -> PairSet:
    """``n`` pairs from the held-out gallery, classes taken in turn (0, 1, ..., 0, 1, ...).

    ``"natural"``: two different gallery images of class c, both predicted as c.
    ``"adversarial"``: a gallery image of class c and an image of another class c' (both
    correctly predicted) pushed into class c by targeted DeepFool (:func:`adversarial_endpoint`)."""
    from .images import gallery_batch

    if kind not in PAIR_KINDS:
        raise GeometryError(f"pair kind must be one of {', '.join(PAIR_KINDS)}, got {kind!r}")
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise GeometryError(f"the number of pairs must be a positive integer, got {n!r}")
    x, y = gallery_batch(clf)
    x = clf.as_batch(x)
    pred = clf.predict(x).cpu().numpy()
    y = y.numpy()
    ok = pred == y
    classes = [c for c in range(clf.num_classes) if (ok & (y == c)).sum() >= 2]
    if not classes:
        raise GeometryError("the gallery has no class with two correctly classified images for this model")
    rank = {c: np.flatnonzero(y == c) for c in classes}  # gallery index = rank within the class
    rng = np.random.default_rng(seed)
    a_idx, b_idx, labels, desc = [], [], [], []
    for p in range(int(n)):
        c = classes[p % len(classes)]
        good = np.flatnonzero(ok & (y == c))
        i, j = rng.choice(good, size=2, replace=False)
        gi = int(np.flatnonzero(rank[c] == i)[0])
        a_idx.append(i)
        labels.append(c)
        if kind == "natural":
            b_idx.append(j)
            desc.append(f"{c}#{gi} -> {c}#{int(np.flatnonzero(rank[c] == j)[0])}")
        else:
            others = [k for k in classes if k != c]
            c2 = int(rng.choice(others))
            src = int(rng.choice(np.flatnonzero(ok & (y == c2))))
            b_idx.append(src)
            desc.append(f"{c}#{gi} -> adversarial({c2}#{int(np.flatnonzero(rank[c2] == src)[0])} pushed into {c})")
    x1 = x[torch.as_tensor(a_idx, device=x.device)]
    x2 = x[torch.as_tensor(b_idx, device=x.device)]
    lab = torch.as_tensor(labels)
    if kind == "adversarial":
        # one batched targeted DeepFool for all sources (as adversarial_endpoint does for one)
        from .boundary import deepfool

        tg = lab.to(x.device)
        df = deepfool(clf, x2, target=tg, overshoot=overshoot, clip=True)
        x2 = _deepen(clf, df.point, tg, default_anchor_depth(clf))
        bad = (clf.predict(x2) != tg).cpu() | ~df.converged.cpu()
        if bool(bad.any()):
            keep = ~bad
            x1, x2, lab = x1[keep.to(x1.device)], x2[keep.to(x2.device)], lab[keep]
            desc = [d for d, k in zip(desc, keep.tolist()) if k]
    return PairSet(x1.detach(), x2.detach(), lab, desc, kind)


def _describe(values, digits: int = 4) -> dict | None:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if not len(v):
        return None
    q = np.quantile(v, [0.1, 0.5, 0.9])
    return {"mean": round(float(v.mean()), digits), "median": round(float(q[1]), digits),
            "q10": round(float(q[0]), digits), "q90": round(float(q[2]), digits),
            "min": round(float(v.min()), digits), "max": round(float(v.max()), digits)}


@dataclass
class PathStatistics:
    """Paths for many pairs and their summary (docs/science.md section 1)."""

    paths: list[ConnectingPath]
    descriptions: list[str]
    kind: str
    parameters: dict
    seconds: float

    def table(self) -> dict[str, list]:
        """One row per pair (columns as lists)."""
        rows = {"pair": self.descriptions, "label": [p.label for p in self.paths],
                "connected": [p.connected for p in self.paths], "verified": [p.verified for p in self.paths],
                "guarantee": [p.guarantee for p in self.paths], "anchors": [p.n_anchors for p in self.paths]}
        for k in ("chord_outside_fraction", "length_ratio", "max_chord_deviation", "min_margin"):
            rows[k] = [p.statistics.get(k) for p in self.paths]
        rows["evaluations"] = [p.evaluations for p in self.paths]
        rows["stopped"] = [None if p.stopped is None else p.stopped["reason"] for p in self.paths]
        return rows

    def summary(self) -> dict:
        con = [p for p in self.paths if p.connected]
        n = len(self.paths)
        anchors = [p.n_anchors for p in con]
        hist = {int(k): int(v) for k, v in zip(*np.unique(anchors, return_counts=True))} if anchors else {}
        outside = [p.statistics["chord_outside_fraction"] for p in self.paths]
        counts = {g: sum(p.guarantee == g for p in con) for g in GUARANTEES if g != "none"}
        verified = sum(p.verified for p in self.paths)
        return {
            "kind": self.kind, "pairs": n, "connected": len(con),
            "connected_fraction": round(len(con) / n, 4) if n else None,
            # proven and sampled-only paths counted apart: only "verified" ones carry a proof
            "verified": verified, "verified_fraction": round(verified / n, 4) if n else None,
            "proven": counts["proven"], "given_bound": counts["given_bound"], "sampled_only": counts["sampled"],
            "anchors_histogram": hist,
            "anchors": _describe(anchors, 2),
            "chord_leaves_region_fraction": round(float(np.mean([o > 0 for o in outside])), 4) if n else None,
            "chord_outside_fraction": _describe(outside),
            "length_ratio": _describe([p.statistics["length_ratio"] for p in con], 5),
            "max_chord_deviation": _describe([p.statistics["max_chord_deviation"] for p in con]),
            "min_margin": _describe([p.statistics["min_margin"] for p in con]),
            "evaluations": _describe([p.evaluations for p in self.paths], 0),
            "evaluations_total": int(sum(p.evaluations for p in self.paths)),
            "not_connected": [{"pair": d, **(p.stopped or {})} for d, p in zip(self.descriptions, self.paths)
                              if not p.connected],
            "seconds": round(self.seconds, 2),
        }

    def arrays(self) -> dict:
        t = self.table()
        return {"label": np.asarray(t["label"]), "connected": np.asarray(t["connected"]),
                "verified": np.asarray(t["verified"]), "guarantee": np.asarray(t["guarantee"]),
                "anchors": np.asarray(t["anchors"]),
                **{k: np.asarray([np.nan if v is None else v for v in t[k]], dtype=float)
                   for k in ("chord_outside_fraction", "length_ratio", "max_chord_deviation", "min_margin")},
                "evaluations": np.asarray(t["evaluations"])}


def path_statistics(clf: Classifier, x1, x2, *, descriptions: list[str] | None = None, kind: str = "pairs",
                    group: int = 8, progress: Callable[[float, str], None] | None = None,
                    **kwargs) -> PathStatistics:
    """:func:`connecting_paths` for many pairs (``(P, *shape)`` each), ``group`` pairs per batched search,
    and their statistics. ``kwargs`` go to :func:`connecting_paths` (``max_anchors``, ``verification``...)."""
    t0 = time.perf_counter()
    x1, x2 = clf.as_batch(x1), clf.as_batch(x2)
    P = x1.shape[0]
    if not isinstance(group, (int, np.integer)) or group < 1:
        raise GeometryError(f"group must be a positive integer, got {group!r}")
    labels = kwargs.pop("label", None)
    labels = None if labels is None else torch.as_tensor(labels).reshape(-1)
    groups = [(g0, min(P, g0 + group)) for g0 in range(0, P, group)]
    # one group per chunk, here or on Ray workers (geometry.distributed): the same groups, so the same paths
    from .distributed import map_chunks

    found = map_chunks(_path_group, clf, groups, x1, x2, labels, kwargs, progress=progress,
                       what=f"paths for {P} pairs, {group} per task")
    paths: list[ConnectingPath] = [p for g in found for p in g]
    params = dict(paths[0].parameters) if paths else {}
    return PathStatistics(paths, list(descriptions) if descriptions else [f"pair {p}" for p in range(P)], kind,
                          params, time.perf_counter() - t0)


def _path_group(clf: Classifier, bounds: tuple[int, int], x1, x2, labels, kwargs: dict) -> list[ConnectingPath]:
    """:func:`connecting_paths` for the pairs ``bounds[0]:bounds[1]`` (one chunk of :func:`path_statistics`)."""
    s, e = bounds
    lab = None if labels is None else labels[s:e]
    return connecting_paths(clf, x1[s:e].to(clf.device), x2[s:e].to(clf.device), label=lab, **kwargs)


# ------------------------------------------------------------------ the path in a plane
DEFAULT_PLANE_RESOLUTION = 97
PLANE_MARGIN = 1.25  # the square's half-width is this times the farthest path point (plane coordinates)


@dataclass
class PathPlane:
    """The plane through the chord midpoint spanned by the chord and the largest anchor deviation,
    with the class regions on a grid (:class:`geometry.sections.CrossSection`) and the path's
    points projected onto it (``path_ab``; ``offsets`` = their distance from the plane, 0 for x1,
    x2 and the anchor that defines the plane)."""

    section: object
    path_ab: np.ndarray
    offsets: np.ndarray
    direction: str
    chord_ab: np.ndarray

    def arrays(self) -> dict:
        return {**self.section.arrays(), "path_ab": self.path_ab, "path_offsets": self.offsets,
                "chord_ab": self.chord_ab}


def path_plane(clf: Classifier, path: ConnectingPath, *, resolution: int = DEFAULT_PLANE_RESOLUTION,
               extent: float | None = None, seed: int = 0, adaptive: bool = True,
               progress: Callable[[float, str], None] | None = None) -> PathPlane:
    """Class regions in the plane of the chord ``x2 - x1`` and the anchor farthest from it.

    ``u`` = the chord direction, ``v`` = the component of (farthest anchor - x1) orthogonal to ``u``;
    a straight path (no anchor off the chord) gets a random ``v`` (Gaussian, ``seed``). The origin is
    the chord's midpoint; the grid is ``resolution`` points per axis over ``[-extent, extent]^2``
    (default: the larger of :data:`PLANE_MARGIN` x the farthest path point and the chord length), evaluated by
    :func:`geometry.sections.section_on_plane` (chunked, adaptive near label changes)."""
    from .sections import MarkedPoint, Plane, random_direction, section_on_plane

    x1 = path.x1.reshape(-1).double().cpu()
    x2 = path.x2.reshape(-1).double().cpu()
    c = x2 - x1
    clen = float(c.norm())
    if clen == 0:
        raise GeometryError("the two ends of the path are the same image; there is no chord to draw a plane on")
    u = c / clen
    P = path.points.reshape(path.n_anchors + 2, -1).double().cpu()
    rel = P - x1
    perp = rel - (rel @ u)[:, None] * u
    dev = perp.norm(dim=1)
    k = int(dev.argmax())
    if float(dev[k]) > 1e-9 * clen:
        v = perp[k] / dev[k]
        direction = f"largest anchor deviation (anchor {k}, {float(dev[k]) / clen:.3g} of the chord)"
    else:
        r = random_direction(path.x1.shape, seed).reshape(-1).double()
        r = r - (r @ u) * u
        v = r / r.norm()
        direction = f"random (seed {seed}): the path is straight"
    origin = (x1 + x2) / 2
    ab = torch.stack([(P - origin) @ u, (P - origin) @ v], dim=1)
    offsets = (P - origin - ab[:, :1] * u - ab[:, 1:] * v).norm(dim=1)
    shape = path.x1.shape
    dt = clf.dtype
    # the ends are marked on the plane; anchors are in ``path_ab`` (figures draw the whole polyline)
    marks = [MarkedPoint(n, "image", float(ab[k, 0]), float(ab[k, 1]), float(offsets[k]), path.label)
             for n, k in (("x1", 0), ("x2", -1))]
    plane = Plane("path: chord, largest anchor deviation", origin.reshape(shape).to(dt), u.reshape(shape).to(dt),
                  v.reshape(shape).to(dt), ("chord", "deviation"), marks,
                  {"direction": direction, "chord_length": clen, "label": path.label})
    if extent is None:  # room around the path: at least the chord length on each side of the midpoint
        extent = max(PLANE_MARGIN * float(ab.abs().max()), clen)
    section = section_on_plane(clf, plane, extent=float(extent), resolution=resolution, adaptive=adaptive,
                               progress=progress)
    return PathPlane(section, ab.numpy(), offsets.numpy(), direction,
                     np.array([[-clen / 2, 0.0], [clen / 2, 0.0]]))


# ------------------------------------------------------------------ pairs whose straight chord leaves the class
CHORD_SCAN_STEPS = 32        # samples per chord in a scan (interior points, evenly spaced)
CHORD_SCAN_POINTS = 8192     # model inputs per batched forward pass of a scan
CHORD_ORDERS = ("random", "longest")


@dataclass
class ChordScan:
    """Straight chords ``images[first[p]] -> images[second[p]]`` sampled at ``steps`` interior points
    ``t = (i + 1/2) / steps``: the fraction of samples the model puts outside class ``labels[p]``
    (``outside_fraction``), the first such position (``first_exit``, NaN when none) and the class met
    most often outside (``exit_label``, -1 when none). A sampled scan: a thin slab of another class
    between two samples goes unseen, so ``outside_fraction == 0`` means "no sample left the class"."""

    first: np.ndarray
    second: np.ndarray
    labels: np.ndarray
    outside_fraction: np.ndarray
    first_exit: np.ndarray
    exit_label: np.ndarray
    steps: int
    candidates: int
    evaluations: int
    seconds: float

    def __len__(self) -> int:
        return int(len(self.first))

    def _take(self, idx) -> "ChordScan":
        idx = np.asarray(idx, dtype=int)
        return ChordScan(self.first[idx], self.second[idx], self.labels[idx], self.outside_fraction[idx],
                         self.first_exit[idx], self.exit_label[idx], self.steps, self.candidates, self.evaluations,
                         self.seconds)

    def leaving(self, limit: int | None = None) -> "ChordScan":
        """The pairs whose chord left the class, most outside first (ties: earlier exit first), at most ``limit``."""
        idx = np.flatnonzero(self.outside_fraction > 0)
        order = np.lexsort((self.first_exit[idx], -self.outside_fraction[idx]))
        idx = idx[order]
        return self._take(idx if limit is None else idx[:int(limit)])

    def staying(self) -> "ChordScan":
        """The pairs whose chord samples all stayed in the class, in scan order."""
        return self._take(np.flatnonzero(self.outside_fraction == 0))

    def to_dict(self) -> dict:
        return {"pairs": [{"first": int(i), "second": int(j), "label": int(c), "outside_fraction": float(f),
                           "first_exit": None if not math.isfinite(e) else float(e), "exit_label": int(x)}
                          for i, j, c, f, e, x in zip(self.first, self.second, self.labels, self.outside_fraction,
                                                      self.first_exit, self.exit_label)],
                "steps": self.steps, "candidates": self.candidates, "evaluations": self.evaluations,
                "seconds": round(self.seconds, 3)}


def _check_steps(steps) -> int:
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise GeometryError(f"steps (samples per chord) must be a positive integer, got {steps!r}")
    return int(steps)


def chord_scan(clf: Classifier, images, labels, *, first=None, steps: int = CHORD_SCAN_STEPS,
               max_candidates: int | None = None, order: str = "random", seed: int = 0,
               progress: Callable[[float, str], None] | None = None) -> ChordScan:
    """Sample the straight chord of every candidate pair of ``images`` (``(N, *shape)``) in batches.

    Candidate pairs: ``(i, j)``, ``i < j``, with ``labels[i] == labels[j] >= 0`` and both images predicted as
    that label (a negative label leaves an image out). ``first`` (an index or a list) keeps only the pairs
    ``(f, j)`` that start at one of those images (``j`` any other image of the same label). With more than
    ``max_candidates`` candidates, that many are kept: drawn at random (``order="random"``, ``seed``) or the
    longest chords (``order="longest"``: long chords are the likeliest to leave). Returns every scanned pair
    (:class:`ChordScan`; ``.leaving()`` keeps those whose chord left the class)."""
    steps = _check_steps(steps)
    t0 = time.perf_counter()
    x = clf.as_batch(images).detach()
    lab = np.asarray(torch.as_tensor(labels).reshape(-1).cpu().numpy(), dtype=int)
    if len(lab) != x.shape[0]:
        raise GeometryError(f"got {x.shape[0]} images but {len(lab)} labels")
    pred = clf.predict(x).cpu().numpy()
    ok = (lab >= 0) & (pred == lab)
    n = x.shape[0]
    if first is None:
        ii, jj = np.triu_indices(n, 1)
    else:
        fs = np.atleast_1d(np.asarray(first, dtype=int))
        if len(fs) and (fs.min() < 0 or fs.max() >= n):
            raise GeometryError(f"first must index the {n} images, got {first!r}")
        ii = np.repeat(fs, n)
        jj = np.tile(np.arange(n), len(fs))
        keep = ii != jj
        ii, jj = ii[keep], jj[keep]
    keep = ok[ii] & ok[jj] & (lab[ii] == lab[jj])
    ii, jj = ii[keep], jj[keep]
    if order not in CHORD_ORDERS:
        raise GeometryError(f"order must be one of {', '.join(CHORD_ORDERS)}, got {order!r}")
    if order == "longest" and len(ii):  # long chords are the likeliest to leave a class
        flat = x.reshape(n, -1)
        length = (flat[torch.as_tensor(ii, device=x.device)] - flat[torch.as_tensor(jj, device=x.device)]).norm(dim=1)
        by = np.argsort(-length.cpu().numpy(), kind="stable")
        ii, jj = ii[by], jj[by]
    if max_candidates is not None:
        if not isinstance(max_candidates, (int, np.integer)) or max_candidates < 1:
            raise GeometryError(f"max_candidates must be a positive integer, got {max_candidates!r}")
        if len(ii) > max_candidates:
            pick = (np.arange(int(max_candidates)) if order == "longest" else
                    np.sort(np.random.default_rng(seed).choice(len(ii), size=int(max_candidates), replace=False)))
            ii, jj = ii[pick], jj[pick]
    P = len(ii)
    frac = np.zeros(P)
    exit_t = np.full(P, np.nan)
    exit_lab = np.full(P, -1, dtype=int)
    t = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps
    tt = t.reshape(1, steps, *([1] * (x.dim() - 1)))
    per = max(1, CHORD_SCAN_POINTS // steps)
    tn = t.cpu().numpy()
    for s in range(0, P, per):
        a = x[torch.as_tensor(ii[s:s + per], device=x.device)]
        b = x[torch.as_tensor(jj[s:s + per], device=x.device)]
        pts = a[:, None] + tt * (b - a)[:, None]
        p = clf.predict(pts.reshape(-1, *x.shape[1:])).reshape(len(a), steps).cpu().numpy()
        out = p != lab[ii[s:s + per]][:, None]
        frac[s:s + per] = out.mean(axis=1)
        for r in np.flatnonzero(out.any(axis=1)):
            exit_t[s + r] = float(tn[np.argmax(out[r])])
            exit_lab[s + r] = int(np.bincount(p[r][out[r]]).argmax())
        if progress is not None:
            progress(min(1.0, (s + per) / max(P, 1)), f"{min(P, s + per)} of {P} chords")
    return ChordScan(ii, jj, lab[ii] if P else np.zeros(0, dtype=int), frac, exit_t, exit_lab, steps, P,
                     int(n + P * steps), time.perf_counter() - t0)


def chord_leaving_pairs(clf: Classifier, images, labels, *, steps: int = CHORD_SCAN_STEPS, limit: int | None = None,
                        first=None, max_candidates: int | None = None, order: str = "random", seed: int = 0,
                        progress: Callable[[float, str], None] | None = None) -> ChordScan:
    """The pairs of images of one class whose straight chord leaves the class (found by :func:`chord_scan`),
    sorted by the fraction of the chord outside, at most ``limit``: the interesting cases for a connecting path."""
    return chord_scan(clf, images, labels, first=first, steps=steps, max_candidates=max_candidates, order=order,
                      seed=seed, progress=progress).leaving(limit)


def gallery_chord_scan(clf: Classifier, x, label: int, *, steps: int = CHORD_SCAN_STEPS,
                       dataset: str | None = None) -> ChordScan:
    """Chords from image ``x`` to every held-out gallery image of class ``label``: ``second`` is the
    gallery index within the class (``first`` is -1, standing for ``x``). ``x`` must be predicted as ``label``."""
    from .images import gallery_batch

    x1 = clf.as_batch(x)[:1].detach()
    xs, ys = gallery_batch(clf, dataset=dataset)
    mine = torch.as_tensor(ys).reshape(-1) == int(label)
    if not bool(mine.any()):
        raise GeometryError(f"the gallery has no images of class {clf.class_names[int(label)]}")
    others = clf.as_batch(xs[mine]).to(x1.device, x1.dtype)
    images = torch.cat([x1, others])
    labs = torch.full((images.shape[0],), int(label), dtype=torch.long)
    if int(clf.predict(x1)[0]) != int(label):
        raise GeometryError(f"the image is not predicted as {clf.class_names[int(label)]}; its chords cannot stay "
                            "in that class")
    scan = chord_scan(clf, images, labs, first=0, steps=steps)
    # the same pixels as x (the sidebar image itself, when it is a gallery image) are no pair
    same = (others.reshape(len(others), -1) - x1.reshape(1, -1)).abs().amax(dim=1).cpu().numpy() == 0
    keep = ~same[scan.second - 1]
    scan = scan._take(np.flatnonzero(keep))
    scan.first = np.full(len(scan), -1, dtype=int)
    scan.second = scan.second - 1
    return scan


def gallery_class_leaving_pairs(clf: Classifier, label: int, *, steps: int = 16, limit: int | None = 10,
                                max_candidates: int | None = 300, order: str = "longest", seed: int = 0,
                                dataset: str | None = None,
                                progress: Callable[[float, str], None] | None = None) -> ChordScan:
    """:func:`chord_leaving_pairs` among the held-out gallery images of class ``label`` (``first`` and
    ``second`` are gallery indices within the class), at most ``max_candidates`` pairs scanned (by default
    the longest chords, 16 samples each: a quick scan that can miss pairs)."""
    from .images import gallery_batch

    xs, ys = gallery_batch(clf, dataset=dataset)
    mine = torch.as_tensor(ys).reshape(-1) == int(label)
    if not bool(mine.any()):
        raise GeometryError(f"the gallery has no images of class {clf.class_names[int(label)]}")
    images = clf.as_batch(xs[mine])
    labs = torch.full((images.shape[0],), int(label), dtype=torch.long)
    return chord_leaving_pairs(clf, images, labs, steps=steps, limit=limit, max_candidates=max_candidates,
                               order=order, seed=seed, progress=progress)
