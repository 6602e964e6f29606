"""The reproduction report: the paper's experiments on one model, as Markdown + self-contained HTML.

:func:`run_reproduction` runs, with one set of recorded settings: principal-curvature
spectra at the boundary points of several held-out images (``geometry.curvature``),
connectivity statistics (``geometry.paths``, only when that module is installed), the
shared curved subspace S, both vulnerability experiments with their baselines, and
the curvature-asymmetry detector against DeepFool, FGSM and PGD. :func:`write_report`
writes ``report.md`` (figures as ``.svg``/``.png`` files beside it), ``report.html``
(the same with every figure inlined: one file to share) and ``numbers.json``.

Figures are drawn here as plain SVG (and PNG via Pillow for image grids), so the
library needs no plotting package. Imports torch, numpy, Pillow; never Streamlit
or Plotly.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .classifier import Classifier
from .errors import GeometryError

Progress = Callable[[float, str], None]

ATTACK_COLORS = {"deepfool": "#1f77b4", "fgsm": "#ff7f0e", "pgd": "#d62728"}


def _noop(frac: float, msg: str) -> None:
    pass


# ================================================================== SVG figures
def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), default=10 * mag)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e4 or a < 1e-3:
        return f"{v:.0e}"
    return f"{v:.4g}"


class _Plot:
    """A minimal SVG axes: linear or log-x, data->pixel mapping, ticks, legend."""

    def __init__(self, title, xlabel, ylabel, xlim, ylim, logx=False, width=560, height=340):
        self.W, self.H = width, height
        self.l, self.r, self.t, self.b = 62, 16, 34, 46
        self.logx = logx
        x0, x1 = xlim
        if logx:
            x0, x1 = math.log10(x0), math.log10(x1)
        if x1 <= x0:
            x1 = x0 + 1
        y0, y1 = ylim
        if y1 <= y0:
            y1 = y0 + 1
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1
        self.parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                      f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
                      f'<rect width="{width}" height="{height}" fill="white"/>',
                      f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="13">{html.escape(title)}</text>',
                      f'<text x="{self.l + (width - self.l - self.r) / 2}" y="{height - 8}" '
                      f'text-anchor="middle">{html.escape(xlabel)}</text>',
                      f'<text x="14" y="{self.t + (height - self.t - self.b) / 2}" text-anchor="middle" '
                      f'transform="rotate(-90 14 {self.t + (height - self.t - self.b) / 2})">{html.escape(ylabel)}'
                      f'</text>']
        self.legend: list[tuple[str, str, str]] = []
        self._axes()

    def X(self, x):
        x = math.log10(x) if self.logx else x
        return self.l + (x - self.x0) / (self.x1 - self.x0) * (self.W - self.l - self.r)

    def Y(self, y):
        return self.H - self.b - (y - self.y0) / (self.y1 - self.y0) * (self.H - self.t - self.b)

    def _axes(self):
        p = self.parts
        p.append(f'<rect x="{self.l}" y="{self.t}" width="{self.W - self.l - self.r}" '
                 f'height="{self.H - self.t - self.b}" fill="none" stroke="#444"/>')
        for yt in _nice_ticks(self.y0, self.y1):
            y = self.Y(yt)
            p.append(f'<line x1="{self.l}" x2="{self.W - self.r}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>')
            p.append(f'<text x="{self.l - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(yt)}</text>')
        if self.logx:
            ticks = [10 ** e for e in range(math.floor(self.x0), math.ceil(self.x1) + 1)]
            ticks = [t for t in ticks if self.x0 - 1e-9 <= math.log10(t) <= self.x1 + 1e-9]
            if len(ticks) < 2:
                ticks = [10 ** self.x0, 10 ** self.x1]
        else:
            ticks = _nice_ticks(self.x0, self.x1)
        for xt in ticks:
            x = self.X(xt)
            p.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.t}" y2="{self.H - self.b}" stroke="#eeeeee"/>')
            p.append(f'<text x="{x:.1f}" y="{self.H - self.b + 14}" text-anchor="middle">{_fmt(xt)}</text>')

    def line(self, xs, ys, color, name=None, dash=None, width=2.0, markers=True):
        pts = [(self.X(x), self.Y(y)) for x, y in zip(xs, ys) if np.isfinite(x) and np.isfinite(y)
               and (not self.logx or x > 0)]
        if not pts:
            return
        d = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        da = f' stroke-dasharray="{dash}"' if dash else ""
        self.parts.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="{width}"{da}/>')
        if markers:
            self.parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>' for x, y in pts]
        if name:
            self.legend.append((name, color, dash or ""))

    def hline(self, y, color, name=None, dash="5,4"):
        if self.y0 <= y <= self.y1:
            self.parts.append(f'<line x1="{self.l}" x2="{self.W - self.r}" y1="{self.Y(y):.1f}" y2="{self.Y(y):.1f}" '
                              f'stroke="{color}" stroke-width="1.5" stroke-dasharray="{dash}"/>')
            if name:
                self.legend.append((name, color, dash))

    def vline(self, x, color, name=None, dash="5,4"):
        xv = math.log10(x) if self.logx and x > 0 else x
        if self.x0 <= xv <= self.x1:
            self.parts.append(f'<line x1="{self.X(x):.1f}" x2="{self.X(x):.1f}" y1="{self.t}" y2="{self.H - self.b}" '
                              f'stroke="{color}" stroke-width="1.5" stroke-dasharray="{dash}"/>')
            if name:
                self.legend.append((name, color, dash))

    def bars(self, edges, heights, color, name=None, opacity=0.45):
        for a, b, h in zip(edges[:-1], edges[1:], heights):
            if h <= 0:
                continue
            x, w = self.X(a), self.X(b) - self.X(a)
            self.parts.append(f'<rect x="{x:.1f}" y="{self.Y(h):.1f}" width="{max(w, 0.5):.1f}" '
                              f'height="{self.Y(self.y0) - self.Y(h):.1f}" fill="{color}" fill-opacity="{opacity}" '
                              f'stroke="{color}" stroke-width="0.6"/>')
        if name:
            self.legend.append((name, color, ""))

    def svg(self) -> str:
        y = self.t + 8
        if self.legend:
            w = 34 + 6.2 * max(len(n) for n, _, _ in self.legend)
            h = 15 * len(self.legend) + 4
            self.parts.append(f'<rect x="{self.l + 4}" y="{self.t + 1}" width="{w:.0f}" height="{h}" '
                              f'fill="white" fill-opacity="0.85" stroke="#ccc"/>')
        for name, color, dash in self.legend:
            x = self.l + 10
            da = f' stroke-dasharray="{dash}"' if dash else ""
            self.parts.append(f'<line x1="{x}" x2="{x + 18}" y1="{y}" y2="{y}" stroke="{color}" stroke-width="3"{da}/>')
            self.parts.append(f'<text x="{x + 24}" y="{y + 4}">{html.escape(name)}</text>')
            y += 15
        return "\n".join(self.parts + ["</svg>"])


def _range(values, pad=0.05, floor=None):
    v = np.concatenate([np.asarray(a, dtype=float).reshape(-1) for a in values if len(a)]) if values else np.zeros(1)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (0.0, 1.0)
    lo, hi = float(v.min()), float(v.max())
    if floor is not None:
        lo = min(lo, floor)
    span = hi - lo or abs(hi) or 1.0
    return lo - pad * span, hi + pad * span


def spectra_svg(spectra: list[np.ndarray], average: np.ndarray | None, title: str) -> str:
    """Sorted curvature against index for several boundary points (+ S's average operator)."""
    allv = list(spectra) + ([average] if average is not None else [])
    n = max((len(s) for s in allv), default=1)
    p = _Plot(title, "index (descending)", "principal curvature (1/pixel)", (0, max(n - 1, 1)), _range(allv))
    for i, s in enumerate(spectra):
        p.line(np.arange(len(s)), s, "#9ecae1", name="boundary points" if i == 0 else None, width=1.2,
               markers=False)
    if average is not None:
        p.line(np.arange(len(average)), average, "#d62728", name="average operator (S)", width=2.2)
    p.hline(0.0, "#444", dash="2,3")
    return p.svg()


def histogram_svg(groups: list[tuple[str, np.ndarray, str]], title: str, xlabel: str,
                  vlines: list[tuple[float, str, str]] = (), bins: int = 30) -> str:
    vals = [np.asarray(g[1], dtype=float) for g in groups]
    lo, hi = _range(vals + [np.array([v for v, _, _ in vlines])], pad=0.02)
    edges = np.linspace(lo, hi, bins + 1)
    hists = [np.histogram(v[np.isfinite(v)], bins=edges)[0] / max(1, np.isfinite(v).sum()) for v in vals]
    top = max((h.max() for h in hists if len(h)), default=1.0)
    p = _Plot(title, xlabel, "fraction of images", (lo, hi), (0, top * 1.1))
    for (name, _, color), h in zip(groups, hists):
        p.bars(edges, h, color, name)
    for v, name, color in vlines:
        p.vline(v, color, name)
    return p.svg()


def fooling_svg(eps, rate_s, rate_w, m: int, title: str) -> str:
    eps = np.asarray(eps, dtype=float)
    pos = eps[eps > 0]
    logx = len(pos) == len(eps) and len(eps) > 1 and pos.max() / pos.min() > 20
    p = _Plot(title, "noise norm eps (L2, pixels)" + (" - log scale" if logx else ""), "fooling rate",
              (pos.min() if logx else float(eps.min()), float(eps.max())), (0, 1.02), logx=logx)
    p.line(eps, rate_s, "#d62728", name=f"uniform on the eps-sphere in S (m = {m})")
    p.line(eps, rate_w, "#1f77b4", name="uniform on the eps-sphere in R^d")
    return p.svg()


def roc_svg(curves: list[tuple[str, np.ndarray, np.ndarray, str, str]], target_fpr: float, title: str) -> str:
    p = _Plot(title, "false-positive rate (clean images flagged)", "true-positive rate (attacks detected)",
              (0, 1), (0, 1.02), width=460, height=400)
    p.line([0, 1], [0, 1], "#999", dash="3,3", width=1, markers=False)
    for name, fpr, tpr, color, dash in curves:
        p.line(fpr, tpr, color, name=name, dash=dash or None, width=1.8, markers=False)
    p.vline(target_fpr, "#444", name=f"target FPR {target_fpr:g}")
    return p.svg()


def _diverging_png(images: np.ndarray, cols: int = 10, scale: int = 3, pad: int = 2) -> bytes:
    """Signed maps (n, H, W) -> one PNG grid, blue (negative) / white / red (positive), each map on its own scale."""
    from PIL import Image

    n, H, W = images.shape
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (H * scale + pad) + pad, cols * (W * scale + pad) + pad, 3), 255, np.uint8)
    for i, a in enumerate(images):
        m = float(np.abs(a).max()) or 1.0
        t = np.clip(a / m, -1, 1)
        rgb = np.empty((H, W, 3))
        posm, negm = np.clip(t, 0, 1), np.clip(-t, 0, 1)
        rgb[..., 0] = 1 - negm * 0.85
        rgb[..., 1] = 1 - (posm + negm) * 0.8
        rgb[..., 2] = 1 - posm * 0.85
        tile = np.kron((rgb * 255).astype(np.uint8), np.ones((scale, scale, 1), np.uint8))
        r, c = divmod(i, cols)
        y, x = pad + r * (H * scale + pad), pad + c * (W * scale + pad)
        canvas[y:y + H * scale, x:x + W * scale] = tile
    buf = io.BytesIO()
    Image.fromarray(canvas).save(buf, format="PNG")
    return buf.getvalue()


