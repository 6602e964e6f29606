"""Figures every page uses: an image as the model sees it, a signed map, class probabilities."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from dashboard.figures.palette import CLASS_PALETTE

# One colour-blind-safe palette for classes everywhere (Okabe-Ito / Paul Tol colours; every pair keeps a
# CIEDE2000 difference above 10 under simulated deuteranopia, protanopia and tritanopia: docs/palette.md).
CLASS_COLORS = [h for _, h in CLASS_PALETTE]


def class_color(i: int) -> str:
    """Colour of class ``i`` (the palette cycles after 10 classes)."""
    return CLASS_COLORS[int(i) % len(CLASS_COLORS)]


def relative_luminance(hex_color: str) -> float:
    """WCAG relative luminance of a '#RRGGBB' colour (0 black .. 1 white)."""
    s = hex_color.lstrip("#")
    c = np.array([int(s[i:i + 2], 16) / 255.0 for i in (0, 2, 4)])
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(lin @ np.array([0.2126, 0.7152, 0.0722]))


def text_color_on(hex_color: str) -> str:
    """Black or white, whichever has the higher WCAG contrast on ``hex_color``."""
    y = relative_luminance(hex_color)
    return "#000000" if (y + 0.05) / 0.05 >= 1.05 / (y + 0.05) else "#FFFFFF"


FONT_PX = 14              # every figure text at least this size (read from the back row)
PRESENTATION_PX = 20      # presentation mode
TITLE_EXTRA_PX = 3        # titles: FONT_PX + 3 = 17 px (23 px in presentation mode)
PRESENTATION_HEIGHT = 1.25
TITLE_WRAP = (62, 44)     # characters per title line (normal, presentation)
AXIS_TITLE_WRAP = (52, 38)
# Legends sit on a light, nearly opaque box with dark text: swatches drawn in black (boundaries, paths) stay
# visible when Streamlit's dark theme turns the page and the figure background dark.
LEGEND_STYLE = dict(bgcolor="rgba(255,255,255,0.88)", bordercolor="rgba(60,60,60,0.6)", borderwidth=1,
                    font=dict(color="#111111"))


# trace types that draw a colour bar unless showscale is False
SCALED_TRACES = ("heatmap", "contour", "surface", "histogram2d", "histogram2dcontour", "mesh3d", "volume",
                 "isosurface", "cone", "streamtube", "choropleth", "densitymap", "densitymapbox")


def wrap_text(text: str, width: int) -> str:
    """Break ``text`` with <br> at spaces so no line is longer than ``width`` characters (where possible).

    Text that already contains <br> is left as it is."""
    if not text or "<br>" in text or len(text) <= width:
        return text
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "<br>".join(lines)


def log_ticks(lo: float, hi: float, most: int = 9) -> tuple[list[float], list[str]]:
    """Tick values and labels for a log axis over [lo, hi] (lo > 0): 1-2-5 steps while they fit in ``most``
    ticks, else powers of ten (every k-th). Labels are whole numbers ("0.05", "0.1", "2", "10") or, outside
    1e-3..1e4, powers ("1e-05")."""
    if not (np.isfinite(lo) and np.isfinite(hi) and lo > 0 and hi > 0):
        return [], []
    lo, hi = min(lo, hi), max(lo, hi)
    e0, e1 = int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi)))
    tol = 1e-9
    vals = [m * 10.0 ** e for e in range(e0, e1 + 1) for m in (1, 2, 5) if lo * (1 - tol) <= m * 10.0 ** e <= hi * (1 + tol)]
    inside = (lambda v: lo * (1 - tol) <= v <= hi * (1 + tol))
    if len(vals) > most:
        powers = [10.0 ** e for e in range(e0, e1 + 1) if inside(10.0 ** e)]
        vals = powers[::max(1, int(np.ceil(len(powers) / most)))]
    if len(vals) < 2:  # a narrow range: every mantissa 1..9
        vals = [m * 10.0 ** e for e in range(e0, e1 + 1) for m in range(1, 10) if inside(m * 10.0 ** e)]
        vals = vals[::max(1, int(np.ceil(len(vals) / most)))] if len(vals) >= 2 else [lo, hi]
    labels = [(f"{v:.3g}" if 1e-3 <= v < 1e4 else f"{v:.0e}") for v in vals]
    return vals, labels


def _axis_data_range(fig: go.Figure, axis_name: str) -> tuple[float, float] | None:
    """Smallest and largest positive data value plotted on a cartesian axis ('xaxis', 'yaxis2', ...)."""
    letter = axis_name[0]
    ref = letter + axis_name[5:]  # 'xaxis2' -> 'x2', 'xaxis' -> 'x'
    vals = []
    for tr in fig.data:
        if (getattr(tr, f"{letter}axis", None) or letter) != ref:
            continue
        data = getattr(tr, letter, None)
        if data is None:
            continue
        try:
            arr = np.asarray([v for v in data if v is not None], dtype=float)
        except (TypeError, ValueError):
            continue
        arr = arr[np.isfinite(arr) & (arr > 0)]
        if arr.size:
            vals += [arr.min(), arr.max()]
    return (min(vals), max(vals)) if vals else None


def fix_log_axes(fig: go.Figure) -> go.Figure:
    """Every log axis without explicit ticks gets readable ones (see :func:`log_ticks`): no more "5 1 2 5 10"."""
    for name in [k for k in fig.layout if k.startswith(("xaxis", "yaxis"))]:
        ax = fig.layout[name]
        if ax.type != "log" or ax.tickvals is not None:
            continue
        if ax.range is not None and all(r is not None for r in ax.range):
            rng = (10.0 ** ax.range[0], 10.0 ** ax.range[1])
        else:
            rng = _axis_data_range(fig, name)
        if rng is None:
            continue
        vals, text = log_ticks(*rng)
        if vals:
            ax.update(tickmode="array", tickvals=vals, ticktext=text)
    return fig


def apply_theme(fig: go.Figure, presentation: bool = False) -> go.Figure:
    """The app's figure theme, applied by ``dashboard.ui.show`` to every figure (idempotent).

    - every text at least 14 px (20 px in presentation mode): layout, titles (17 / 23 px), axis ticks and titles,
      legends, hover labels, annotations (subplot titles included), colour bars, text on bars and markers,
      3-D scene axes;
    - long titles and axis titles wrap at spaces instead of being cut; margins grow to fit them;
    - legends on a light box with dark text (visible in Streamlit's dark theme);
    - log axes with readable ticks (0.05, 0.1, 0.2, ... or powers of ten);
    - presentation mode: figures 1.25x taller."""
    size = PRESENTATION_PX if presentation else FONT_PX
    tsize = size + TITLE_EXTRA_PX
    wrap_t, wrap_a = TITLE_WRAP[presentation], AXIS_TITLE_WRAP[presentation]
    meta = fig.layout.meta if isinstance(fig.layout.meta, dict) else {}
    base_height = meta.get("theme_base_height", fig.layout.height)

    def at_least(current, floor):
        return floor if current is None or current < floor else current

    fig.update_layout(font=dict(size=at_least(fig.layout.font.size, size)),
                      hoverlabel=dict(font=dict(size=at_least(fig.layout.hoverlabel.font.size, size))))
    fig.update_layout(legend=dict(LEGEND_STYLE, font=dict(LEGEND_STYLE["font"],
                                                          size=at_least(fig.layout.legend.font.size, size))))
    title = fig.layout.title
    if title is not None and title.text:
        fig.update_layout(title=dict(text=wrap_text(title.text, wrap_t), font=dict(size=at_least(title.font.size, tsize)),
                                     automargin=True, yref="container"))
    for name in [k for k in fig.layout if k.startswith(("xaxis", "yaxis"))]:
        ax = fig.layout[name]
        ax.update(tickfont=dict(size=at_least(ax.tickfont.size, size)), automargin=True)
        ax.title.font.size = at_least(ax.title.font.size, size)
        if ax.title.text:
            ax.title.text = wrap_text(ax.title.text, wrap_a)
    for name in [k for k in fig.layout if k.startswith("scene")]:
        for axn in ("xaxis", "yaxis", "zaxis"):
            ax = fig.layout[name][axn]
            ax.tickfont.size = at_least(ax.tickfont.size, size)
            ax.title.font.size = at_least(ax.title.font.size, size)
    for ann in fig.layout.annotations:
        ann.font.size = at_least(ann.font.size, size)
    for tr in fig.data:
        # colour bars: only where one is drawn (touching a hidden one's properties makes Plotly draw it)
        if "colorbar" in tr and tr.showscale is not False and tr.type in SCALED_TRACES:
            tr.colorbar.tickfont.size = at_least(tr.colorbar.tickfont.size, size)
            tr.colorbar.title.font.size = at_least(tr.colorbar.title.font.size, size)
        if "marker" in tr and "showscale" in tr.marker and tr.marker.showscale:
            tr.marker.colorbar.tickfont.size = at_least(tr.marker.colorbar.tickfont.size, size)
        if "textfont" in tr:
            tr.textfont.size = at_least(tr.textfont.size, size)
        if "hoverlabel" in tr:
            tr.hoverlabel.font.size = at_least(tr.hoverlabel.font.size, size)
    fix_log_axes(fig)
    if base_height:
        height = int(base_height * PRESENTATION_HEIGHT) if presentation else int(base_height)
        fig.update_layout(height=height, meta=dict(meta, theme_base_height=base_height))
    return fig


def _as_display(arr) -> np.ndarray:
    """(C,H,W) / (H,W) / (H,W,C) tensor or array -> (H,W) or (H,W,3) NumPy for display."""
    a = arr.detach().cpu().numpy() if hasattr(arr, "detach") else np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.transpose(a, (1, 2, 0))
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return a


def image_figure(arr, title: str = "", pixel_range=(0.0, 1.0), height: int = 260) -> go.Figure:
    """An image in pixel space, grey for one channel and RGB for three, on the model's pixel range."""
    a = _as_display(arr)
    lo, hi = pixel_range
    if a.ndim == 2:
        fig = go.Figure(go.Heatmap(z=a, colorscale="gray", zmin=lo, zmax=hi, showscale=False,
                                   hovertemplate="row %{y}, col %{x}: %{z:.3f}<extra></extra>"))
    else:
        rgb = np.clip((a - lo) / (hi - lo), 0, 1) * 255
        fig = go.Figure(go.Image(z=rgb.astype(np.uint8)))
    return _square(fig, title, height)


def signed_image_figure(arr, title: str = "", height: int = 260) -> go.Figure:
    """A signed map (perturbation, direction) on a diverging scale centred at zero."""
    a = _as_display(arr)
    if a.ndim == 3:
        a = a.mean(axis=-1)
    m = float(np.abs(a).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=a, colorscale="RdBu_r", zmin=-m, zmax=m, showscale=True,
                               colorbar=dict(thickness=8, len=0.8),
                               hovertemplate="row %{y}, col %{x}: %{z:.4f}<extra></extra>"))
    return _square(fig, title, height)


def _square(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_yaxes(autorange="reversed", scaleanchor="x", showticklabels=False, showgrid=False, zeroline=False)
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, constrain="domain")
    fig.update_layout(title=dict(text=title), height=height, margin=dict(l=5, r=5, t=36, b=5))
    return fig


def probability_figure(probs, class_names, top: int = 10, title: str = "Class probabilities") -> go.Figure:
    """Horizontal bars of the top-k class probabilities, most likely on top."""
    p = probs.detach().cpu().numpy() if hasattr(probs, "detach") else np.asarray(probs)
    order = np.argsort(-p)[:top][::-1]
    fig = go.Figure(go.Bar(x=p[order], y=[f"{class_names[i]} " for i in order], orientation="h",
                           marker_color=[class_color(int(i)) for i in order],
                           text=[f"{p[i]:.3f}" for i in order], textposition="auto",
                           hovertemplate="class %{y}: %{x:.4f}<extra></extra>"))
    fig.update_layout(title=title, xaxis=dict(range=[0, 1], title="probability"),
                      yaxis=dict(type="category", title="class"), height=90 + 30 * len(order),
                      margin=dict(l=10, r=10, t=40, b=40))
    return fig
