"""AppTest walks the Lesson: every step draws its figure from the model with no error, Next/Back move
one step, and the numbers a step states are the library's own."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT, assert_page_ok, zoo
from streamlit.testing.v1 import AppTest

from geometry.boundary import boundary_point
from geometry.images import gallery_image

APP = str(ROOT / "dashboard" / "app.py")
STEPS = 9


@pytest.fixture(scope="module")
def lesson():
    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    assert_page_ok(at)
    return at


def _step_heading(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("#### Step"))


def _charts(at) -> list:
    return [c for c in at.get("plotly_chart") if (getattr(c, "key", None) or "").startswith("lesson_")
            or not getattr(c, "key", None)]


def test_every_step_draws_its_figure(lesson):
    at = lesson
    seen = []
    for step in range(1, STEPS + 1):
        assert_page_ok(at)
        assert _step_heading(at).startswith(f"#### Step {step} of {STEPS}")
        assert len(at.get("plotly_chart")) >= 1, f"step {step} drew no figure"
        assert any("What to notice" in m.value for m in at.markdown)
        seen.append(_step_heading(at))
        if step < STEPS:
            at.button(key="lesson_next").click().run()
    assert len(set(seen)) == STEPS
    assert at.button(key="lesson_next").disabled
    at.button(key="lesson_back").click().run()
    assert _step_heading(at).startswith(f"#### Step {STEPS - 1} of")


def test_boundary_step_states_the_librarys_distance():
    at = AppTest.from_file(APP, default_timeout=600)
    at.query_params["lesson_step"] = "2"
    at.run()
    assert_page_ok(at)
    text = " ".join(m.value for m in at.markdown)
    shown = float(re.search(r"The change has length \*\*([\d.]+)\*\*", text).group(1))
    clf = zoo("mnist_lenet_gelu")
    expected = float(boundary_point(clf, gallery_image(clf, 0, 0).tensor).norms()[0])
    assert shown == pytest.approx(expected, abs=0.006)  # shown with 3 significant digits