# ================================================================== running
@dataclass
class Reproduction:
    """Everything the report shows: numbers (JSON-ready), arrays for figures, settings."""

    model: str
    numbers: dict
    settings: dict
    arrays: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


REPRODUCE_DEFAULTS = {"subspace_images": 100, "m": 20, "curvature_images": 10, "curvature_k": 10,
                      "images": 200, "draws": 10, "calibration_images": 200, "evaluation_images": 200,
                      "fpr": 0.05, "sizes": (1.0, 1.5, 2.0), "attacks": ("deepfool", "fgsm", "pgd"),
                      "connectivity_pairs": 10}


def _connectivity(clf, pairs: int, seed: int, notes: list[str], progress) -> dict | None:
    """Connectivity statistics from ``geometry.paths`` when that module is installed: natural same-class
    pairs and (image, adversarial image pushed into its class) pairs from the held-out gallery."""
    try:
        from .paths import gallery_pairs, path_statistics
    except ImportError:
        notes.append("Connectivity: geometry.paths is not available in this installation, so no paths were "
                     "searched.")
        return None
    out = {}
    for i, kind in enumerate(("natural", "adversarial")):
        try:
            ps = gallery_pairs(clf, pairs, kind=kind, seed=seed)
            st = path_statistics(clf, ps.x1, ps.x2, descriptions=ps.descriptions, kind=kind, label=ps.labels,
                                 progress=lambda f, msg, i=i: progress((i + f) / 2, f"connecting paths: {msg}"))
        except GeometryError as exc:  # report, never hide
            notes.append(f"Connectivity ({kind} pairs): {exc}")
            continue
        out[kind] = st.summary()
    return out or None


