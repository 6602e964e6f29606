"""Figures of principal curvatures: the signed spectrum, estimator comparisons, directions, profiles.

Pure functions from :class:`geometry.curvature.CurvatureResult` (and plain arrays) to Plotly figures.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from dashboard.figures.common import signed_image_figure

# Okabe-Ito colours (distinguishable with any colour vision)
ESTIMATOR_STYLE = {"exact": ("#0072B2", "circle"), "fd": ("#D55E00", "diamond")}
PROFILE_COLORS = ["#009E73", "#CC79A7", "#E69F00", "#56B4E9"]


def estimator_label(res) -> str:
    """'exact (autograd Hessian)' or 'finite differences, h = 0.547'."""
    if res.estimator == "fd":
        return f"finite differences, h = {res.step:.3g}"
    return "exact (autograd Hessian)"


def spectrum_positions(res, d: int) -> np.ndarray:
    """1-based rank of each computed curvature in the full sorted spectrum of the d - 1 tangent directions.

    The full spectrum fills 1..d-1; Lanczos gives the top end at 1..k and the bottom end at d-k..d-1."""
    m = len(res.curvatures)
    n_tan = d - 1
    if res.method == "full" or m >= n_tan:
        return np.arange(1, m + 1)
    top = (m + 1) // 2
    return np.r_[np.arange(1, top + 1), np.arange(n_tan - (m - top) + 1, n_tan + 1)]


def spectrum_figure(results, d: int, title: str = "Principal curvatures", names=None) -> go.Figure:
    """Sorted curvature against its rank (both ends), one trace group per result (e.g. per estimator)."""
    fig = go.Figure()
    names = names or [estimator_label(r) for r in results]
    for res, name in zip(results, names):
        color, symbol = ESTIMATOR_STYLE.get(res.estimator, ("#444", "circle"))
        x = spectrum_positions(res, d)
        y = np.asarray(res.curvatures)
        # break the line where ranks jump (the unexplored middle of a Lanczos spectrum)
        xs, ys = [], []
        for i in range(len(x)):
            if i and x[i] != x[i - 1] + 1:
                xs.append(None)
                ys.append(None)
            xs.append(int(x[i]))
            ys.append(float(y[i]))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, connectgaps=False,
                                 line=dict(color=color, width=1.5), marker=dict(color=color, symbol=symbol, size=7),
                                 hovertemplate="rank %{x}: curvature %{y:.4g}<extra>" + name + "</extra>"))
    fig.add_hline(y=0, line=dict(color="#888", width=1, dash="dot"))
    partial = [r for r in results if r.method != "full" and len(r.curvatures) < d - 1]
    if partial:
        x = spectrum_positions(partial[0], d)
        gap = np.flatnonzero(np.diff(x) > 1)
        if len(gap):
            fig.add_vrect(x0=x[gap[0]] + 0.5, x1=x[gap[0] + 1] - 0.5, fillcolor="#eee", opacity=0.5, line_width=0,
                          layer="below", annotation_text="middle of the spectrum not computed (Lanczos: both ends)",
                          annotation_position="top")
    fig.update_layout(title=title, xaxis_title=f"rank among the {d - 1} tangent directions (1 = most positive)",
                      yaxis_title="curvature (1 / pixel-space length)", height=420,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0),
                      margin=dict(l=10, r=10, t=70, b=40))
    return fig


def direction_figures(res, which: str = "positive", count: int = 3, shape=None) -> list[go.Figure]:
    """The most positive (or most negative) curvature directions as signed images."""
    m = len(res.curvatures)
    idx = list(range(min(count, m))) if which == "positive" else list(range(m - 1, max(m - 1 - count, -1), -1))
    shape = shape or tuple(res.boundary.x.shape[1:])
    figs = []
    for rank, i in enumerate(idx, 1):
        kappa = float(res.curvatures[i])
        figs.append(signed_image_figure(res.directions[:, i].reshape(shape),
                                        f"{'+' if which == 'positive' else '−'}#{rank}: κ = {kappa:.3g}", height=220))
    return figs


def profile_figure(profile: dict, title: str = "F = f_k − f_j along curvature directions") -> go.Figure:
    """F(z + t v) with the quadratic prediction κ|g|t²/2 for each direction of a profile."""
    fig = go.Figure()
    colors = PROFILE_COLORS
    t = profile["t"]
    for row, (kap, i) in enumerate(zip(profile["curvatures"], profile["indices"])):
        c = colors[row % len(colors)]
        fig.add_trace(go.Scatter(x=t, y=profile["F"][row], mode="lines", line=dict(color=c, width=2),
                                 name=f"direction {i + 1} (κ = {kap:.3g})",
                                 hovertemplate="t = %{x:.3g}: F = %{y:.4g}<extra></extra>"))
        fig.add_trace(go.Scatter(x=t, y=profile["quadratic"][row], mode="lines", line=dict(color=c, dash="dash"),
                                 name=f"{i + 1}: quadratic κ|g|t²/2", hoverinfo="skip"))
    fig.add_hline(y=0, line=dict(color="#888", width=1, dash="dot"))
    fig.update_layout(title=title, xaxis_title="t (pixel-space distance from the boundary point along v)",
                      yaxis_title="f_k − f_j  (> 0: class k)", height=400, margin=dict(l=10, r=10, t=50, b=40),
                      legend=dict(orientation="h", yanchor="top", y=-0.3, x=0))
    return fig


# one colour per (estimator, step) group and one dash per location, so every trace is named by its legend
ASYMMETRY_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]
LOCATION_DASH = {"boundary": "solid", "inside": "dash"}
LOCATION_NAME = {"boundary": "at the boundary point", "inside": "inside, at x + 0.8 r"}


def asymmetry_label(entry: dict) -> str:
    """'exact, at the boundary point' or 'fd h = 0.547, inside, at x + 0.8 r' for one entry of
    ``AsymmetryResult.to_dict()["results"]``."""
    est = "exact" if entry["estimator"] == "exact" else f"fd h = {entry['step']:.3g}"
    return f"{est}, {LOCATION_NAME.get(entry['location'], entry['location'])}"


def _rgba(hex_color: str, alpha: float) -> str:
    s = hex_color.lstrip("#")
    return f"rgba({int(s[0:2], 16)},{int(s[2:4], 16)},{int(s[4:6], 16)},{alpha})"


def asymmetry_figure(result: dict, title: str | None = None) -> go.Figure:
    """The mean sorted spectrum (k most positive, then k most negative) with its 95% band, one line per
    (estimator, step, location) of ``AsymmetryResult.to_dict()``; a zero line; the unexplored middle marked."""
    fig = go.Figure()
    k = int(result["k"])
    groups: dict = {}
    for e in result["results"]:
        if not e["mean"]:
            continue
        g = groups.setdefault((e["estimator"], e["step"]), len(groups))
        color = ASYMMETRY_COLORS[g % len(ASYMMETRY_COLORS)]
        # ranks 1..k for the positive end, k+2..2k+1 for the negative end: a gap marks the middle of the spectrum
        x = list(range(1, k + 1)) + [None] + list(range(k + 2, 2 * k + 2))
        mean = list(e["mean"][:k]) + [None] + list(e["mean"][k:])
        name = f"{asymmetry_label(e)} (n = {e['points_used']})"
        for lo_part, hi_part, xs in ((e["band_low"][:k], e["band_high"][:k], x[:k]),
                                     (e["band_low"][k:], e["band_high"][k:], x[k + 1:])):
            fig.add_trace(go.Scatter(x=list(xs) + list(xs)[::-1], y=list(hi_part) + list(lo_part)[::-1],
                                     fill="toself", fillcolor=_rgba(color, 0.18), line=dict(width=0),
                                     hoverinfo="skip", showlegend=False, legendgroup=name))
        fig.add_trace(go.Scatter(x=x, y=mean, mode="lines+markers", name=name, legendgroup=name, connectgaps=False,
                                 line=dict(color=color, width=2, dash=LOCATION_DASH.get(e["location"], "dot")),
                                 marker=dict(color=color, size=6),
                                 hovertemplate="rank %{x}: mean curvature %{y:.4g}<extra>" + name + "</extra>"))
    fig.add_hline(y=0, line=dict(color="#888", width=1, dash="dot"))
    fig.add_vrect(x0=k + 0.5, x1=k + 1.5, fillcolor="#eee", opacity=0.5, line_width=0, layer="below")
    ticks = list(range(1, k + 1, max(1, k // 5))) + list(range(k + 2, 2 * k + 2, max(1, k // 5)))
    labels = [f"+{i}" for i in range(1, k + 1, max(1, k // 5))] + \
             [f"−{2 * k + 2 - t}" for t in range(k + 2, 2 * k + 2, max(1, k // 5))]
    fig.update_layout(title=title or f"Mean sorted curvatures over {result['points']} images, 95% band",
                      xaxis=dict(title=f"rank: the {k} most positive (+1 = largest), then the {k} most negative "
                                       "(−1 = most negative)", tickvals=ticks, ticktext=labels),
                      yaxis_title="mean curvature (1 / pixel-space length)", height=460,
                      legend=dict(orientation="h", yanchor="top", y=-0.25, x=0),
                      margin=dict(l=10, r=10, t=60, b=40))
    return fig


def asymmetry_table(result: dict) -> list[dict]:
    """Rows for a small table of the sign fractions and the asymmetry ratio, one per entry."""
    rows = []
    for e in result["results"]:
        band = e["asymmetry_ratio_band"]
        pct = (lambda v: None if v is None else round(100 * v, 1))
        rows.append({"estimator, location": asymmetry_label(e), "points used": e["points_used"],
                     "dropped": e["points_dropped"], "mostly positive (%)": pct(e["mostly_positive"]),
                     "mostly negative (%)": pct(e["mostly_negative"]), "values > 0 (%)": pct(e["positive_values"]),
                     "ratio top / |bottom|": None if e["asymmetry_ratio"] is None else round(e["asymmetry_ratio"], 3),
                     "ratio 95% band": "" if not band else f"{band[0]:.3g} – {band[1]:.3g}",
                     "converged": f"{e['converged']}/{e['points_used']}", "seconds": round(e["seconds"], 1)})
    return rows
