"""Figures of cross-sections: the label map of a plane with its boundaries, pixel-range edge and marked points.

Pure functions from :class:`geometry.sections.CrossSection` to Plotly figures (no Streamlit).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from dashboard.figures.common import class_color

POINT_STYLE = {  # kind -> (symbol, fill colour)
    "image": ("star", "white"),
    "boundary": ("diamond", "black"),
    "adversarial": ("x", "#d62728"),
    "other": ("circle", "white"),
}
CLICK_LATTICE = 41  # at most this many clickable points per axis


def _edges(a: np.ndarray, b: np.ndarray, mask_h: np.ndarray, mask_v: np.ndarray):
    """Line segments between grid cells: vertical ones where horizontal neighbours differ (mask_h, (nb, na-1)),
    horizontal ones where vertical neighbours differ (mask_v, (nb-1, na)). Returns x, y with None separators."""
    da = (a[1] - a[0]) / 2 if len(a) > 1 else 0.5
    db = (b[1] - b[0]) / 2 if len(b) > 1 else 0.5
    xs, ys = [], []
    ib, ia = np.nonzero(mask_h)
    am = (a[ia] + a[ia + 1]) / 2
    for x, yc in zip(am, b[ib]):
        xs += [x, x, None]
        ys += [yc - db, yc + db, None]
    ib, ia = np.nonzero(mask_v)
    bm = (b[ib] + b[ib + 1]) / 2
    for xc, y in zip(a[ia], bm):
        xs += [xc - da, xc + da, None]
        ys += [y, y, None]
    return xs, ys


def boundary_segments(section):
    """x, y of the decision boundary drawn between grid points of different labels."""
    L = section.labels
    return _edges(section.a, section.b, L[:, 1:] != L[:, :-1], L[1:, :] != L[:-1, :])


def range_segments(section):
    """x, y of the edge of the valid pixel range (between flagged and unflagged grid points)."""
    O = section.outside
    return _edges(section.a, section.b, O[:, 1:] != O[:, :-1], O[1:, :] != O[:-1, :])


def _discrete_scale(n: int):
    """A step colour scale mapping integers 0..n-1 to the class colours."""
    if n == 1:
        return [[0, class_color(0)], [1, class_color(0)]]
    scale = []
    for i in range(n):
        lo, hi = i / n, (i + 1) / n
        scale += [[lo, class_color(i)], [hi, class_color(i)]]
    return scale


def _fmt(x: float) -> str:
    return "0" if abs(x) < 5e-7 else f"{x:.3g}"


def section_figure(section, title: str = "", height: int = 600, click_points: bool = True) -> go.Figure:
    """Heatmap of predicted classes on the plane, boundaries drawn, pixel-range edge, marked points.

    Hover: class, logit margin (or that the label was inferred by the adaptive grid), (a, b), and
    whether the point is inside the pixel range. A transparent lattice of markers makes points
    clickable (Plotly heatmaps send no selection events)."""
    names = list(section.class_names)
    L = section.labels
    n_cls = len(names)
    a, b = section.a, section.b
    margin_txt = np.where(section.evaluated, np.char.mod("%.4g", np.nan_to_num(section.margins)),
                          "n/a (inferred)")
    range_txt = np.where(section.outside, "outside pixel range", "in pixel range")
    custom = np.stack([np.asarray(names, dtype=object)[L], margin_txt.astype(object), range_txt.astype(object)],
                      axis=-1)
    fig = go.Figure()
    fig.add_trace(go.Heatmap(
        x=a, y=b, z=L, zmin=-0.5, zmax=n_cls - 0.5, colorscale=_discrete_scale(n_cls), showscale=False,
        customdata=custom, name="class",
        hovertemplate="a=%{x:.3f}, b=%{y:.3f}<br>class %{customdata[0]}<br>margin %{customdata[1]}"
                      "<br>%{customdata[2]}<extra></extra>"))
    if section.outside.any():
        shade = np.where(section.outside, 1.0, np.nan)
        fig.add_trace(go.Heatmap(x=a, y=b, z=shade, zmin=0, zmax=1, showscale=False, hoverinfo="skip",
                                 colorscale=[[0, "rgba(255,255,255,0.35)"], [1, "rgba(255,255,255,0.35)"]],
                                 name="outside pixel range"))
    for cls in section.classes_present():
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"class {names[cls]}",
                                 marker=dict(symbol="square", size=12, color=class_color(cls))))
    xs, ys = boundary_segments(section)
    if xs:
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="black", width=1.6),
                                 name="decision boundary", hoverinfo="skip"))
    xs, ys = range_segments(section)
    if xs:
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#444", width=1.2, dash="dot"),
                                 name="pixel-range edge (lighter: outside)", hoverinfo="skip"))
    elif section.outside.all():
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", marker=dict(color="rgba(0,0,0,0)"),
                                 name="(every point is outside the pixel range)"))
    if click_points:
        step = max(1, int(np.ceil(len(a) / CLICK_LATTICE)))
        ia = np.arange(0, len(a), step)
        ib = np.arange(0, len(b), step)
        B, A = np.meshgrid(ib, ia, indexing="ij")
        fig.add_trace(go.Scatter(
            x=a[A.ravel()], y=b[B.ravel()], mode="markers", showlegend=False, name="click to inspect",
            marker=dict(size=7, color="rgba(0,0,0,0)"),
            customdata=custom[B.ravel(), A.ravel()],
            hovertemplate="a=%{x:.3f}, b=%{y:.3f}<br>class %{customdata[0]}<br>margin %{customdata[1]}"
                          "<br>%{customdata[2]}<br>(click to inspect)<extra></extra>"))
    for p in section.points:
        sym, col = POINT_STYLE.get(p.kind, POINT_STYLE["other"])
        off = f"<br>{p.offset:.3g} off the plane (projection shown)" if p.offset > 1e-6 else ""
        lab = f"<br>predicted {names[p.label]}" if p.label is not None and 0 <= p.label < n_cls else ""
        fig.add_trace(go.Scatter(
            x=[p.a], y=[p.b], mode="markers", name=p.name,
            marker=dict(symbol=sym, size=15 if p.kind == "image" else 12, color=col,
                        line=dict(color="black", width=1.5)),
            hovertemplate=f"{p.name}<br>a={_fmt(p.a)}, b={_fmt(p.b)}{lab}{off}<extra></extra>"))
    ext = section.extent
    fig.update_xaxes(title=f"a: {section.plane.axis_names[0]}", range=[-ext, ext], zeroline=False,
                     constrain="domain")
    fig.update_yaxes(title=f"b: {section.plane.axis_names[1]}", range=[-ext, ext], zeroline=False,
                     scaleanchor="x", scaleratio=1)
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", yanchor="top", y=-0.12, x=0, font=dict(size=11)),
                      clickmode="event+select", dragmode="pan", hovermode="closest")
    # a click selects one lattice marker; keep every other trace at full strength (no selection dimming)
    fig.update_traces(unselected=dict(marker=dict(opacity=1.0)), selector=dict(type="scatter"))
    return fig


def selected_point(event) -> tuple[float, float] | None:
    """(a, b) of a click/selection event returned by ``st.plotly_chart(on_select=...)``, or None.

    A box or lasso selection gives the centre of the selected points."""
    try:
        pts = event["selection"]["points"]
    except (KeyError, TypeError):
        pts = getattr(getattr(event, "selection", None), "points", None)
    if not pts:
        return None
    xs = [p.get("x") for p in pts if p.get("x") is not None and p.get("y") is not None]
    ys = [p.get("y") for p in pts if p.get("x") is not None and p.get("y") is not None]
    if not xs:
        return None
    return float(np.mean(xs)), float(np.mean(ys))