def run_reproduction(clf: Classifier, *, subspace_images: int = 100, m: int = 20, estimator: str = "auto",
                     step: float | None = None, seed: int = 0, curvature_images: int = 10, curvature_k: int = 10,
                     images: int = 200, draws: int = 10, calibration_images: int = 200,
                     evaluation_images: int = 200, fpr: float = 0.05, sizes=(1.0, 1.5, 2.0),
                     attacks=("deepfool", "fgsm", "pgd"), connectivity_pairs: int = 10,
                     cache: str | Path | None | bool = None, recompute: bool = False,
                     progress: Progress | None = None) -> Reproduction:
    """Run every experiment of the report on ``clf`` (see the module docstring)."""
    from .curvature import principal_curvatures
    from .detection import DIRECTION_SETS, evaluate_detectors, model_detector
    from .subspace import dataset_images, model_subspace, resolve_estimator, resolve_step
    from .vulnerability import vulnerability

    progress = progress or _noop
    t0 = time.perf_counter()
    est = resolve_estimator(clf, estimator)
    h = resolve_step(clf, est, step)
    notes: list[str] = []
    numbers: dict = {}
    arrays: dict = {}
    timings: dict = {}

    def stage(lo, hi):
        return lambda f, msg: progress(lo + (hi - lo) * f, msg)

    # --- 1. principal-curvature spectra at boundary points of held-out images
    progress(0.0, f"principal curvatures at {curvature_images} boundary points")
    t = time.perf_counter()
    xc, _ = dataset_images(clf, curvature_images, split="held_out", seed=seed + 1)
    from .boundary import boundary_point

    bnd = boundary_point(clf, xc)
    spectra, rows = [], []
    for i in range(len(bnd)):
        if not bool(bnd.converged[i]):
            continue
        try:
            cr = principal_curvatures(clf, xc[i], estimator=est, step=h, k=curvature_k, boundary=bnd[i], seed=seed)
        except GeometryError as exc:
            notes.append(f"Curvature at image {i}: {exc}")
            continue
        spectra.append(np.asarray(cr.curvatures, dtype=float))
        rows.append({"label": cr.label, "boundary_label": cr.boundary_label, "distance": cr.boundary_distance,
                     "max": float(cr.curvatures.max()), "min": float(cr.curvatures.min()),
                     "converged": bool(cr.converged)})
        if cr.warning and cr.warning not in notes:
            notes.append(f"Curvature: {cr.warning}")
        progress(0.1 * (i + 1) / len(bnd), f"principal curvatures: image {i + 1} of {len(bnd)}")
    timings["curvature"] = time.perf_counter() - t
    if spectra:
        top = np.array([s[:curvature_k].mean() for s in spectra])
        bottom = np.array([s[-curvature_k:].mean() for s in spectra])
        numbers["curvature"] = {
            "images": len(spectra), "k_per_end": curvature_k, "estimator": est, "step": h,
            "median_largest": float(np.median([r["max"] for r in rows])),
            "median_most_negative": float(np.median([r["min"] for r in rows])),
            "mean_top_k": float(top.mean()), "mean_bottom_k": float(bottom.mean()),
            "asymmetry_top_over_bottom": float(np.abs(top).mean() / max(np.abs(bottom).mean(), 1e-300)),
            "median_boundary_distance": float(np.median([r["distance"] for r in rows])), "points": rows}
        arrays["spectra"] = spectra

    # --- 2. connectivity (only when geometry.paths exists)
    progress(0.1, "connectivity statistics")
    t = time.perf_counter()
    if connectivity_pairs:
        conn = _connectivity(clf, connectivity_pairs, seed, notes, stage(0.1, 0.15))
    else:
        conn = None
        notes.append("Connectivity: skipped (connectivity_pairs = 0).")
    if conn is not None:
        numbers["connectivity"] = conn
    timings["connectivity"] = time.perf_counter() - t

    # --- 3. S
    progress(0.15, "shared curved subspace S")
    t = time.perf_counter()
    S = model_subspace(clf, images=subspace_images, m=m, estimator=est, step=h, seed=seed, cache=cache,
                       recompute=recompute, progress=stage(0.15, 0.45))
    timings["subspace"] = time.perf_counter() - t
    ssum = S.summary()
    numbers["subspace"] = {k: ssum[k] for k in ("m", "d", "eigenvalues", "positive", "negative", "num_points",
                                                "hvp_count", "seconds", "converged", "random_baseline")}
    numbers["subspace"]["settings"] = ssum["settings"]
    arrays["subspace_images"] = S.images().reshape(S.m, -1, *S.input_shape[-2:]).mean(1).numpy() \
        if len(S.input_shape) == 3 else S.basis.T.numpy()[:, None, :]
    arrays["subspace_spectrum"] = S.spectrum

    # --- 4. vulnerability experiments
    progress(0.45, "vulnerability experiments")
    t = time.perf_counter()
    xv, _ = dataset_images(clf, images, split="held_out", seed=seed)
    vul = vulnerability(clf, S, xv, draws=draws, seed=seed, progress=stage(0.45, 0.6))
    vd = vul.to_dict()
    numbers["concentration"] = vd["concentration"]
    numbers["fooling"] = vd["fooling"]
    arrays["ratios"], arrays["random_ratios"] = vul.concentration.ratios, vul.concentration.random
    timings["vulnerability"] = time.perf_counter() - t

    # --- 5. detector: S (the definition) and, on the same attacked images, the m most positively and the
    # m most negatively curved directions of the same average operator (exploratory variants, reported as such)
    progress(0.6, f"calibrating the detector on {calibration_images} clean held-out images")
    t = time.perf_counter()
    detectors = {}
    for part in DIRECTION_SETS:
        try:
            detectors[part] = model_detector(clf, S, fpr=fpr, images=calibration_images, seed=seed, cache=cache,
                                             recompute=recompute, directions=part)
        except GeometryError as exc:
            if part == "all":
                raise
            notes.append(f"Detector on the {part}ly curved directions: {exc}")
    xe, ye = dataset_images(clf, calibration_images + evaluation_images, split="held_out", seed=seed)
    xe, ye = xe[calibration_images:], ye[calibration_images:]
    evs = evaluate_detectors(clf, detectors, xe, ye, attacks=attacks, sizes=sizes, seed=seed,
                             progress=stage(0.62, 0.99))
    numbers["detector"] = evs["all"].to_dict()
    numbers["detector_variants"] = {part: ev.to_dict() for part, ev in evs.items() if part != "all"}
    arrays["detector"] = evs["all"]
    timings["detector"] = time.perf_counter() - t

    card = getattr(clf, "card", {}) or {}
    settings = {"model": clf.name, "architecture": card.get("architecture"), "activation": card.get("activation"),
                "held_out_accuracy": card.get("held_out_accuracy"), "d": clf.dim, "device": clf.device.type,
                "dtype": str(clf.dtype).replace("torch.", ""), "estimator": est, "step": h, "seed": seed,
                "subspace_images": subspace_images, "m": m, "signs": "both", "curvature_images": curvature_images,
                "curvature_k": curvature_k, "experiment_images": images, "draws": draws,
                "calibration_images": calibration_images, "evaluation_images": evaluation_images, "fpr": fpr,
                "sizes": list(sizes), "attacks": list(attacks), "attack_norm": "l2",
                "torch": torch.__version__, "python": platform.python_version(), "timings_s": timings}
    progress(1.0, "done")
    return Reproduction(clf.name, numbers, settings, arrays, notes, time.perf_counter() - t0)


