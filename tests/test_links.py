"""Shareable state: a link restores a page's settings, and a hostile or stale link is ignored, never an error."""

from __future__ import annotations

import pytest
from conftest import ROOT, assert_page_ok
from streamlit.testing.v1 import AppTest

from dashboard.links import parse

APP = str(ROOT / "dashboard" / "app.py")


@pytest.mark.parametrize("raw,default,options,check,expected", [
    ("5", 0, None, None, 5),
    ("5.0", 0, None, None, None),            # an int setting takes ints only
    ("-3", 0, None, lambda v: v >= 0, None),  # below the widget's minimum
    ("nan", 1.0, None, None, None),
    ("inf", 1.0, None, None, None),
    ("1e400", 1.0, None, None, None),
    ("0.25", 1.0, None, None, 0.25),
    ("1", False, None, None, True),
    ("maybe", False, None, None, None),
    ("Two random directions", "x", ["x", "Two random directions"], None, "Two random directions"),
    ("rm -rf /", "x", ["x", "y"], None, None),
    ("x" * 5000, "x", None, None, None),       # absurdly long
    ("3~4", [1], None, None, [3, 4]),
    ("3~q", [1], None, None, None),
])
def test_parse_accepts_only_valid_values(raw, default, options, check, expected):
    assert parse(raw, default, options, None, check) == expected


def _app(params: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=240)
    for k, v in params.items():
        at.query_params[k] = v
    return at


def test_lesson_step_from_the_link_and_back_into_the_url():
    at = _app({"lesson_step": "3"})
    at.run()
    assert_page_ok(at)
    assert any("Step 3 of" in m.value for m in at.markdown)
    at.button(key="lesson_next").click().run()
    assert any("Step 4 of" in m.value for m in at.markdown)
    assert at.query_params["lesson_step"] == ["4"] or at.query_params["lesson_step"] == "4"


def test_hostile_and_stale_params_fall_back_to_defaults():
    at = _app({"lesson_step": "99", "presentation": "<script>", "model": "../../etc/passwd",
               "image": "gallery:99:99999", "sec_seed": "-1"})
    at.run()
    assert_page_ok(at)
    assert any("Step 1 of" in m.value for m in at.markdown)
    assert at.session_state["presentation"] is False
    assert at.sidebar.selectbox(key="model_choice").value == "mnist_lenet_gelu"


def test_cross_section_settings_from_the_link():
    at = _app({"sec_plane_left": "Two random directions", "sec_resolution": "33", "sec_seed": "7",
               "sec_estimator": "not-an-estimator", "sec_extent": "nan"})
    at.switch_page("views/sections.py").run()  # the link opens the page itself
    assert_page_ok(at)
    assert at.session_state["sec_plane_left"] == "Two random directions"
    assert at.session_state["sec_resolution"] == 33 and at.session_state["sec_seed"] == 7
    assert at.session_state["sec_estimator"] == "auto" and at.session_state["sec_extent"] == 3.0
    assert "Two random directions" in [h.value for h in at.subheader]


def test_compare_and_paths_links_outside_the_widgets_limits_are_ignored():
    at = _app({"cmp_models": "mnist_lenet_relu~mnist_lenet_gelu~mnist_lenet_gelu_pgd~digits_mlp~mnist_lenet_relu"})
    at.switch_page("views/compare.py").run()
    assert_page_ok(at)
    assert 2 <= len(at.session_state["cmp_models"]) <= 4
    at = _app({"paths_max_anchors": "100000", "paths_overshoot": "-1e300", "paths_npairs": "-3",
               "paths_seed": "-1", "paths_index2": "-7"})
    at.switch_page("views/paths.py").run()
    assert_page_ok(at)
    assert 1 <= at.session_state["paths_max_anchors"] <= 64 and 0 <= at.session_state["paths_overshoot"] <= 1


def test_presentation_mode_then_next_in_the_lesson():
    at = _app({"lesson_step": "4"})
    at.run()
    at.sidebar.toggle(key="presentation").set_value(True).run()
    assert_page_ok(at)
    at.button(key="lesson_next").click().run()
    assert_page_ok(at)
    assert any("Step 5 of" in m.value for m in at.markdown)
    at.sidebar.toggle(key="presentation").set_value(False).run()
    at.button(key="lesson_back").click().run()
    assert any("Step 4 of" in m.value for m in at.markdown)
