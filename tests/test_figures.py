"""Figures readable from the back row: the colour-blind-safe class palette (checked by simulation, docs in sync),
class names inside cross-section regions, the valid-image region, the figure theme (fonts, legends, log ticks,
wrapped titles) and the 3-D margin surface."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from analytic import linear_classifier

from dashboard.figures import palette
from dashboard.figures.common import (CLASS_COLORS, FONT_PX, LEGEND_STYLE, PRESENTATION_PX, apply_theme,
                                      class_color, log_ticks, probability_figure, text_color_on, wrap_text)
from dashboard.figures.curvature import profile_figure
from dashboard.figures.sections import (margin_surface_figure, region_label_positions, section_figure,
                                        zero_level_segments)
from dashboard.figures.vulnerability import auc_interval_figure, fooling_figure, rho_figure
from geometry.sections import cross_section, margin_surface

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ colour science and the palette
@pytest.mark.parametrize("lab1, lab2, expected", [  # Sharma, Wu & Dalal (2005), table 1
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((50.0, 2.5, 0.0), (50.0, 3.1736, 0.5854), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
])
def test_ciede2000_matches_published_test_data(lab1, lab2, expected):
    assert float(palette.ciede2000(np.array(lab1), np.array(lab2))) == pytest.approx(expected, abs=5e-5)
    assert float(palette.ciede2000(np.array(lab2), np.array(lab1))) == pytest.approx(expected, abs=5e-5)


def test_simulation_keeps_greys_and_merges_red_green():
    greys = np.array([[0.2, 0.2, 0.2], [0.7, 0.7, 0.7]])
    for v in palette.VISIONS:
        np.testing.assert_allclose(palette.simulate(greys, v), greys, atol=2e-6)
    lab = palette.srgb_to_lab(np.array([[1.0, 1.0, 1.0]]))[0]
    np.testing.assert_allclose(lab, [100.0, 0.0, 0.0], atol=1e-3)
    # pure red and green, very different normally, come much closer under deuteranopia and protanopia
    rg = ["#FF0000", "#00FF00"]
    normal = palette.pairwise_delta_e(rg, "normal")[0, 1]
    assert palette.pairwise_delta_e(rg, "deuteranopia")[0, 1] < normal / 2
    assert palette.pairwise_delta_e(rg, "protanopia")[0, 1] < normal / 2


def test_palette_stays_distinguishable_under_every_simulation():
    hexes = palette.class_hexes()
    assert len(hexes) >= 10 and len(set(hexes)) == len(hexes)
    for v in palette.VISIONS:
        de, i, j = palette.worst_pair(hexes, v)
        assert de > palette.THRESHOLD, f"{v}: classes {i} and {j} differ by only {de:.2f}"


def test_old_plotly_palette_fails_the_same_check():
    """The check can fail: Plotly's default palette, used before, merges classes 2 and 3 under deuteranopia."""
    old = palette.PLOTLY_DEFAULT
    assert palette.pairwise_delta_e(old, "deuteranopia")[2, 3] < 5.0
    assert palette.min_over_visions(old) < palette.THRESHOLD


def test_palette_is_what_the_search_finds_and_what_the_figures_use():
    found = palette.best_subset(palette.candidates(), len(palette.CLASS_PALETTE))
    assert sorted(found) == sorted(name for name, _ in palette.CLASS_PALETTE)
    for name, h in palette.CLASS_PALETTE:
        assert palette.SOURCE_POOL[name] == h
    assert CLASS_COLORS == palette.class_hexes()
    assert [class_color(i) for i in range(12)] == CLASS_COLORS + CLASS_COLORS[:2]