# ================================================================== verdicts
def verdicts(numbers: dict) -> dict:
    """Plain-language findings computed from the numbers (what works and what does not)."""
    out = {}
    c = numbers.get("concentration")
    if c and c.get("mean") is not None:
        gain = c["gain"]
        how = "concentrate" if gain >= 2 else "concentrate only weakly" if gain > 1.2 else "do not concentrate"
        out["concentration"] = (
            f"DeepFool perturbations {how}"
            f" in S: mean |P_S r|/|r| = {c['mean']:.3f} against {c['random_mean']:.3f} for random {c['m']}-dimensional "
            f"subspaces (sqrt(m/d) = {c['expected']:.3f}), {gain:.1f} times the baseline.")
    f = numbers.get("fooling")
    if f:
        es, ew = f.get("eps_50_subspace"), f.get("eps_50_whole")
        ref = f.get("reference_norm") or float("nan")
        if es is not None and ew is not None:
            out["fooling"] = (f"Random noise in S fools half of the draws at norm {es:.3g} ({es / ref:.1f} times the "
                              f"median DeepFool norm {ref:.3g}); noise in the whole space needs norm {ew:.3g}, "
                              f"{ew / es:.1f} times larger (50% crossings interpolated in log eps).")
        elif es is not None:
            out["fooling"] = (f"Random noise in S fools half of the draws at norm {es:.3g}; noise in the whole space "
                              f"never reaches 50% within the tested norms (up to {max(f['eps']):.3g}, fooling rate "
                              f"{f['whole'][-1]:.2f}).")
        else:
            out["fooling"] = (f"Neither noise in S nor in the whole space fools half of the draws within the tested "
                              f"norms (largest: {max(f['eps']):.3g}; rates {f['subspace'][-1]:.2f} in S, "
                              f"{f['whole'][-1]:.2f} in R^d).")
    d = numbers.get("detector")
    if d:
        rows = [r for r in d["rows"] if r["auc"] is not None]
        if rows:
            best = max(rows, key=lambda r: r["auc"])
            worst = min(rows, key=lambda r: r["auc"])
            mean_auc = float(np.mean([r["auc"] for r in rows]))
            quality = "works well" if mean_auc >= 0.9 else "works partly" if mean_auc >= 0.7 else \
                "barely works" if mean_auc > 0.55 else "does not work"
            rec = [r["recovery_detected"] for r in rows if r["recovery_detected"] is not None]
            out["detector"] = (f"The detector {quality} here: mean AUC {mean_auc:.2f} over {len(rows)} attack settings "
                               f"(best {best['attack']} x{best['size']:g}: {best['auc']:.2f}; worst "
                               f"{worst['attack']} x{worst['size']:g}: {worst['auc']:.2f}); clean false-positive rate "
                               f"{d['clean_fpr']:.3f} for a target of {d['detector']['fpr']:g}; label recovery on "
                               f"detected images {np.mean(rec):.2f} on average." if rec else
                               f"The detector {quality} here: mean AUC {mean_auc:.2f}; no attacked image was detected.")
    parts = numbers.get("detector_variants") or {}
    if parts and d:
        bits = []
        for part, pd in parts.items():
            aucs = [r["auc"] for r in pd["rows"] if r["auc"] is not None]
            if aucs:
                bits.append(f"S{'+' if part == 'positive' else '-'} ({pd['detector']['m']} directions): mean AUC "
                            f"{np.mean(aucs):.2f}")
        if bits:
            out["detector_variants"] = ("Exploratory variant, the same score on the m most positively (S+) or "
                                        "negatively (S-) curved directions: " + "; ".join(bits) + ".")
    cv = numbers.get("curvature")
    if cv:
        out["curvature"] = (f"Principal curvatures at {cv['images']} boundary points ({cv['estimator']}): "
                            "median largest "
                            f"{cv['median_largest']:.3g}, median most negative {cv['median_most_negative']:.3g}; mean "
                            f"|top {cv['k_per_end']}| / |bottom {cv['k_per_end']}| = "
                            f"{cv['asymmetry_top_over_bottom']:.2f} (above 1: more strongly positive, the paper's "
                            "asymmetry).")
    return out


