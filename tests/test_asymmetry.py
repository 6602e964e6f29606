"""Curvature asymmetry over many images (geometry/asymmetry.py): the mean sorted spectrum, its bootstrap band and
the sign fractions against closed-form curvatures (spheres, quadratics), exact against finite differences on a
smooth network, the JSON contract, the CLI and the Curvature page's control."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from analytic import quadratic_classifier, quadratic_curvatures, sphere_classifier, tiny_cnn
from conftest import ROOT, assert_page_ok, zoo

from geometry.asymmetry import (ENTRY_KEYS, LOCATION_KEYS, RESULT_KEYS, STEP_FACTORS, curvature_asymmetry,
                                resolve_estimators, spectrum_statistics)
from geometry.boundary import boundary_point
from geometry.errors import GeometryError
from geometry.operators import default_step
from geometry.subspace import paper_points

DIM = 16
R = 2.0


def _sphere_images(n_in: int, n_out: int, centre: bool = False, seed: int = 0) -> torch.Tensor:
    """Images at radii 0.4R..0.7R (inside) and 1.4R..1.8R (outside) in random directions, optionally the centre."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n_in + n_out, DIM, generator=g, dtype=torch.float64)
    u = u / u.norm(dim=1, keepdim=True)
    r = torch.cat([0.4 + 0.3 * torch.rand(n_in, generator=g, dtype=torch.float64),
                   1.4 + 0.4 * torch.rand(n_out, generator=g, dtype=torch.float64)]) * R
    x = u * r[:, None]
    if centre:
        x = torch.cat([x, torch.zeros(1, DIM, dtype=torch.float64)])
    return x


# ------------------------------------------------------------------ statistics
def test_statistics_by_hand():
    k = 2
    S = np.array([[3.0, 1.0, -1.0, -2.0],    # sum +1: mostly positive
                  [1.0, 0.5, -0.5, -1.0],    # sum 0: neither
                  [0.5, -0.1, -1.0, -3.0]])  # sum -3.6: mostly negative
    st = spectrum_statistics(S, k, seed=0)
    assert st["mean"] == pytest.approx(S.mean(0).tolist())
    assert st["mostly_positive"] == pytest.approx(1 / 3) and st["mostly_negative"] == pytest.approx(1 / 3)
    assert st["positive_values"] == pytest.approx(5 / 12)
    assert st["mean_top"] == pytest.approx(np.mean([3, 1, 1, 0.5, 0.5, -0.1]))
    assert st["mean_abs_bottom"] == pytest.approx(np.mean([1, 2, 0.5, 1, 1, 3]))
    assert st["asymmetry_ratio"] == pytest.approx(st["mean_top"] / st["mean_abs_bottom"])
    for lo, m, hi in zip(st["band_low"], st["mean"], st["band_high"]):
        assert lo < m < hi  # three different points: a real band around the mean
    # resample means cannot leave the range of the data
    assert np.all(np.array(st["band_low"]) >= S.min(0) - 1e-12)
    assert np.all(np.array(st["band_high"]) <= S.max(0) + 1e-12)
    lo_r, hi_r = st["asymmetry_ratio_band"]
    assert lo_r <= st["asymmetry_ratio"] <= hi_r and lo_r < hi_r
    # same seed, same band
    assert spectrum_statistics(S, k, seed=0)["band_low"] == st["band_low"]
    empty = spectrum_statistics(np.zeros((0, 4)), k)
    assert empty["mean"] == [] and empty["asymmetry_ratio"] is None and empty["mostly_positive"] is None


def test_band_narrows_with_more_points():
    rng = np.random.default_rng(1)
    few = spectrum_statistics(rng.normal(size=(10, 4)), 2)
    many = spectrum_statistics(rng.normal(size=(1000, 4)), 2)
    width = lambda s: np.array(s["band_high"]) - np.array(s["band_low"])  # noqa: E731
    assert np.all(width(many) < width(few) / 3)
    # about 1.96 standard errors each side for normal data
    assert np.allclose(width(many), 2 * 1.96 / np.sqrt(1000), rtol=0.2)


