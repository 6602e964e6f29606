"""AppTest drives the Paths page: by default a pair whose straight chord leaves the class (the same pair and
path as the library finds directly); an easy pair whose chord stays inside; a verified path between two
gallery images of the sidebar's class with the walk, margin and plane views; the adversarial option (chord leaves the region, anchors); a budget
too small reports "No verified path found"; the many-pairs statistics; no page ever shows a traceback."""

from __future__ import annotations

import pytest
from conftest import ROOT, zoo, assert_page_ok
from streamlit.testing.v1 import AppTest

from geometry.images import gallery_image
from geometry.paths import connecting_path, gallery_chord_scan

APP = str(ROOT / "dashboard" / "app.py")
PAGE = "views/paths.py"
RES = 33  # small plane grids keep the page fast under test


@pytest.fixture(scope="module")
def app():
    at = AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.selectbox(key="gallery_class").set_value(7)
    at.number_input(key="gallery_index").set_value(4)
    at.switch_page(PAGE)
    at.session_state["paths_resolution"] = RES
    at.run()
    assert not at.exception, at.exception
    return at


def _metric(at, label):
    return [m.value for m in at.metric if m.label == label][0]


def _delta(at, label):
    return [m.delta for m in at.metric if m.label == label][0]


LEAVES = "A pair whose straight line leaves the class (the interesting case)"
EASY = "An easy pair (the straight line stays inside)"


def test_default_pair_leaves_the_class(app):
    assert_page_ok(app)
    assert app.radio(key="paths_mode").value == LEAVES
    clf = zoo("mnist_lenet_gelu")
    x1 = gallery_image(clf, 7, 4).tensor
    scan = gallery_chord_scan(clf, x1, 7).leaving()
    assert len(scan) >= 1
    partner = int(scan.second[0])
    direct = connecting_path(clf, x1, gallery_image(clf, 7, partner).tensor)
    assert direct.statistics["chord_outside_fraction"] > 0
    assert _metric(app, "Connected") == "yes" and _delta(app, "Connected") == "proven"
    assert _metric(app, "Anchors") == str(direct.n_anchors) and direct.n_anchors >= 1
    assert _metric(app, "Model evaluations") == f"{direct.evaluations:,}"
    assert float(_metric(app, "Chord outside region").rstrip("%")) > 0
    assert app.selectbox(key="paths_leave_pick").value == 0
    assert any("leaves class 7" in m.value and "stays inside" in m.value for m in app.markdown)
    keys = {c.key for c in app.get("plotly_chart")}
    assert {"paths_margin_fig", "paths_plane_fig", "paths_anchor_fig"} <= keys


def test_easy_pair_stays_inside(app):
    app.radio(key="paths_mode").set_value(EASY)
    app.run()
    assert_page_ok(app)
    assert _metric(app, "Connected") == "yes"
    assert _metric(app, "Chord outside region") == "0.0%"
    assert _metric(app, "Anchors") == "0"


def test_same_class_path_walk_and_plane(app):
    app.radio(key="paths_mode").set_value("Another gallery image of the same class")
    app.run()
    assert_page_ok(app)
    assert "Connecting paths inside a classification region" in [h.value for h in app.header]
    assert _metric(app, "Connected") == "yes" and _delta(app, "Connected") == "proven"
    assert any("Verified path in class 7, proven on" in s.value for s in app.success)
    # the same numbers as a direct call of the library
    clf = zoo("mnist_lenet_gelu")
    direct = connecting_path(clf, gallery_image(clf, 7, 4).tensor, gallery_image(clf, 7, 5).tensor)
    assert _metric(app, "Anchors") == str(direct.n_anchors)
    assert _metric(app, "Model evaluations") == f"{direct.evaluations:,}"
    heads = [h.value for h in app.subheader]
    assert "Images along the path" in heads
    # the margin and the plane of the chord side by side, first on the page
    assert {"paths_margin_fig", "paths_plane_fig"} <= {c.key for c in app.get("plotly_chart")}
    assert len(app.get("plotly_chart")) >= 5  # anchors, walk image, walk probabilities, margin, plane
    app.slider(key="paths_walk").set_value(40)
    app.run()
    assert_page_ok(app)
    assert any("step 40" in str(c.proto.spec) for c in app.get("plotly_chart"))


def test_adversarial_end_needs_anchors(app):
    app.radio(key="paths_mode").set_value("An image of another class pushed into this class")
    app.run()
    app.selectbox(key="paths_src_class").set_value(5)
    app.number_input(key="paths_src_index").set_value(11)
    app.selectbox(key="paths_verification").set_value("sampled (local slope estimate, faster)")
    app.run()
    assert_page_ok(app)
    assert _metric(app, "Connected") == "yes"
    assert _delta(app, "Connected") == "sampled, not proven"  # the sampled check never claims a proof
    assert any("not proven" in i.value for i in app.info) and not app.success
    assert int(_metric(app, "Anchors")) >= 1
    assert float(_metric(app, "Chord outside region").rstrip("%")) > 0
    assert any("pushed into class 7" in c.value for c in app.caption)


def test_tiny_budget_reports_no_path(app):
    app.slider(key="paths_max_anchors").set_value(1)
    app.run()
    assert_page_ok(app)
    assert _metric(app, "Connected") == "no"
    assert any("No verified path found" in w.value for w in app.warning)
    app.slider(key="paths_max_anchors").set_value(16)
    app.radio(key="paths_mode").set_value("Another gallery image of the same class")
    app.run()
    assert_page_ok(app)


def test_many_pairs_statistics(app):
    app.slider(key="paths_npairs").set_value(3)
    app.button(key="paths_run_stats").click()
    app.run()
    assert_page_ok(app)
    assert _metric(app, "Pairs connected").endswith("/ 3")
    assert len(app.dataframe) == 1