# ================================================================== writing
def _table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
        return str(v)

    esc = lambda t: str(t).replace("|", "\\|")  # noqa: E731 - a literal pipe inside a cell
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(cell(v)) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def summary_row(numbers: dict, settings: dict) -> dict:
    """One README row per model: the headline numbers."""
    c, f, d = numbers.get("concentration", {}), numbers.get("fooling", {}), numbers.get("detector", {})
    aucs = {f"{r['attack']} x{r['size']:g}": r["auc"] for r in d.get("rows", [])}
    recs = [r["recovery_detected"] for r in d.get("rows", []) if r["recovery_detected"] is not None]
    part_auc = {}
    for part, pd in (numbers.get("detector_variants") or {}).items():
        vals = [r["auc"] for r in pd["rows"] if r["auc"] is not None]
        part_auc[part] = float(np.mean(vals)) if vals else None
    all_aucs = [r["auc"] for r in d.get("rows", []) if r["auc"] is not None]
    return {"model": settings["model"], "estimator": settings["estimator"], "m": settings["m"], "d": settings["d"],
            "auc_mean": float(np.mean(all_aucs)) if all_aucs else None, "auc_mean_parts": part_auc,
            "ratio_mean": c.get("mean"), "random_mean": c.get("random_mean"), "sqrt_m_d": c.get("expected"),
            "eps50_S": f.get("eps_50_subspace"), "eps50_whole": f.get("eps_50_whole"),
            "eps50_ratio": f.get("eps_50_ratio"), "reference_norm": f.get("reference_norm"),
            "auc": aucs, "recovery_detected_mean": float(np.mean(recs)) if recs else None,
            "clean_fpr": d.get("clean_fpr")}