# ------------------------------------------------------------------ closed forms
@pytest.mark.parametrize("estimator", ["exact", "fd"])
def test_sphere_from_inside_band_collapses(estimator):
    clf = sphere_classifier(R=R, dim=DIM)
    x = _sphere_images(6, 0, centre=True)
    res = curvature_asymmetry(clf, images=x, k=3, estimators=(estimator,), steps=[0.3] if estimator == "fd" else None,
                              locations="boundary")
    (e,) = res.entries
    d = e.to_dict()
    assert d["points_used"] == 6 and d["points_dropped"] == 1 and d["dropped_search"] == 1  # the centre: no gradient
    assert np.allclose(d["mean"], -1 / R, atol=1e-9)
    # every point has the same spectrum (to rounding): the band collapses onto it
    assert np.allclose(d["band_low"], -1 / R, atol=1e-9) and np.allclose(d["band_high"], -1 / R, atol=1e-9)
    assert max(np.array(d["band_high"]) - np.array(d["band_low"])) < 1e-9
    assert d["mostly_negative"] == 1.0 and d["mostly_positive"] == 0.0 and d["positive_values"] == 0.0
    assert d["asymmetry_ratio"] == pytest.approx(-1.0)
    assert d["converged"] == 6 and e.spectra.shape == (6, 6)
    assert sorted(e.image_index.tolist()) == list(range(6))


def test_sphere_mixed_sides_fractions_and_band():
    clf = sphere_classifier(R=R, dim=DIM)
    n_in, n_out = 5, 3
    x = _sphere_images(n_in, n_out, seed=2)
    res = curvature_asymmetry(clf, images=x, k=2, estimators=("exact",), locations="both", seed=3)
    b = res.entry("exact", "boundary").to_dict()
    # inside images see -1/R, outside ones +1/R, in every direction
    exact_mean = (n_out - n_in) / (n_in + n_out) / R
    assert np.allclose(b["mean"], exact_mean, atol=1e-9)
    assert all(lo <= exact_mean <= hi for lo, hi in zip(b["band_low"], b["band_high"]))
    assert b["band_low"][0] < exact_mean < b["band_high"][0]  # points differ: a real band
    assert b["mostly_positive"] == pytest.approx(n_out / 8) and b["mostly_negative"] == pytest.approx(n_in / 8)
    assert b["positive_values"] == pytest.approx(n_out / 8)
    # inside: the level set through p = x + 0.8 r is a sphere of radius |p|: -1/|p| from inside, +1/|p| outside
    ins = res.entry("exact", "inside")
    z, kk, _, ok = paper_points(clf, x)
    assert int(ok.sum()) == 8 == ins.spectra.shape[0]
    radius = z.reshape(len(z), -1).norm(dim=1).numpy()
    expect = np.where(kk.numpy() == 1, -1.0, 1.0) / radius
    assert np.allclose(ins.spectra, expect[:, None], atol=1e-9)
    assert np.allclose(ins.stats["mean"], expect.mean(), atol=1e-9)
    # DeepFool's flat steps overshoot a ball seen from inside, so x + 0.8 r can already be across: counted
    across = int(np.sum((radius < R) != (kk.numpy() == 1)))
    assert res.locations["inside"]["past_boundary"] == across and across > 0


