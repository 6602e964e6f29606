"""Figures of the Compare models page: the boundary distances of several models in one bar chart and their
curvature spectra in one figure (shared axes), each model in its own colour and marker.

Pure functions of the results (no Streamlit, no model calls); the theme is applied by ``dashboard.ui.show``.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from dashboard.figures.curvature import spectrum_positions

# one colour and marker per compared model (Okabe-Ito blue, vermillion, bluish green, reddish purple): told apart
# under deuteranopia and protanopia, and by marker shape without colour
MODEL_STYLE = [("#0072B2", "circle"), ("#D55E00", "diamond"), ("#009E73", "square"), ("#CC79A7", "triangle-up")]


def model_style(i: int) -> tuple[str, str]:
    """(colour, marker symbol) of the i-th compared model."""
    return MODEL_STYLE[i % len(MODEL_STYLE)]


def distance_figure(names, distances, boundary_classes, title: str = "Distance to the nearest boundary",
                    height: int = 360) -> go.Figure:
    """One bar per model: the L2 length of its smallest change that crosses its boundary (DeepFool +
    bisection), labelled with the value and the class across."""
    fig = go.Figure()
    for i, (name, d, c) in enumerate(zip(names, distances, boundary_classes)):
        color, _ = model_style(i)
        fig.add_trace(go.Bar(x=[name], y=[d], name=name, marker=dict(color=color, line=dict(color="#222", width=1)),
                             text=[f"{d:.3g} → {c}"], textposition="outside", cliponaxis=False,
                             hovertemplate=f"{name}<br>distance %{{y:.4g}} to class {c}<extra></extra>"))
    top = max([float(d) for d in distances] + [0.0])
    fig.update_layout(title=title, showlegend=False, height=height, bargap=0.35,
                      yaxis=dict(title="L2 distance (pixel units)", range=[0, 1.25 * top if top > 0 else 1]),
                      xaxis=dict(title=""), margin=dict(l=10, r=10, t=60, b=40))
    return fig


def spectra_figure(results, names, d: int, title: str = "Curvature spectra at each model's boundary point",
                   height: int = 400) -> go.Figure:
    """Every model's principal curvatures (sorted, both ends of the spectrum) against their rank, on one pair
    of axes: the same y-range for all, so a flatter boundary is visibly closer to zero."""
    fig = go.Figure()
    for i, (res, name) in enumerate(zip(results, names)):
        color, symbol = model_style(i)
        x = spectrum_positions(res, d)
        y = np.asarray(res.curvatures, dtype=float)
        xs, ys = [], []
        for k in range(len(x)):
            if k and x[k] != x[k - 1] + 1:  # the unexplored middle of a Lanczos spectrum: break the line
                xs.append(None)
                ys.append(None)
            xs.append(int(x[k]))
            ys.append(float(y[k]))
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, connectgaps=False,
                                 line=dict(color=color, width=2), marker=dict(color=color, symbol=symbol, size=8,
                                                                              line=dict(color="#222", width=1)),
                                 hovertemplate="rank %{x}: curvature %{y:.4g}<extra>" + name + "</extra>"))
    fig.add_hline(y=0, line=dict(color="#888", width=1, dash="dot"))
    xlab = f"rank among the {d - 1} tangent directions (1 = most positive)"
    partial = [r for r in results if len(r.curvatures) < d - 1]
    if partial:
        xlab += "; the middle of the spectrum is not computed"
    fig.update_layout(title=title, height=height, xaxis_title=xlab, yaxis_title="curvature (1 / pixel units)",
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0),
                      margin=dict(l=10, r=10, t=80, b=40))
    if partial:  # a log-free, compact x axis: the two computed ends next to each other
        ranks = sorted({int(v) for r in results for v in spectrum_positions(r, d)})
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=ranks)
    return fig