def _figures(rep: Reproduction) -> dict[str, tuple[str, bytes]]:
    """name -> (kind, content) with kind 'svg' or 'png'."""
    figs = {}
    n, a = rep.numbers, rep.arrays
    if "spectra" in a:
        figs["curvature_spectra"] = ("svg", spectra_svg(a["spectra"], None, f"Principal curvatures at "
                                     f"{len(a['spectra'])} boundary points ({n['curvature']['estimator']})").encode())
    if "subspace_spectrum" in a:
        sp = np.asarray(a["subspace_spectrum"])
        figs["subspace_spectrum"] = ("svg", spectra_svg([], sp, "Average curvature operator: extreme eigenvalues"
                                                        ).encode())
    if "subspace_images" in a:
        imgs = np.asarray(a["subspace_images"])
        if imgs.ndim == 3 and min(imgs.shape[1:]) > 1:
            figs["subspace_directions"] = ("png", _diverging_png(imgs))
    if "ratios" in a:
        c = n["concentration"]
        figs["concentration"] = ("svg", histogram_svg(
            [("DeepFool r: |P_S r|/|r|", a["ratios"], "#d62728"),
             (f"random {c['m']}-dim subspace", a["random_ratios"], "#1f77b4")],
            "Concentration of adversarial perturbations in S", "|P r| / |r|",
            [(c["expected"], "sqrt(m/d)", "#444")]).encode())
    if "fooling" in n:
        f = n["fooling"]
        figs["fooling"] = ("svg", fooling_svg(f["eps"], f["subspace"], f["whole"], n["concentration"]["m"],
                                              "Fooling rate of random noise: S vs the whole space").encode())
    ev = a.get("detector")
    if ev is not None:
        curves = []
        dashes = {0: "", 1: "6,3", 2: "2,2"}
        sizes = sorted({r.size for r in ev.rows})
        for r in ev.rows:
            if r.succeeded:
                curves.append((f"{r.attack} x{r.size:g} (AUC {r.auc:.2f})", r.roc_fpr, r.roc_tpr,
                               ATTACK_COLORS.get(r.attack, "#555"), dashes.get(sizes.index(r.size) % 3, "")))
        figs["detector_roc"] = ("svg", roc_svg(curves, ev.detector.fpr, "Detector ROC: clean vs attacked").encode())
        groups = [("clean (evaluation)", ev.clean_scores, "#2ca02c")]
        pick = [r for r in ev.rows if r.succeeded and r.size == sizes[0]]
        for r in pick:
            groups.append((f"{r.attack} x{r.size:g}", r.scores, ATTACK_COLORS.get(r.attack, "#555")))
        figs["detector_scores"] = ("svg", histogram_svg(groups, "Detector scores", "score = max_c s*rho_c",
                                                        [(ev.detector.threshold, "threshold", "#444")]).encode())
    return figs


CAPTIONS = {
    "curvature_spectra": "Principal curvatures (k most positive and k most negative, sorted) at the boundary points "
                         "of held-out images.",
    "subspace_spectrum": "Extreme eigenvalues of the average curvature operator over the boundary points of the "
                         "training images used for S; S keeps the m largest in absolute value.",
    "subspace_directions": "The m directions of S as images (red positive, blue negative, each on its own scale), "
                           "ordered by |average curvature|.",
    "concentration": "|P_S r|/|r| for DeepFool perturbations of held-out images against a fresh random "
                     "m-dimensional subspace per image (same run); the dashed line is sqrt(m/d).",
    "fooling": "Fraction of (image, draw) pairs whose label changes under random noise of norm eps, uniform on the "
               "sphere inside S or inside the whole space (not clipped to the pixel range).",
    "detector_roc": "ROC of the curvature-asymmetry detector: successfully attacked held-out images (positives) "
                    "against clean held-out images (negatives), per attack and size.",
    "detector_scores": "Detector scores of clean images and of attacked images at the smallest size, with the "
                       "threshold for the target false-positive rate.",
}


def _pair(row: dict) -> str:
    det, rec = row.get("detection_rate"), row.get("recovery_detected")
    return f"{'-' if det is None else f'{det:.2f}'} / {'-' if rec is None else f'{rec:.2f}'}"