def test_quadratic_mean_spectrum_matches_closed_form():
    rng = np.random.default_rng(0)
    d, k = 12, 3
    A = np.diag(np.r_[[2.0, 1.2, 0.7, 0.3], np.zeros(4), [-0.4, -0.9, -1.5, -2.5]])
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    A = Q @ A @ Q.T
    b, c = rng.normal(size=d), 0.5
    clf = quadratic_classifier(A, b, c)
    x = torch.as_tensor(rng.normal(size=(12, d)))
    res = curvature_asymmetry(clf, images=x, k=k, estimators=("exact", "fd"), steps=[0.7], locations="boundary",
                              method="lanczos")
    bp = boundary_point(clf, x)
    for e in res.entries:
        rows = []
        for i in e.image_index:
            kap = quadratic_curvatures(A, b, bp.point[i].numpy(), int(bp.side_label[i]))
            rows.append(np.r_[kap[:k], kap[-k:]])
        rows = np.array(rows)
        scale = np.abs(rows).max()
        assert np.allclose(e.spectra, rows, atol=1e-6 * scale), e.estimator  # fd is exact on a quadratic
        st = e.stats
        assert np.allclose(st["mean"], rows.mean(0), atol=1e-6 * scale)
        exact_mean = rows.mean(0)
        assert np.all(np.array(st["band_low"]) <= exact_mean + 1e-9)
        assert np.all(exact_mean <= np.array(st["band_high"]) + 1e-9)
        assert st["mostly_positive"] == pytest.approx(np.mean(rows.sum(1) > 0))
        assert st["mostly_negative"] == pytest.approx(np.mean(rows.sum(1) < 0))
        assert st["positive_values"] == pytest.approx(np.mean(rows > 0))
        assert st["asymmetry_ratio"] == pytest.approx(rows[:, :k].mean() / np.abs(rows[:, k:]).mean(), rel=1e-6)
        if e.estimator == "exact":  # (fd counts as non-linear: Lanczos' value criterion needs a longer history)
            assert e.converged == e.spectra.shape[0]


