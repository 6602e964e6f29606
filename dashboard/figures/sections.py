"""Figures of cross-sections: the label map of a plane with its boundaries, pixel-range edge and marked points.

Pure functions from :class:`geometry.sections.CrossSection` to Plotly figures (no Streamlit).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from dashboard.figures.common import class_color

POINT_STYLE = {  # kind -> (symbol, fill colour); every marker has a contrasting outline (any region colour)
    "image": ("star", "white"),
    "boundary": ("diamond", "black"),
    "adversarial": ("x", "white"),
    "other": ("circle", "white"),
}
POINT_LINE = {"boundary": "white"}  # outline colour where it differs from black
CLICK_LATTICE = 41  # at most this many clickable points per axis
BOUNDARY_COLOR, BOUNDARY_HALO = "#000000", "#FFFFFF"
# the part of the plane outside the pixel range: diagonal hatching of light stripes over a light veil
OUTSIDE_STRIPE, OUTSIDE_VEIL = "rgba(255,255,255,0.55)", "rgba(255,255,255,0.18)"
RANGE_EDGE_COLOR = "#111111"
# class names are printed in regions whose largest inscribed disc has at least this radius (in grid cells and as
# a fraction of the grid's side), away from the marked points, at most MAX_REGION_LABELS of them
LABEL_MIN_RADIUS_CELLS = 2.5
LABEL_MIN_RADIUS_FRACTION = 0.045
LABEL_POINT_CLEARANCE = 0.08  # fraction of the grid's side kept free around marked points
MAX_REGION_LABELS = 12
LABEL_BOX = dict(bgcolor="rgba(0,0,0,0.62)", bordercolor="rgba(255,255,255,0.85)", borderwidth=1, borderpad=3)


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


def class_label_text(name: str) -> str:
    """What is printed in a region: "class 3" for a numeric class name, the name itself otherwise."""
    return f"class {name}" if str(name).strip().lstrip("-").isdigit() else str(name)


def region_label_positions(labels: np.ndarray, avoid=(), min_radius: float | None = None,
                           clearance: float | None = None, most: int = MAX_REGION_LABELS):
    """Where to print class names: one ``(row, col, class, radius)`` per connected region of a label map
    (4-connected, :func:`scipy.ndimage.label`) large enough to hold a name, at the grid point farthest from the
    region's edge (Euclidean distance transform; the border of the grid counts as an edge) and at least
    ``clearance`` cells from every ``avoid`` point ((row, col) pairs, e.g. marked points). Regions whose largest
    such distance is below ``min_radius`` cells get no label. Largest regions first, at most ``most``."""
    from scipy import ndimage

    L = np.asarray(labels)
    n_b, n_a = L.shape
    side = min(n_b, n_a)
    if min_radius is None:
        min_radius = max(LABEL_MIN_RADIUS_CELLS, LABEL_MIN_RADIUS_FRACTION * side)
    if clearance is None:
        clearance = LABEL_POINT_CLEARANCE * side
    rows, cols = np.mgrid[0:n_b, 0:n_a]
    free = np.ones(L.shape, dtype=bool)
    for r, c in avoid:
        free &= (rows - r) ** 2 + (cols - c) ** 2 > clearance ** 2
    found = []
    for cls in np.unique(L):
        comp, n = ndimage.label(L == cls)
        for k in range(1, n + 1):
            mask = comp == k
            dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
            score = np.where(free, dist, 0.0)
            if score.max() < min_radius:
                continue
            r, c = np.unravel_index(np.argmax(score), score.shape)
            found.append((int(r), int(c), int(cls), float(score[r, c]), int(mask.sum())))
    found.sort(key=lambda t: -t[4])
    return [t[:4] for t in found[:most]]


def _stripes(outside: np.ndarray) -> np.ndarray:
    """1 on the diagonal stripes of the outside set, 0 between them, NaN inside the range (hatching)."""
    n_b, n_a = outside.shape
    period = max(2, int(round(max(n_a, n_b) / 24)))
    ib, ia = np.mgrid[0:n_b, 0:n_a]
    stripe = ((ia + ib) % (2 * period)) < period
    return np.where(outside, stripe.astype(float), np.nan)


def section_figure(section, title: str = "", height: int = 600, click_points: bool = True,
                   region_names: bool = True, legend: str = "right") -> go.Figure:
    """Heatmap of predicted classes on the plane with the class name printed inside each region large enough to
    hold it, the decision boundary (black on a white halo), the valid images (inside the pixel range) outlined
    and everything outside the range hatched, and the marked points.

    Hover: class, logit margin (or that the label was inferred by the adaptive grid), (a, b), and whether the
    point is a valid image. A transparent lattice of markers makes points clickable (Plotly heatmaps send no
    selection events). When no grid point is a valid image the figure says so."""
    names = list(section.class_names)
    L = section.labels
    n_cls = len(names)
    a, b = section.a, section.b
    lo, hi = section.params.get("pixel_range", (None, None)) if isinstance(section.params, dict) else (None, None)
    rng = f"[{lo:g}, {hi:g}]" if lo is not None and hi is not None else "the pixel range"
    margin_txt = np.where(section.evaluated, np.char.mod("%.4g", np.nan_to_num(section.margins)),
                          "n/a (inferred)")
    range_txt = np.where(section.outside, f"outside the pixel range {rng}: not a valid image",
                         f"valid image (pixels in {rng})")
    custom = np.stack([np.asarray(names, dtype=object)[L], margin_txt.astype(object), range_txt.astype(object)],
                      axis=-1)
    fig = go.Figure()
    fig.add_trace(go.Heatmap(
        x=a, y=b, z=L, zmin=-0.5, zmax=n_cls - 0.5, colorscale=_discrete_scale(n_cls), showscale=False,
        customdata=custom, name="class",
        hovertemplate="a=%{x:.3f}, b=%{y:.3f}<br>class %{customdata[0]}<br>margin %{customdata[1]}"
                      "<br>%{customdata[2]}<extra></extra>"))
    n_out = int(section.outside.sum())
    total = section.outside.size
    if n_out:
        fig.add_trace(go.Heatmap(x=a, y=b, z=_stripes(section.outside), zmin=0, zmax=1, showscale=False,
                                 hoverinfo="skip", name="outside the pixel range",
                                 colorscale=[[0, OUTSIDE_VEIL], [0.5, OUTSIDE_VEIL], [0.5, OUTSIDE_STRIPE],
                                             [1, OUTSIDE_STRIPE]]))
    for cls in section.classes_present():
        if 0 <= cls < n_cls:
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"class {names[cls]}",
                                     marker=dict(symbol="square", size=14, color=class_color(cls),
                                                 line=dict(color="#333", width=1))))
    xs, ys = boundary_segments(section)
    if xs:
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=BOUNDARY_HALO, width=4.5),
                                 showlegend=False, hoverinfo="skip", name="boundary halo"))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=BOUNDARY_COLOR, width=2),
                                 name="decision boundary", hoverinfo="skip"))
    frac_in = 1.0 - n_out / max(total, 1)
    xs, ys = range_segments(section)
    if xs:
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=BOUNDARY_HALO, width=4),
                                 showlegend=False, hoverinfo="skip", name="valid-image edge halo"))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=RANGE_EDGE_COLOR, width=2, dash="dash"),
                                 name=f"edge of valid images ({frac_in:.1%})", hoverinfo="skip"))
    if n_out:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="hatched: pixels out of range",
                                 marker=dict(symbol="square-x", size=14, color="#DDDDDD",
                                             line=dict(color="#555", width=1))))
    if n_out == total:
        fig.add_annotation(
            text=f"No valid image here:<br>some pixel leaves {rng} everywhere",
            xref="paper", yref="paper", x=0.5, y=0.98, xanchor="center", yanchor="top", showarrow=False,
            font=dict(color="#FFFFFF", size=14), **LABEL_BOX)
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
            marker=dict(symbol=sym, size=17 if p.kind == "image" else 14, color=col,
                        line=dict(color=POINT_LINE.get(p.kind, "black"), width=2)),
            hovertemplate=f"{p.name}<br>a={_fmt(p.a)}, b={_fmt(p.b)}{lab}{off}<extra></extra>"))
    if region_names and len(a) > 1 and len(b) > 1:
        da, db = a[1] - a[0], b[1] - b[0]
        avoid = [((p.b - b[0]) / db, (p.a - a[0]) / da) for p in section.points]
        if 0 < n_out < total:  # name the valid part too, then keep class names off it
            valid = [t for t in region_label_positions((~section.outside).astype(int), avoid=avoid, most=3)
                     if t[2] == 1]
            for r, c, _, _ in valid:
                fig.add_annotation(x=float(a[c]), y=float(b[r]), text="valid images", showarrow=False,
                                   font=dict(color="#111111", size=14), bgcolor="rgba(255,255,255,0.85)",
                                   bordercolor="#111111", borderwidth=1, borderpad=2)
            avoid += [(r, c) for r, c, _, _ in valid]
        for r, c, cls, _ in region_label_positions(L, avoid=avoid):
            if 0 <= cls < n_cls:
                fig.add_annotation(x=float(a[c]), y=float(b[r]), text=f"<b>{class_label_text(names[cls])}</b>",
                                   showarrow=False, font=dict(color="#FFFFFF", size=16), **LABEL_BOX)
    ext = section.extent
    fig.update_xaxes(title=f"a: {section.plane.axis_names[0]}", range=[-ext, ext], zeroline=False,
                     constrain="domain")
    fig.update_yaxes(title=f"b: {section.plane.axis_names[1]}", range=[-ext, ext], zeroline=False,
                     scaleanchor="x", scaleratio=1, constrain="domain")
    # legend="right" beside the square (a full-width figure); "below" under it (two figures side by side)
    place = (dict(orientation="v", yanchor="top", y=1, xanchor="left", x=1.02) if legend == "right" else
             dict(orientation="h", yanchor="top", y=-0.12, xanchor="left", x=0))
    fig.update_layout(title=dict(text=title), height=height, margin=dict(l=10, r=10, t=40 if title else 10, b=10),
                      legend=place, clickmode="event+select", dragmode="pan", hovermode="closest")
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


# diverging colours for the signed margin (Paul Tol's colour-blind-safe "BuRd"): blue where another class wins,
# white at the boundary, red inside the image's class
MARGIN_SCALE = [[0.0, "#2166AC"], [0.125, "#4393C3"], [0.25, "#92C5DE"], [0.375, "#D1E5F0"], [0.5, "#F7F7F7"],
                [0.625, "#FDDBC7"], [0.75, "#F4A582"], [0.875, "#D6604D"], [1.0, "#B2182B"]]
ZERO_PLANE_COLOR = "#666666"


def _bilinear(a, b, z, pa: float, pb: float) -> float:
    """z (row = b, column = a) interpolated at (pa, pb), or NaN outside the grid."""
    if not (a[0] <= pa <= a[-1] and b[0] <= pb <= b[-1]):
        return float("nan")
    i = int(np.clip(np.searchsorted(a, pa) - 1, 0, len(a) - 2))
    j = int(np.clip(np.searchsorted(b, pb) - 1, 0, len(b) - 2))
    ta = (pa - a[i]) / (a[i + 1] - a[i])
    tb = (pb - b[j]) / (b[j + 1] - b[j])
    return float((1 - ta) * (1 - tb) * z[j, i] + ta * (1 - tb) * z[j, i + 1] + (1 - ta) * tb * z[j + 1, i]
                 + ta * tb * z[j + 1, i + 1])


def zero_level_segments(a, b, z):
    """The zero level set of ``z`` (row = b, column = a) as line segments (marching squares with linear
    interpolation along cell edges; saddle cells resolved by the cell-centre mean). Returns x, y lists with
    None between segments; empty when z does not change sign."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    z = np.asarray(z, dtype=float)
    xs, ys = [], []

    def cross(p, q, zp, zq):
        t = zp / (zp - zq)
        return p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])

    pos = z > 0
    cells = np.argwhere((pos[:-1, :-1] != pos[1:, :-1]) | (pos[:-1, :-1] != pos[:-1, 1:]) |
                        (pos[:-1, :-1] != pos[1:, 1:]))
    for j, i in cells:
        corners = [((a[i], b[j]), z[j, i]), ((a[i + 1], b[j]), z[j, i + 1]),
                   ((a[i + 1], b[j + 1]), z[j + 1, i + 1]), ((a[i], b[j + 1]), z[j + 1, i])]
        if not all(np.isfinite(c[1]) for c in corners):
            continue
        pts = []
        for k in range(4):
            (p, zp), (q, zq) = corners[k], corners[(k + 1) % 4]
            if (zp > 0) != (zq > 0):
                pts.append(cross(p, q, zp, zq))
        if len(pts) == 4:  # saddle: pair the crossings so that the centre's side stays connected
            centre = np.mean([c[1] for c in corners])
            if (centre > 0) == (corners[0][1] > 0):
                pts = [pts[0], pts[3], pts[1], pts[2]]
        for k in range(0, len(pts) - 1, 2):
            xs += [pts[k][0], pts[k + 1][0], None]
            ys += [pts[k][1], pts[k + 1][1], None]
    return xs, ys