def _markdown(rep: Reproduction, fig_refs: dict[str, str]) -> str:
    n, s = rep.numbers, rep.settings
    v = verdicts(n)
    L = [f"# Reproduction report: {rep.model}", "",
         f"Fawzi et al., *Empirical study of the topology and geometry of deep networks* (CVPR 2018) (sections 4-5 of docs/science.md) on "
         f"`{rep.model}` ({s.get('architecture')}, {s.get('activation')}, held-out accuracy "
         f"{s.get('held_out_accuracy')}), d = {s['d']}, computed on {s['device']} in {rep.seconds:.0f} s. "
         f"Generated by `python -m geometry reproduce --model {rep.model}`.", "", "## Findings", ""]
    for key in ("curvature", "concentration", "fooling", "detector", "detector_variants"):
        if key in v:
            L.append(f"- {v[key]}")
    L.append("")

    def fig(name):
        if name in fig_refs:
            L.extend([fig_refs[name], "", f"*{CAPTIONS.get(name, '')}*", ""])

    if "curvature" in n:
        cv = n["curvature"]
        L += ["## 1. Curvature of the decision boundary", "",
              _table(["images", "estimator", "h", "median largest", "median most negative", "mean top-k",
                      "mean bottom-k", "asymmetry", "median distance to boundary"],
                     [[cv["images"], cv["estimator"], cv["step"], cv["median_largest"], cv["median_most_negative"],
                       cv["mean_top_k"], cv["mean_bottom_k"], cv["asymmetry_top_over_bottom"],
                       cv["median_boundary_distance"]]]), ""]
        fig("curvature_spectra")
    L += ["## 2. Connectivity of classification regions", ""]
    if "connectivity" in n:
        rows = []
        for kind, cn in n["connectivity"].items():
            a, lr, dev = cn.get("anchors") or {}, cn.get("length_ratio") or {}, cn.get("max_chord_deviation") or {}
            proven = cn.get("verified")  # reports written before proofs were counted apart lack it
            rows.append([kind, f"{cn['connected']}/{cn['pairs']}",
                         "not recorded" if proven is None else f"{proven}/{cn['pairs']}", a.get("median"), a.get("max"),
                         lr.get("median"), dev.get("median"), cn.get("chord_leaves_region_fraction"), cn.get("seconds")])
        L += ["Piecewise-linear paths inside one classification region (geometry.paths; 'proven' counts the paths "
              "whose every segment was proven by the weight-derived Lipschitz bound): natural pairs "
              "are two held-out images of one class; adversarial pairs join a held-out image to an image of "
              "another class pushed into its class by targeted DeepFool.", "",
              _table(["pairs", "connected", "proven", "median anchors", "max anchors", "median length / chord",
                      "median max deviation / chord", "straight chord leaves the region", "seconds"], rows), ""]
    else:
        L += ["Not computed: " + "; ".join(x for x in rep.notes if x.startswith("Connectivity")), ""]
    ss = n["subspace"]
    L += ["## 3. The shared curved subspace S", "",
          f"S: m = {ss['m']} directions (both signs; {ss['positive']} positive, {ss['negative']} negative) from "
          f"{ss['num_points']} boundary points of training images, {ss['hvp_count']} Hessian-vector products, "
          f"{ss['seconds']:.1f} s, Lanczos "
          + ("converged." if ss["converged"] else "stopped at its budget (not converged)."),
          "", "Average curvature along the directions of S: "
          + ", ".join(f"{e:+.3g}" for e in ss["eigenvalues"]), ""]
    fig("subspace_directions")
    fig("subspace_spectrum")
    c = n["concentration"]
    L += ["## 4. Curvature and vulnerability", "", "### Adversarial perturbations concentrate in S?", "",
          _table(["images", "mean |P_S r|/|r|", "median", "10%-90%", "random subspace mean", "sqrt(m/d)",
                  "exact random mean", "gain", "above every random ratio"],
                 [[c["images"], c["mean"], c["median"], f"{c['q10']:.3f}-{c['q90']:.3f}", c["random_mean"],
                   c["expected"], c["expected_exact"], c["gain"], c["fraction_above_random_max"]]]), ""]
    fig("concentration")
    f = n["fooling"]
    L += ["### Random noise in S fools more often?", "",
          _table(["noise norm eps (L2)", "eps / median DeepFool norm", "fooling rate in S",
                  "fooling rate in the whole space"],
                 [[e, e / f["reference_norm"] if f.get("reference_norm") else None, a, b]
                  for e, a, b in zip(f["eps"], f["subspace"], f["whole"])]), "",
          "50% fooling (interpolated in log eps): in S at eps = "
          + (f"{f['eps_50_subspace']:.3g}" if f.get("eps_50_subspace") else "not reached")
          + ", in the whole space at eps = " + (f"{f['eps_50_whole']:.3g}" if f.get("eps_50_whole") else "not reached")
          + (f" (ratio {f['eps_50_ratio']:.2f})." if f.get("eps_50_ratio") else "."), ""]
    fig("fooling")
    d = n["detector"]
    det = d["detector"]
    cal = det["calibration"]
    L += ["## 5. Curvature-asymmetry detector", "",
          f"Score definition: {det['definition']}", "",
          f"Calibration on {cal['images']} clean held-out images: mean rho over classes {cal['mean_rho']:+.3g} "
          f"({cal['fraction_positive_rho']:.0%} positive) -> sign s = {det['sign']:+d}; threshold "
          f"{det['threshold']:.4g} for a target FPR of {det['fpr']:g} (estimator {det['estimator']}"
          + (f", h = {det['step']:.3g}" if det.get("step") else "") + f"). Evaluation on {d['clean_images']} other "
          f"clean held-out images: false-positive rate {d['clean_fpr']:.3f}. FGSM/PGD sizes are multiples of the "
          f"median DeepFool norm of the evaluation images ({d['reference_norm']:.3g}); DeepFool size s means "
          "x + s r.", "",
          _table(["attack", "size", "eps", "success", "mean norm", "AUC", f"detected at FPR {det['fpr']:g}",
                  "recovery (detected)", "recovery (all)"],
                 [[r["attack"], r["size"], r["eps"], f"{r['succeeded']}/{r['attacked']}", r["mean_norm"], r["auc"],
                   r["detection_rate"], r["recovery_detected"], r["recovery_all"]] for r in d["rows"]]), ""]
    fig("detector_roc")
    fig("detector_scores")
    L += ["### The asymmetry itself: sign of rho before and after the attack", "",
          f"Unsigned rho (before the calibrated sign s): mean over classes c != k of rho_c on clean evaluation "
          f"images: {d['clean_rho']:+.3g}. The paper's asymmetry predicts the opposite sign at the true class "
          "after a small attack (rho_true: rho at the image's true class, now c != k).", "",
          _table(["attack", "size", "mean rho_true (attacked)", "mean rho over c != k (attacked)",
                  "mean rho over c != k (clean)"],
                 [[r["attack"], r["size"], r.get("rho_true"), r.get("rho_others"), d["clean_rho"]]
                  for r in d["rows"]]), ""]
    parts = n.get("detector_variants") or {}
    if parts:
        L += ["### Variant (exploratory): one sign of curvature only", "",
              "The same score averaged over the m most positively curved (S+) or the m most negatively curved (S-) "
              "eigenvectors of the same average curvature operator (same Lanczos run), calibrated the same way on "
              "the same clean images and scored on the same attacked images. This is not the definition (S keeps "
              "the m largest |curvatures| of both signs); it was added after seeing that the signal depends on the "
              "sign, and it shows where the signal lives.", ""]
        hdr = ["directions", "m", "sign", "clean FPR"] + [f"AUC {r['attack']} x{r['size']:g}" for r in d["rows"]]
        trs = [["S (definition)", det["m"], det["sign"], d["clean_fpr"]] + [r["auc"] for r in d["rows"]]]
        for part, pd in parts.items():
            trs.append([f"S{'+' if part == 'positive' else '-'} ({part})", pd["detector"]["m"], pd["detector"]["sign"],
                        pd["clean_fpr"]] + [r["auc"] for r in pd["rows"]])
        L += [_table(hdr, trs), ""]
        hdr2 = ["directions"] + [f"detected / recovered {r['attack']} x{r['size']:g}" for r in d["rows"]]
        trs2 = [["S (definition)"] + [_pair(r) for r in d["rows"]]]
        for part, pd in parts.items():
            trs2.append([f"S{'+' if part == 'positive' else '-'}"] + [_pair(r) for r in pd["rows"]])
        L += [_table(hdr2, trs2), "", "*detected: fraction of successful attacks flagged at the target FPR; "
              "recovered: fraction of the flagged ones whose recovered label is the true label.*", ""]
    if rep.notes:
        L += ["## Notes", ""] + [f"- {x}" for x in rep.notes] + [""]
    L += ["## Settings", "", _table(["setting", "value"], [[k, json.dumps(v) if isinstance(v, (dict, list)) else v]
                                                          for k, v in s.items()]), ""]
    return "\n".join(L)