def test_exact_and_fd_agree_on_a_smooth_network_at_small_h():
    clf = tiny_cnn("softplus", side=6, seed=1)
    x = torch.rand(8, *clf.input_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = curvature_asymmetry(clf, images=x, k=4, estimators=("exact", "fd"), steps=[1e-3], locations="both")
    for loc in ("boundary", "inside"):
        ex, fd = res.entry("exact", loc), res.entry("fd", loc)
        assert ex.spectra.shape[0] >= 4 and np.array_equal(ex.image_index, fd.image_index)
        scale = np.abs(ex.spectra).max()
        assert scale > 0
        assert np.allclose(ex.spectra, fd.spectra, atol=1e-4 * scale)
        assert np.allclose(ex.stats["mean"], fd.stats["mean"], atol=1e-4 * scale)
    # and Lanczos gives the dense spectrum's ends
    lz = curvature_asymmetry(clf, images=x, k=4, estimators=("exact",), locations="boundary", method="lanczos")
    full = res.entry("exact", "boundary")
    assert np.allclose(lz.entries[0].spectra, full.spectra, atol=1e-6 * np.abs(full.spectra).max())
    assert lz.entries[0].method == "lanczos" and full.method == "full"


def test_piecewise_linear_exact_is_zero_without_products():
    clf = tiny_cnn("relu", side=6, seed=1, pooling="max")
    x = torch.rand(4, *clf.input_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    if clf.piecewise_linear is not True:
        pytest.skip("tiny relu CNN not recognised as piecewise linear")
    res = curvature_asymmetry(clf, images=x, k=2, estimators=("exact",), locations="boundary")
    e = res.entries[0]
    assert e.hvp_count == 0 and np.all(e.spectra == 0) and "piecewise linear" in e.warning


# ------------------------------------------------------------------ settings
def test_automatic_estimators_and_steps(relu_model, gelu_model):
    h = default_step(relu_model)
    assert resolve_estimators(relu_model) == [("fd", f * h) for f in STEP_FACTORS]
    assert resolve_estimators(gelu_model) == [("exact", None)]
    assert resolve_estimators(gelu_model, ("exact", "fd")) == [("exact", None), ("fd", default_step(gelu_model))]
    assert resolve_estimators(gelu_model, "both", steps=[0.1, 0.2]) == [("exact", None), ("fd", 0.1), ("fd", 0.2)]
    with pytest.raises(GeometryError, match="add 'fd'"):
        resolve_estimators(gelu_model, ("exact",), steps=[0.1])
    with pytest.raises(GeometryError, match="positive"):
        resolve_estimators(relu_model, ("fd",), steps=[-1])
    with pytest.raises(GeometryError, match="'exact' and/or 'fd'"):
        resolve_estimators(relu_model, ("hessian",))


def test_bad_arguments_are_clear():
    clf = sphere_classifier(R=R, dim=DIM)
    x = _sphere_images(2, 0)
    with pytest.raises(GeometryError, match="use k <= 7"):
        curvature_asymmetry(clf, images=x, k=8)
    with pytest.raises(GeometryError, match="locations"):
        curvature_asymmetry(clf, images=x, k=2, locations=("outside",))
    with pytest.raises(GeometryError, match="method"):
        curvature_asymmetry(clf, images=x, k=2, method="arpack")
    with pytest.raises(GeometryError, match="points"):
        curvature_asymmetry(zoo("digits_mlp"), points=0)


# ------------------------------------------------------------------ JSON contract
def test_to_dict_is_json_with_the_documented_keys():
    clf = zoo("digits_mlp")
    calls = []
    res = curvature_asymmetry(clf, points=6, k=3, progress=lambda f, m: calls.append((f, m)))
    d = json.loads(json.dumps(res.to_dict()))
    assert tuple(d) == RESULT_KEYS
    assert d["points"] == 6 and d["k"] == 3 and d["split"] == "held_out" and d["estimators"] == ["exact"]
    assert set(d["locations"]) == {"boundary", "inside"}
    for info in d["locations"].values():
        assert tuple(info) == LOCATION_KEYS
    assert len(d["results"]) == 2
    for e in d["results"]:
        assert tuple(e) == ENTRY_KEYS
        assert len(e["mean"]) == len(e["band_low"]) == len(e["band_high"]) == 6
        assert e["points_used"] + e["points_dropped"] == 6
        assert e["hvp_count"] > 0 and e["seconds"] >= 0
    arrays = res.arrays()
    assert arrays["boundary_exact_spectra"].shape == (d["results"][0]["points_used"], 6)
    # progress: once per point and location, ending at 1
    fr = [f for f, _ in calls]
    assert fr == sorted(fr) and fr[-1] == 1.0 and len(calls) >= 12


# ------------------------------------------------------------------ CLI
def _cli(*args):
    from geometry.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors exit (with one error: line)
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def test_cli_json_and_text():
    code, out, err = _cli("asymmetry", "--model", "digits_mlp", "--points", "5", "--k", "3", "--estimator", "both",
                          "--steps", "0.2,0.4", "--location", "boundary", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert tuple(d) == RESULT_KEYS
    assert [(e["estimator"], e["step"]) for e in d["results"]] == [("exact", None), ("fd", 0.2), ("fd", 0.4)]
    assert all(e["location"] == "boundary" for e in d["results"])
    lib = curvature_asymmetry(zoo("digits_mlp"), points=5, k=3, estimators=("exact",), locations="boundary")
    assert np.allclose(d["results"][0]["mean"], lib.entries[0].stats["mean"], rtol=1e-5, atol=1e-7)
    code, out, err = _cli("asymmetry", "--model", "digits_mlp", "--points", "3", "--k", "2", "--location", "inside")
    assert code == 0, err
    assert "mostly +" in out and "inside" in out and "ratio" in out


@pytest.mark.parametrize("args, needle", [
    (["--points", "0"], "--points"),
    (["--k", "-1"], "--k"),
    (["--steps", "a,b"], "--steps"),
    (["--steps", "0.1", "--estimator", "exact"], "--steps"),
    (["--location", "outside"], "invalid choice"),
    (["--estimator", "hessian"], "invalid choice"),
])
def test_cli_bad_options(args, needle, monkeypatch):
    called = []
    monkeypatch.setattr("geometry.commands._common.load_classifier", lambda *a, **k: called.append(a))
    code, out, err = _cli("asymmetry", "--model", "digits_mlp", *args)
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1 and needle in err, err
    assert called == []  # refused before the model loads


# ------------------------------------------------------------------ app
def test_curvature_page_runs_the_asymmetry(monkeypatch):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.run()
    at.sidebar.selectbox(key="model_choice").set_value("digits_mlp").run()
    at.switch_page("views/curvature.py").run()
    assert_page_ok(at)
    assert "Curvature asymmetry over many images" in [h.value for h in at.subheader]
    charts_before = len(at.get("plotly_chart"))
    at.number_input(key="curv_asym_points").set_value(4)
    at.radio(key="curv_asym_location").set_value("boundary")
    at.button(key="curv_asym_run").click().run()
    assert_page_ok(at)
    assert len(at.get("plotly_chart")) == charts_before + 1
    table = at.dataframe[-1].value
    assert len(table) == 1 and int(table["points used"].iloc[0]) + int(table["dropped"].iloc[0]) == 4
    # a rerun (another setting of the single-image analysis) keeps the result on the page
    at.run()
    assert_page_ok(at)
    assert len(at.get("plotly_chart")) == charts_before + 1


def test_figure_draws_each_mean_with_its_band():
    from dashboard.figures.curvature import asymmetry_figure, asymmetry_table

    clf = sphere_classifier(R=R, dim=DIM)
    res = curvature_asymmetry(clf, images=_sphere_images(4, 3), k=3, estimators=("exact", "fd"), steps=[0.2, 0.4],
                              locations="both").to_dict()
    fig = asymmetry_figure(res)
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(lines) == 6 and len(bands) == 12  # 3 (estimator, step) x 2 locations; a band per end
    names = [t.name for t in lines]
    assert any("exact, at the boundary point" in n for n in names) and any("fd h = 0.4, inside" in n for n in names)
    for t, e in zip(lines, res["results"]):
        ys = [y for y in t.y if y is not None]
        assert np.allclose(ys, e["mean"])
    assert any(s.type == "line" and s.y0 == 0 and s.y1 == 0 for s in fig.layout.shapes)  # the zero line
    rows = asymmetry_table(res)
    assert len(rows) == 6 and rows[0]["points used"] == 7


@pytest.mark.parametrize("estimator", ["exact", "fd"])
def test_full_spectrum_values_alone_match_its_eigenpairs(estimator):
    # the asymmetry's dense path asks full_spectrum for values only (Householder reflection, eigvalsh)
    from geometry.lanczos import full_spectrum
    from geometry.operators import curvature_operator

    clf = tiny_cnn("tanh", side=6, seed=2)
    x = torch.rand(1, *clf.input_shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    b = boundary_point(clf, x)
    op = curvature_operator(clf, b.point, int(b.side_label[0]), int(b.boundary_label[0]), estimator, 0.05)
    ref = full_spectrum(op, exclude=op.normal[:, None]).values
    res = full_spectrum(op, exclude=op.normal, vectors=False)
    vals = res.values
    assert res.vectors is None and res.residuals is None
    assert vals.shape == (clf.dim - 1,)
    assert np.allclose(vals, ref, atol=1e-10 * np.abs(ref).max())
    # several excluded vectors (the complement by QR) and none
    X = torch.stack([op.normal, torch.roll(op.normal, 3)], 1)
    assert np.allclose(full_spectrum(op, exclude=X, vectors=False).values, full_spectrum(op, exclude=X).values,
                       atol=1e-10 * np.abs(ref).max())
    assert np.allclose(full_spectrum(op, vectors=False).values, full_spectrum(op).values,
                       atol=1e-10 * np.abs(ref).max())