def test_docs_palette_md_matches_the_computation():
    doc = (ROOT / "docs" / "palette.md").read_text()
    assert doc == palette.markdown(), "docs/palette.md is stale: run python scripts/palette_check.py"
    worst = palette.min_over_visions(palette.class_hexes())
    assert f"ΔE00 = {worst:.2f}" in doc
    out = subprocess.run([sys.executable, "scripts/palette_check.py", "--check"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_text_colour_contrasts_with_every_class_colour():
    for h in CLASS_COLORS:
        t = text_color_on(h)
        assert t in ("#000000", "#FFFFFF")
    assert text_color_on("#FFFFFF") == "#000000" and text_color_on("#000000") == "#FFFFFF"


# ------------------------------------------------------------------ cross-section figure
def _linear_section(x0_value: float, resolution: int, spec="normal,random", extent=None):
    """A real cross-section of a 3-class linear classifier on 4x4 'images' in the pixel range [0, 1]."""
    rng = np.random.default_rng(0)
    clf = linear_classifier(rng.normal(size=(3, 16)), rng.normal(size=3), input_shape=(1, 4, 4),
                            class_names=["0", "1", "2"], pixel_range=(0.0, 1.0))
    x = torch.full((1, 4, 4), x0_value, dtype=torch.float64)
    x[0, 0, :2] = 0.2  # not all pixels equal
    return clf, cross_section(clf, x, spec, resolution=resolution, extent=extent, adaptive=False)


def test_region_label_positions_inside_big_regions_only():
    L = np.zeros((60, 60), dtype=int)
    L[:, 30:] = 1
    L[5:8, 5:8] = 2  # a 3x3 island: too small to hold a name
    pos = region_label_positions(L, avoid=[(30, 15)])
    classes = sorted(c for _, _, c, _ in pos)
    assert classes == [0, 1]
    for r, c, cls, radius in pos:
        assert L[r, c] == cls
        assert radius >= 2.5
        assert (r - 30) ** 2 + (c - 15) ** 2 > (0.08 * 60) ** 2
    # two separate pieces of one class get a name each
    L2 = np.zeros((60, 60), dtype=int)
    L2[:, 20:40] = 1
    assert sorted(c for _, _, c, _ in region_label_positions(L2)) == [0, 0, 1]


def _annotation_texts(fig):
    return [re.sub("<[^>]+>", " ", a.text or "") for a in fig.layout.annotations]


def test_section_figure_names_regions_and_outlines_valid_images():
    clf, sec = _linear_section(0.5, 41)
    assert 0 < sec.outside.sum() < sec.outside.size  # part of the square is valid images, part is not
    fig = section_figure(sec)
    texts = _annotation_texts(fig)
    for cls in sec.classes_present():
        if (sec.labels == cls).mean() > 0.2:
            assert any(f"class {cls}" in t for t in texts), texts
    assert any("valid images" in t for t in texts)
    names = [t.name or "" for t in fig.data]
    edge = [n for n in names if n.startswith("edge of valid images")]
    assert edge and f"({1 - sec.outside.mean():.1%})" in edge[0]
    assert "hatched: pixels out of range" in names
    hatch = [t for t in fig.data if t.type == "heatmap" and t.name == "outside the pixel range"][0]
    z = np.asarray(hatch.z, dtype=float)
    assert np.isnan(z[~sec.outside]).all() and set(np.unique(z[sec.outside])) == {0.0, 1.0}
    assert not any("No valid image here" in t for t in texts)
    # class colours come from the palette
    heat = fig.data[0]
    assert {c for _, c in heat.colorscale} <= set(CLASS_COLORS)


def test_section_figure_says_when_no_point_is_a_valid_image():
    # image with pixels at the bounds and random directions: every step leaves [0, 1]; an even resolution
    # leaves the image itself off the grid
    clf, sec = _linear_section(0.0, 32, spec="random,random", extent=2.0)
    assert sec.outside.all()
    fig = section_figure(sec)
    assert any("No valid image here" in t for t in _annotation_texts(fig))
    assert not any((t.name or "").startswith("edge of valid images") for t in fig.data)


def test_section_figure_without_outside_points_has_no_hatching():
    rng = np.random.default_rng(0)
    clf = linear_classifier(rng.normal(size=(3, 16)), rng.normal(size=3), input_shape=(1, 4, 4),
                            class_names=["cat", "dog", "emu"])  # wide pixel range
    sec = cross_section(clf, torch.full((1, 4, 4), 0.5, dtype=torch.float64), "normal,random", resolution=33,
                        adaptive=False)
    assert not sec.outside.any()
    fig = section_figure(sec)
    assert not any(t.name == "outside the pixel range" for t in fig.data)
    texts = _annotation_texts(fig)
    present = [clf.class_names[c] for c in sec.classes_present()]
    assert any(any(n in t for n in present) for t in texts)  # word names printed as they are
    assert not any("class cat" in t for t in texts)


# ------------------------------------------------------------------ theme
def _font_sizes(fig):
    """Every explicit or effective text size of a themed figure (None = inherits layout.font.size)."""
    L = fig.layout
    base = L.font.size
    eff = (lambda s: base if s is None else s)
    sizes = [base, eff(L.legend.font.size), eff(L.hoverlabel.font.size)]
    if L.title.text:
        sizes.append(eff(L.title.font.size))
    for k in L:
        if k.startswith(("xaxis", "yaxis")):
            sizes += [eff(L[k].tickfont.size), eff(L[k].title.font.size)]
        if k.startswith("scene"):
            for ax in ("xaxis", "yaxis", "zaxis"):
                sizes += [eff(L[k][ax].tickfont.size), eff(L[k][ax].title.font.size)]
    sizes += [eff(a.font.size) for a in L.annotations]
    for tr in fig.data:
        if "textfont" in tr:
            sizes.append(eff(tr.textfont.size))
    return sizes


def _figures():
    clf, sec = _linear_section(0.5, 33)
    a, b, m = margin_surface(clf, sec.plane, int(sec.plane.info["label"]), sec.extent, 17)
    eps = np.geomspace(0.05, 3.0, 8)
    t = np.linspace(-1, 1, 9)
    prof = {"t": t, "curvatures": [0.5, -0.3], "indices": [0, 1], "F": [t ** 2, -t ** 2],
            "quadratic": [t ** 2, -t ** 2]}
    return {
        "section": section_figure(sec, title="A cross-section"),
        "surface": margin_surface_figure(a, b, m, "1", sec.plane.axis_names, sec.points, title="3-D"),
        "probabilities": probability_figure(np.array([0.1, 0.7, 0.2]), ["0", "1", "2"]),
        "fooling": fooling_figure(eps, np.linspace(0, 1, 8), np.linspace(0, 0.3, 8), 10),
        "rho": rho_figure(np.array([0.0, 0.3, -0.2]), 0, 1, ["0", "1", "2"]),
        "profile": profile_figure(prof),
        "auc_interval": auc_interval_figure({"chosen": [{"attack": "fgsm", "size": 1.0, "auc": 0.7, "auc_low": 0.6,
                                                         "auc_high": 0.8}],
                                             "paper": [{"attack": "fgsm", "size": 1.0, "auc": 0.6, "auc_low": 0.5,
                                                        "auc_high": 0.7}]}),
    }


@pytest.mark.parametrize("presentation", [False, True])
def test_theme_fonts_at_least_14_or_20_px(presentation):
    floor = PRESENTATION_PX if presentation else FONT_PX
    for name, fig in _figures().items():
        h0 = fig.layout.height
        apply_theme(fig, presentation=presentation)
        sizes = _font_sizes(fig)
        assert all(s is not None and s >= floor for s in sizes), (name, sizes)
        if fig.layout.title.text:
            assert fig.layout.title.font.size >= floor + 3
        expect = int(h0 * 1.25) if presentation else h0
        assert fig.layout.height == expect, name
        apply_theme(fig, presentation=presentation)  # idempotent: no compounding growth
        assert fig.layout.height == expect, name


def test_theme_legend_readable_on_dark_background():
    fig = apply_theme(_figures()["section"])
    leg = fig.layout.legend
    assert leg.bgcolor == LEGEND_STYLE["bgcolor"] and leg.font.color == "#111111"
    alpha = float(re.findall(r"[\d.]+", leg.bgcolor)[-1])
    assert alpha >= 0.8
    # every legend entry has an explicit colour (none falls back to a theme colour that could be dark on dark)
    for tr in fig.data:
        if tr.type == "scatter" and tr.showlegend is not False and tr.name:
            colour = (tr.marker.color if tr.mode and "markers" in tr.mode else None) or tr.line.color
            assert colour is not None, tr.name


def test_log_axis_ticks_read_as_whole_numbers():
    fig = apply_theme(_figures()["fooling"])
    ax = fig.layout.xaxis
    assert ax.type == "log"
    assert list(ax.ticktext) == ["0.05", "0.1", "0.2", "0.5", "1", "2"]
    np.testing.assert_allclose([float(s) for s in ax.ticktext], ax.tickvals)
    # any log axis gets such ticks from the theme, even when the figure did not set them
    f = go.Figure(go.Scatter(x=[0.01, 0.03, 0.2, 5.0], y=[1, 2, 3, 4]))
    f.update_xaxes(type="log")
    apply_theme(f)
    assert list(f.layout.xaxis.ticktext) == ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2", "5"]
    vals, text = log_ticks(1e-6, 1e3)
    assert text[0] == "1e-06" and len(vals) <= 9  # nine decades: every other power of ten
    np.testing.assert_allclose([float(s) for s in text], vals)
    vals, text = log_ticks(0.3, 0.9)
    assert len(vals) >= 2 and all(0.3 - 1e-9 <= v <= 0.9 + 1e-9 for v in vals)


def test_long_titles_wrap_instead_of_being_cut():
    t = "Margin of class 3 (f_3 − best other logit): path vs straight chord, with more words after it"
    w = wrap_text(t, 40)
    assert w.replace("<br>", " ") == t
    assert all(len(line) <= 40 for line in w.split("<br>"))
    fig = go.Figure(go.Scatter(x=[1], y=[1]))
    fig.update_layout(title=t, xaxis_title="position (fraction of the path length; of the chord for the chord)")
    apply_theme(fig)
    assert "<br>" in fig.layout.title.text and "<br>" in fig.layout.xaxis.title.text
    assert fig.layout.xaxis.automargin and fig.layout.title.automargin


# ------------------------------------------------------------------ 3-D margin surface
def test_zero_level_segments_lie_on_the_zero_line():
    a = np.linspace(-1, 1, 21)
    b = np.linspace(-1, 1, 21)
    A, B = np.meshgrid(a, b)
    z = A + 0.5 * B - 0.13
    xs, ys = zero_level_segments(a, b, z)
    pts = np.array([(x, y) for x, y in zip(xs, ys) if x is not None])
    assert len(pts) > 20
    np.testing.assert_allclose(pts[:, 0] + 0.5 * pts[:, 1] - 0.13, 0, atol=1e-12)
    assert zero_level_segments(a, b, np.ones_like(z)) == ([], [])


def test_margin_surface_figure_from_a_real_surface():
    clf, sec = _linear_section(0.5, 33)
    k = int(sec.plane.info["label"])
    a, b, m = margin_surface(clf, sec.plane, k, sec.extent, 25)
    fig = margin_surface_figure(a, b, m, clf.class_names[k], sec.plane.axis_names, sec.points)
    surf = [t for t in fig.data if t.type == "surface"]
    assert len(surf) == 2
    np.testing.assert_array_equal(np.asarray(surf[0].z), m)
    assert surf[0].cmin == -surf[0].cmax  # white at the boundary
    np.testing.assert_array_equal(np.asarray(surf[1].z), 0)  # the translucent zero plane
    assert surf[1].opacity < 1
    line = [t for t in fig.data if t.type == "scatter3d" and (t.name or "").startswith("boundary of")]
    assert m.min() < 0 < m.max() and line
    assert all(v in (0.0, None) for v in line[0].z)
    assert fig.layout.scene.zaxis.title.text == f"margin of class {clf.class_names[k]}"
    assert fig.layout.scene.xaxis.title.text.startswith("a: ")
    marked = [t for t in fig.data if t.type == "scatter3d" and t.name == "image x0"]
    assert marked and marked[0].z[0] > 0  # the image sits inside its own class
    with pytest.raises(ValueError, match="shape"):
        margin_surface_figure(a, b, m.T[:, :-1], "1")
