"""A real browser against `streamlit run` on 127.0.0.1: the page loads, the prediction chart
renders, and a model switch updates it. Uses Debian's Chromium (installed by `make test`)."""

from __future__ import annotations

import pytest
from browser_support import SHOTS, browser_page


@pytest.fixture(scope="module")
def page(server):
    with browser_page(server, 1400, 1000) as pg:
        yield pg


def choose(page, label: str, option: str) -> None:
    """Pick an option of a Streamlit selectbox identified by its label."""
    page.get_by_role("combobox", name=label).first.click()
    page.get_by_role("option", name=option, exact=True).first.click()


def test_shell_loads_predicts_and_switches_model(page):
    page.get_by_text("Step 1 of").first.wait_for()  # the app opens on the lesson
    page.get_by_role("link", name="Overview").first.click()
    page.get_by_text("Predicted class").first.wait_for()
    page.locator(".js-plotly-plot .bars, .js-plotly-plot .barlayer").first.wait_for()
    assert page.get_by_text("Top-5 class probabilities").count() >= 1
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)
    choose(page, "Model", "mnist_lenet_relu")
    page.get_by_text("mnist_lenet_relu: input").first.wait_for()
    page.get_by_text("piecewise linear").first.wait_for()
    page.locator(".js-plotly-plot .barlayer").first.wait_for()
    assert page.locator("text=Traceback").count() == 0
    page.screenshot(path=str(SHOTS / "overview_relu.png"), full_page=True)


PAGES = [  # (navigation link, heading, text that appears once the page's analysis has been computed)
    ("Curvature", "Principal curvatures of the decision boundary", "Boundary between"),
    ("Cross-sections", "Cross-sections of the decision boundary", None),
    ("Paths", "Connecting paths inside a classification region", "Verified path"),
    ("Vulnerability", "Curvature and vulnerability", None),
]


@pytest.mark.parametrize("link,heading,done", PAGES, ids=[p[0] for p in PAGES])
def test_analysis_page_renders(page, link, heading, done):
    page.get_by_role("link", name=link).first.click()
    page.get_by_role("heading", name=heading).first.wait_for(timeout=240_000)
    if done:
        page.get_by_text(done).first.wait_for(timeout=240_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=240_000)
    page.wait_for_timeout(1000)
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.locator("text=Traceback").count() == 0
    page.screenshot(path=str(SHOTS / f"{link.lower()}.png"), full_page=True)
