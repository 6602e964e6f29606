"""AppTest drives the Cross-sections page: flat and curved views render by default, every plane type
renders, the ReLU model says it uses finite differences, and inspecting a point shows the model's
prediction there (the same as a direct call)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import ROOT, zoo, assert_page_ok
from streamlit.testing.v1 import AppTest

from geometry.images import gallery_image
from geometry.sections import make_plane

APP = str(ROOT / "dashboard" / "app.py")
PAGE = "views/sections.py"
RES = 33  # small grids keep the page fast under test


@pytest.fixture(scope="module")
def app():
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, at.exception
    return at


def _charts(at):
    return [c for c in at.get("plotly_chart")]


def test_default_flat_and_curved_views(app):
    assert_page_ok(app)
    heads = [h.value for h in app.subheader]
    assert "Valid images: towards the boundary + random in-range direction" in heads
    assert "Curved: normal + top positive curvature" in heads
    caps = " ".join(c.value for c in app.caption)
    assert "model evaluations (adaptive" in caps and "Curvature directions: **exact** estimator" in caps
    assert len(_charts(app)) >= 4  # two sections, the inspected image and its probabilities
    assert [m.value for m in app.metric if m.label == "Prediction at this point"]


@pytest.mark.parametrize("label", [
    "Flat: normal + random tangent", "Curved: normal + top negative curvature", "Two random directions", "Adversarial (DeepFool) + random",
    "Adversarial (FGSM) + random", "Adversarial (PGD) + random", "Towards another image + random",
    "Through two more images"])
def test_every_plane_type_renders(app, label):
    app.select_slider(key="sec_resolution").set_value(RES)
    app.selectbox(key="sec_plane_left").set_value(label)
    app.run()
    assert_page_ok(app)
    assert label in [h.value for h in app.subheader]
    assert sum(f"{RES}x{RES} grid" in c.value for c in app.caption) == 2  # both views computed


def test_npy_plane_from_uploads(app):
    app.select_slider(key="sec_resolution").set_value(RES)
    app.selectbox(key="sec_plane_left").set_value("Two uploaded directions (.npy)")
    app.run()
    assert_page_ok(app)
    assert any("Upload two .npy arrays" in i.value for i in app.info)
    rng = np.random.default_rng(0)
    for key in ("sec_npy_u", "sec_npy_v"):
        buf = io.BytesIO()
        np.save(buf, rng.normal(size=(28, 28)).astype(np.float32))
        [u for u in app.get("file_uploader") if u.key == key][0].upload(f"{key}.npy", buf.getvalue(),
                                                                           "application/octet-stream")
    app.run()
    assert_page_ok(app)
    assert "Two uploaded directions (.npy)" in [h.value for h in app.subheader]
    assert sum(f"{RES}x{RES} grid" in c.value for c in app.caption) == 2


def test_inspect_a_point_shows_the_models_prediction(app):
    app.select_slider(key="sec_resolution").set_value(RES)
    app.selectbox(key="sec_plane_left").set_value("Flat: normal + random tangent")
    app.run()
    app.session_state["sec_inspect_side"] = "left"
    app.number_input(key="sec_inspect_a").set_value(2.5)
    app.number_input(key="sec_inspect_b").set_value(-0.5)
    app.run()
    assert_page_ok(app)
    clf = zoo("mnist_lenet_gelu")
    plane = make_plane(clf, gallery_image(clf, 0, 0).tensor, "normal,random")
    expected = clf.class_names[int(clf.predict(plane.point(2.5, -0.5).unsqueeze(0))[0])]
    shown = [m.value for m in app.metric if m.label == "Prediction at this point"]
    assert shown == [expected]


def test_inspect_panel_moves_to_the_other_plane(app):
    """The inspect result sits under the plot it belongs to: asking for the right plane moves it there."""
    app.select_slider(key="sec_resolution").set_value(RES)
    app.run()
    app.button(key="sec_inspect_here_right").click().run()
    assert_page_ok(app)
    assert app.session_state["sec_inspect_side"] == "right"
    assert len([m for m in app.metric if m.label == "Prediction at this point"]) == 1
    assert "sec_inspect_here_left" in [b.key for b in app.button]


def test_3d_margin_surface_toggle(app):
    app.select_slider(key="sec_resolution").set_value(RES)
    app.toggle(key="sec_3d").set_value(True)
    app.run()
    assert_page_ok(app)
    keys = [c.key for c in app.get("plotly_chart") if getattr(c, "key", None)]
    assert "sec_surface_left" in keys and "sec_surface_right" in keys
    app.toggle(key="sec_3d").set_value(False).run()


def test_relu_model_uses_finite_differences():
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.sidebar.selectbox(key="model_choice").set_value("mnist_lenet_relu").run()
    at.switch_page(PAGE)
    at.session_state["sec_resolution"] = RES
    at.run()
    assert_page_ok(at)
    caps = " ".join(c.value for c in at.caption)
    assert "**fd** estimator" in caps and "piecewise-linear" in caps
