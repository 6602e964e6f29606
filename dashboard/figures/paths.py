"""Figures of connecting paths: images at the anchors, margin along the path against the chord, the path
in the plane of the chord and its largest anchor deviation, and many-pair histograms.

Pure functions from :mod:`geometry.paths` results to Plotly figures (no Streamlit).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.figures.common import _as_display, class_color
from dashboard.figures.sections import section_figure

PATH_COLOR = "#111111"
CHORD_COLOR = "#888888"
# Okabe-Ito colours (distinguishable with any colour vision)
OUTSIDE_COLOR, CONNECTED_COLOR = "#D55E00", "#009E73"


def path_trace_name(path) -> str:
    """Legend name of a path: "proven path" only for a verified one (``path.verified``: proven, or proven
    under a given slope bound); a complete path that passed sampled checks only is "path (sampled, not
    proven)"; a failed search leaves a "partial path (search stopped)"."""
    if not path.connected:
        return "partial path (search stopped)"
    if path.verified:
        return "proven path" if path.guarantee == "proven" else "path proven under the given slope bound"
    return "path (sampled, not proven)"


def verdict_message(path, class_names) -> tuple[str, str]:
    """``(kind, markdown)`` for the page's result box: kind "success" for a verified path, "info" for a path
    that passed sampled checks only, "warning" when no path was found. The words follow
    :func:`geometry.paths.describe_guarantee`: "proven" / "certified" only where a proof backs them."""
    from geometry.paths import describe_guarantee

    st = path.statistics
    name = class_names[path.label]
    detail = describe_guarantee(path)
    if not path.connected:
        s = path.stopped or {}
        return "warning", (f"**No verified path found** in class {name}: {s.get('reason', 'stopped')} — "
                           f"{s.get('detail', '')}. Nothing is claimed as a path: the dotted line is where the "
                           "search stopped.")
    if path.verified:
        return "success", (f"Verified path in class {name}, {detail}. Certified margin ≥ "
                           f"{st['certified_margin']:.3g} along the whole path.")
    return "info", (f"Path in class {name}: {detail}. Every sample is in the "
                    f"class (smallest sampled margin {st['min_margin']:.3g}), but a label change between samples "
                    "is not excluded. Choose the proven check (weight-derived Lipschitz bound) where the model "
                    "allows it.")


def _pick(n: int, most: int) -> list[int]:
    """At most ``most`` indices of 0..n-1, evenly spread, always with both ends."""
    if n <= most:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, most).round().astype(int).tolist()))