def write_report(rep: Reproduction, out_dir: str | Path, formats=("md", "html")) -> dict:
    """Write ``report.md`` (+ figure files), ``report.html`` (self-contained) and ``numbers.json`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        if fmt not in ("md", "html"):
            raise GeometryError(f"report format must be md or html, got {fmt!r}")
    figs = _figures(rep)
    written = {}
    if "md" in formats:
        refs = {}
        for name, (kind, content) in figs.items():
            (out / f"{name}.{kind}").write_bytes(content)
            refs[name] = f"![{name}]({name}.{kind})"
        (out / "report.md").write_text(_markdown(rep, refs))
        written["md"] = str(out / "report.md")
    if "html" in formats:
        refs = {}
        for name, (kind, content) in figs.items():
            if kind == "svg":
                refs[name] = content.decode()
            else:
                refs[name] = f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(content).decode()}"/>'
        md = _markdown(rep, {k: f"@@FIG:{k}@@" for k in refs})
        body = _md_to_html(md)
        for k, v in refs.items():
            body = body.replace(f"<p>@@FIG:{k}@@</p>", f'<figure>{v}</figure>')
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>Reproduction report: {html.escape(rep.model)}"
                "</title><style>body{font-family:sans-serif;max-width:980px;margin:2em auto;padding:0 1em;"
                "line-height:1.45}table{border-collapse:collapse;margin:0.6em 0;font-size:0.9em}td,th{border:1px "
                "solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}figure{margin:0.6em 0}"
                "code{background:#f4f4f4;padding:0 3px}img,svg{max-width:100%;height:auto}</style></head><body>"
                + body + "</body></html>")
        (out / "report.html").write_text(page)
        written["html"] = str(out / "report.html")
    numbers = {"model": rep.model, "numbers": rep.numbers, "settings": rep.settings, "notes": rep.notes,
               "verdicts": verdicts(rep.numbers), "summary": summary_row(rep.numbers, rep.settings),
               "seconds": rep.seconds}
    (out / "numbers.json").write_text(json.dumps(numbers, indent=1, default=_json_default))
    written["json"] = str(out / "numbers.json")
    return written


def _json_default(o):
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _inline(text: str) -> str:
    import re

    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"(?<![\w*])\*(\S[^*]*?\S|\S)\*(?![\w*])", r"<i>\1</i>", t)
    return t


def _md_to_html(md: str) -> str:
    """The small Markdown subset :func:`_markdown` writes: headings, paragraphs, lists, tables."""
    import re

    out, para, lst, table = [], [], [], []

    def flush():
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()
        if lst:
            out.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in lst) + "</ul>")
            lst.clear()
        if table:
            rows = [[c.replace("\\|", "|") for c in re.split(r"(?<!\\)\|", r.strip()[1:-1])]
                    for r in table if not set(r.strip()) <= set("|-")]
            head, body = rows[0], rows[1:]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c.strip())}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c.strip())}</td>" for c in r) + "</tr>"
                                 for r in body) + "</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("#"):
            flush()
            lvl = len(line) - len(line.lstrip("#"))
            out.append(f"<h{lvl}>{_inline(line[lvl:].strip())}</h{lvl}>")
        elif line.startswith("- "):
            if para or table:
                flush()
            lst.append(line[2:])
        elif line.startswith("|"):
            if para or lst:
                flush()
            table.append(line)
        elif not line.strip():
            flush()
        elif line.startswith("@@FIG:"):
            flush()
            out.append(f"<p>{line.strip()}</p>")
        else:
            para.append(line)
    flush()
    return "\n".join(out)
