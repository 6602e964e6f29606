"""AppTest drives the Compare models page: two bundled models side by side show the same DeepFool boundary
distances as the library computed directly, a cross-section and a curvature spectrum each and the two
comparison figures; a model with another input shape (digits_mlp, 8x8) is refused with a clear message."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, assert_page_ok, zoo
from streamlit.testing.v1 import AppTest

from geometry.boundary import boundary_point
from geometry.images import gallery_image

APP = str(ROOT / "dashboard" / "app.py")
PAGE = "views/compare.py"
MODELS = ["mnist_lenet_relu", "mnist_lenet_gelu"]
CLASS, INDEX = 3, 2


@pytest.fixture(scope="module")
def app():
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.selectbox(key="gallery_class").set_value(CLASS)
    at.number_input(key="gallery_index").set_value(INDEX)
    at.switch_page(PAGE)
    at.session_state["cmp_models"] = MODELS
    at.session_state["cmp_resolution"] = 33
    at.session_state["cmp_k"] = 5
    at.run()
    assert not at.exception, at.exception
    return at


def _metrics(at, label):
    return [m for m in at.metric if m.label == label]


def test_two_models_match_the_library(app):
    assert_page_ok(app)
    assert "Compare models" in [h.value for h in app.header]
    shown = _metrics(app, "Boundary distance")
    assert len(shown) == 2
    for name, metric in zip(MODELS, shown):
        clf = zoo(name)
        bp = boundary_point(clf, gallery_image(clf, CLASS, INDEX).tensor)
        assert metric.value == f"{float(bp.norms()[0]):.3g}"
        assert metric.delta == f"to class {clf.class_names[int(bp.boundary_label[0])]}"
        pred = int(clf.predict(gallery_image(clf, CLASS, INDEX).tensor[None])[0])
        assert [m.value for m in _metrics(app, name)] == [clf.class_names[pred]]
    charts = [c for c in app.get("plotly_chart") if (c.key or "").startswith("cmp_")]
    assert sorted(c.key for c in charts) == ["cmp_distances", "cmp_section_0", "cmp_section_1", "cmp_spectra"]
    spectra = [c for c in charts if "Curvature spectra" in c.proto.spec]
    assert len(spectra) == 1
    spec = json.loads(spectra[0].proto.spec)
    assert [t["name"].split(" (")[0] for t in spec["data"] if t.get("type") == "scatter"] == MODELS
    assert all("fd" in t["name"] for t in spec["data"] if t.get("type") == "scatter")
    table = app.dataframe[0].value
    assert list(table["model"]) == MODELS
    for name, d in zip(MODELS, table["boundary_distance"]):
        clf = zoo(name)
        assert d == pytest.approx(float(boundary_point(clf, gallery_image(clf, CLASS, INDEX).tensor).norms()[0]))


def test_other_input_shape_is_refused_clearly(app):
    app.session_state["cmp_models"] = ["mnist_lenet_gelu", "digits_mlp"]
    app.run()
    assert not app.exception and not app.error
    warn = " ".join(w.value for w in app.warning)
    assert "digits_mlp" in warn and "1x8x8" in warn and "1x28x28" in warn
    assert any("At least two models" in i.value for i in app.info)
    assert len(_metrics(app, "Boundary distance")) == 1


def test_one_model_asks_for_two(app):
    app.session_state["cmp_models"] = ["mnist_lenet_gelu"]
    app.run()
    assert_page_ok(app)
    assert any("at least two models" in i.value for i in app.info)