def anchor_images_figure(path, pixel_range=(0.0, 1.0), most: int = 10, height: int = 210) -> go.Figure:
    """The images x1, anchors..., x2 in a row (at most ``most``, evenly spread)."""
    pts = path.points
    n = pts.shape[0]
    idx = _pick(n, most)
    titles = []
    for k in idx:
        if k == 0:
            titles.append("x1")
        elif k == n - 1:
            titles.append("x2")
        else:
            titles.append(f"anchor {k}" + (" (moved)" if path.moved is not None and path.moved[k - 1] else ""))
    fig = make_subplots(rows=1, cols=len(idx), subplot_titles=titles, horizontal_spacing=0.01)
    lo, hi = pixel_range
    for c, k in enumerate(idx, start=1):
        a = _as_display(pts[k])
        if a.ndim == 2:
            fig.add_trace(go.Heatmap(z=a, colorscale="gray", zmin=lo, zmax=hi, showscale=False,
                                     hovertemplate="row %{y}, col %{x}: %{z:.3f}<extra></extra>"), 1, c)
        else:
            rgb = (np.clip((a - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
            fig.add_trace(go.Image(z=rgb), 1, c)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{c if c > 1 else ''}", showticklabels=False,
                         showgrid=False, zeroline=False, row=1, col=c)
        fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain", row=1, col=c)
    fig.update_layout(height=height, margin=dict(l=5, r=5, t=30, b=5))
    return fig


def margin_figure(path, class_names, position: float | None = None, height: int = 360) -> go.Figure:
    """Logit margin of the path's class along the path (every verification sample) and along the straight
    chord (uniform samples); where the chord's margin is negative it has left the region."""
    fig = go.Figure()
    name = class_names[path.label]
    if path.chord_t is not None:
        t, m = path.chord_t, path.chord_margin
        out = np.where(m < 0, m, np.nan)
        fig.add_trace(go.Scatter(x=t, y=m, mode="lines", name="straight chord", line=dict(color=CHORD_COLOR,
                                                                                           width=2, dash="dash"),
                                 hovertemplate="chord t=%{x:.3f}<br>margin %{y:.4g}<extra></extra>"))
        if np.isfinite(out).any():
            fig.add_trace(go.Scatter(x=t, y=out, mode="lines", name="chord outside the region",
                                     line=dict(color=OUTSIDE_COLOR, width=3),
                                     hovertemplate="chord t=%{x:.3f}<br>margin %{y:.4g} (outside)<extra></extra>"))
    s, m = path.margin_profile()
    if len(s):
        fig.add_trace(go.Scatter(x=s, y=m, mode="lines", name=path_trace_name(path),
                                 line=dict(color=class_color(path.label), width=2.5),
                                 hovertemplate="path s=%{x:.3f}<br>margin %{y:.4g}<extra></extra>"))
        pos = path.arc_positions()[1:-1]
        if len(pos):
            sm = np.interp(pos, s, m)
            fig.add_trace(go.Scatter(x=pos, y=sm, mode="markers", name="anchors",
                                     marker=dict(symbol="diamond", size=9, color="white",
                                                 line=dict(color=PATH_COLOR, width=1.5)),
                                     hovertemplate="anchor at s=%{x:.3f}<br>margin %{y:.4g}<extra></extra>"))
    fig.add_hline(y=0, line=dict(color="#888888", width=1.5))  # grey: visible on light and dark themes
    if position is not None:
        fig.add_vline(x=position, line=dict(color="#555", width=1, dash="dot"))
    fig.update_layout(title=dict(text=f"Margin of class {name} (f_{name} − best other logit): path vs straight chord",
                                 font=dict(size=14)),
                      xaxis=dict(title="position (fraction of the path length; of the chord for the chord)",
                                 range=[0, 1]),
                      yaxis=dict(title="logit margin"), height=height, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0))  # above: clear of the wrapped x title
    return fig


def plane_figure(plane, path, position_ab=None, title: str = "", height: int = 520) -> go.Figure:
    """Class regions in the plane of the chord and the largest anchor deviation, with the chord, the path
    (its points projected onto the plane; distances off the plane in the hover) and the walk position."""
    fig = section_figure(plane.section, title=title, height=height, click_points=False)
    ab, off = plane.path_ab, plane.offsets
    fig.add_trace(go.Scatter(x=plane.chord_ab[:, 0], y=plane.chord_ab[:, 1], mode="lines", name="straight chord",
                             line=dict(color="white", width=2, dash="dash"), hoverinfo="skip"))
    custom = np.stack([np.arange(len(ab)), off], axis=1)
    fig.add_trace(go.Scatter(
        x=ab[:, 0], y=ab[:, 1], mode="lines+markers",
        name=path_trace_name(path),
        line=dict(color=PATH_COLOR, width=2.5, dash="solid" if path.verified else "dash" if path.connected else "dot"),
        marker=dict(symbol="diamond", size=9, color="white", line=dict(color=PATH_COLOR, width=1.5)),
        customdata=custom,
        hovertemplate="point %{customdata[0]}<br>a=%{x:.3f}, b=%{y:.3f}<br>%{customdata[1]:.3g} off the plane"
                      "<extra></extra>"))
    if position_ab is not None:
        fig.add_trace(go.Scatter(x=[position_ab[0]], y=[position_ab[1]], mode="markers", name="walk position",
                                 marker=dict(symbol="circle-open", size=16, color="black", line=dict(width=2.5))))
    return fig


def anchors_histogram(stats, height: int = 300) -> go.Figure:
    """Number of anchors of each connected path, and a bar for the pairs left unconnected."""
    con = [p.n_anchors for p in stats.paths if p.connected]
    fails = sum(not p.connected for p in stats.paths)
    values, counts = (np.unique(con, return_counts=True) if con else (np.array([], int), np.array([], int)))
    fig = go.Figure(go.Bar(x=[str(v) for v in values], y=counts, name="connected", marker_color=CONNECTED_COLOR,
                           hovertemplate="%{x} anchors: %{y} pairs<extra></extra>"))
    if fails:
        fig.add_trace(go.Bar(x=["not connected"], y=[fails], name="not connected", marker_color=OUTSIDE_COLOR,
                             hovertemplate="not connected within the budget: %{y} pairs<extra></extra>"))
    fig.update_layout(title=dict(text="Anchors per path", font=dict(size=14)), xaxis=dict(title="anchors",
                                                                                          type="category"),
                      yaxis=dict(title="pairs"), height=height, margin=dict(l=10, r=10, t=40, b=10),
                      showlegend=False)
    return fig


def outside_histogram(stats, height: int = 300) -> go.Figure:
    """Fraction of each pair's straight chord that lies outside the region."""
    v = np.asarray([p.statistics["chord_outside_fraction"] for p in stats.paths], dtype=float)
    fig = go.Figure(go.Histogram(x=v, xbins=dict(start=0, end=1.0001, size=0.05), marker_color="#7f7f7f",
                                 hovertemplate="outside fraction %{x}: %{y} pairs<extra></extra>"))
    fig.update_layout(title=dict(text="Fraction of the straight chord outside the region", font=dict(size=14)),
                      xaxis=dict(title="fraction of the chord", range=[0, 1]), yaxis=dict(title="pairs"),
                      height=height, margin=dict(l=10, r=10, t=40, b=10), bargap=0.05)
    return fig
