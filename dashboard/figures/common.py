"""Figures every page uses: an image as the model sees it, a signed map, class probabilities."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

CLASS_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf"]


def class_color(i: int) -> str:
    return CLASS_COLORS[i % len(CLASS_COLORS)]


FONT_PX = 14              # every figure text at least this size (read from the back row)
PRESENTATION_PX = 20      # presentation mode


def apply_theme(fig: go.Figure, presentation: bool = False) -> go.Figure:
    """The app's figure theme: fonts of at least 14 px (20 px in presentation mode) everywhere."""
    size = PRESENTATION_PX if presentation else FONT_PX
    fig.update_layout(font=dict(size=size), legend=dict(font=dict(size=size)), hoverlabel=dict(font_size=size))
    fig.update_xaxes(tickfont=dict(size=size), title_font=dict(size=size))
    fig.update_yaxes(tickfont=dict(size=size), title_font=dict(size=size))
    title = fig.layout.title
    if title is not None and title.text:
        fig.update_layout(title_font_size=max(size + 2, (title.font.size or 0)))
    if presentation and fig.layout.height:
        fig.update_layout(height=int(fig.layout.height * 1.25))
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
    fig.update_layout(title=dict(text=title, font=dict(size=13)), height=height, margin=dict(l=5, r=5, t=30, b=5))
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