def margin_surface_figure(a, b, margin, class_name: str, axis_names=("a", "b"), points=(), title: str = "",
                          height: int = 560) -> go.Figure:
    """The margin of the image's class over the plane as a 3-D surface (:func:`geometry.sections.margin_surface`):
    height = f_k - best other logit, red where the model says class k, blue where another class wins; the zero
    level (the decision boundary of class k) drawn as a black line on the surface and on the floor, and a
    translucent grey plane at height 0. ``points``: :class:`geometry.sections.MarkedPoint` s placed on the surface."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    z = np.asarray(margin, dtype=float)
    if z.shape != (len(b), len(a)):
        raise ValueError(f"margin has shape {z.shape}; expected (len(b), len(a)) = ({len(b)}, {len(a)})")
    finite = z[np.isfinite(z)]
    m = float(np.abs(finite).max()) if finite.size else 1.0
    m = m or 1.0
    k = class_label_text(class_name)
    fig = go.Figure()
    crosses = finite.size and finite.min() < 0 < finite.max()
    fig.add_trace(go.Surface(
        x=a, y=b, z=z, surfacecolor=z, cmin=-m, cmax=m, colorscale=MARGIN_SCALE, name=f"margin of {k}",
        colorbar=dict(title=dict(text="margin", side="right"), len=0.75, thickness=14),
        hovertemplate="a=%{x:.3f}, b=%{y:.3f}<br>margin %{z:.4g}<extra></extra>", showlegend=True))
    fig.add_trace(go.Surface(
        x=[a[0], a[-1]], y=[b[0], b[-1]], z=np.zeros((2, 2)), opacity=0.35, showscale=False,
        colorscale=[[0, ZERO_PLANE_COLOR], [1, ZERO_PLANE_COLOR]], hoverinfo="skip",
        name="grey plane: margin 0", showlegend=True))
    if crosses:  # the zero level: where the surface meets the grey plane, and its shadow on the floor
        xs, ys = zero_level_segments(a, b, z)
        floor = float(finite.min())
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=[None if v is None else 0.0 for v in xs], mode="lines",
                                   line=dict(color="black", width=7), name=f"boundary of {k}",
                                   hoverinfo="skip", connectgaps=False))
        fig.add_trace(go.Scatter3d(x=xs, y=ys, z=[None if v is None else floor for v in xs], mode="lines",
                                   line=dict(color="#888888", width=3, dash="dash"), hoverinfo="skip",
                                   name="boundary, shadow on the floor", connectgaps=False))
    for p in points:
        h = _bilinear(a, b, z, p.a, p.b)
        if not np.isfinite(h):
            continue
        sym = {"image": "diamond", "boundary": "circle", "adversarial": "x"}.get(p.kind, "circle")
        fig.add_trace(go.Scatter3d(
            x=[p.a], y=[p.b], z=[h], mode="markers", name=p.name,
            marker=dict(size=7, symbol=sym, color="white", line=dict(color="black", width=3)),
            hovertemplate=f"{p.name}<br>a={_fmt(p.a)}, b={_fmt(p.b)}<br>margin %{{z:.4g}}<extra></extra>"))
    fig.update_layout(
        title=dict(text=title), height=height, margin=dict(l=0, r=0, t=40 if title else 10, b=0),
        legend=dict(orientation="h", yanchor="top", y=0.02, x=0),
        scene=dict(xaxis=dict(title=dict(text=f"a: {axis_names[0]}")),
                   yaxis=dict(title=dict(text=f"b: {axis_names[1]}")),
                   zaxis=dict(title=dict(text=f"margin of {k}")),
                   aspectmode="manual", aspectratio=dict(x=1, y=1, z=0.6),
                   camera=dict(eye=dict(x=1.5, y=-1.5, z=1.0))))
    return fig
