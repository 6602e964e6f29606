"""The classroom in a real browser at 1280x720: the lesson walks all its steps with Next and Back and
every step's figure is on screen without scrolling; a shared link restores model, image and settings;
presentation mode enlarges the figures' fonts; no page shows an exception.

Screenshots of every step go to $BROWSER_SHOTS (and, with LESSON_SHOTS_DIR set, there too: that is how
docs/images/lesson-*.png are made)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from browser_support import CHROMIUM, FLAGS, SHOTS, assert_no_exception, streamlit_server, wait_idle

from dashboard.glossary import TERMS

WIDTH, HEIGHT = 1280, 720
STEPS = 9
MAIN_PLOTS = '[data-testid="stMain"] .js-plotly-plot'


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with streamlit_server() as url, sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        b.app_url = url
        yield b
        b.close()


def _page(browser, path: str = ""):
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    page.set_default_timeout(240_000)
    page.goto(browser.app_url + path)
    return page


def _first_figure_top(page) -> float:
    page.locator(MAIN_PLOTS).first.wait_for(state="visible")
    box = page.locator(MAIN_PLOTS).first.bounding_box()
    assert box is not None
    return box["y"]


def _shot(page, name: str) -> None:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    extra = os.environ.get("LESSON_SHOTS_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)


def test_lesson_walks_every_step_with_a_figure_above_the_fold(browser):
    page = _page(browser)
    page.get_by_text(f"Step 1 of {STEPS}").first.wait_for()
    for step in range(1, STEPS + 1):
        page.get_by_text(f"Step {step} of {STEPS}").first.wait_for()
        wait_idle(page)
        assert_no_exception(page)
        assert page.locator('[data-testid="stMain"] [data-testid="stAlertContentError"]').count() == 0, \
            page.locator('[data-testid="stMain"] [data-testid="stAlertContentError"]').first.inner_text()
        top = _first_figure_top(page)
        assert top < HEIGHT - 150, f"step {step}: the first figure starts at y = {top:.0f}, below the fold"
        assert page.get_by_text("What to notice").count() >= 1
        assert f"lesson_step={step}" in page.url
        _shot(page, f"lesson-{step}")
        if step < STEPS:
            page.get_by_role("button", name="Next").first.click()
    assert page.get_by_role("button", name="Next").first.is_disabled()
    page.get_by_role("button", name="Back").first.click()
    page.get_by_text(f"Step {STEPS - 1} of {STEPS}").first.wait_for()
    wait_idle(page)
    assert f"lesson_step={STEPS - 1}" in page.url
    # a glossary term carries its definition on hover (the title attribute)
    abbr = page.locator("abbr.glossary").first
    assert abbr.get_attribute("title") in {d for _, d in TERMS.values()}
    page.close()


def test_a_shared_link_restores_model_image_and_settings(browser):
    page = _page(browser, "/sections?model=mnist_lenet_relu&image=gallery:7:3&sec_plane_left=Two+random+directions"
                          "&sec_resolution=33&sec_seed=5")
    page.get_by_role("heading", name="Cross-sections of the decision boundary").first.wait_for()
    wait_idle(page)
    assert_no_exception(page)
    assert page.get_by_role("combobox", name="Model").first.input_value() == "mnist_lenet_relu"
    assert page.get_by_role("heading", name="Two random directions").count() >= 1
    main = page.locator('[data-testid="stMain"]').inner_text()
    assert "33x33 grid" in main and "class 7" in main.replace("**", "")
    query = parse_qs(urlparse(page.url).query)
    assert query["model"] == ["mnist_lenet_relu"] and query["image"] == ["gallery:7:3"]
    assert query["sec_seed"] == ["5"] and query["sec_resolution"] == ["33"]
    # the Copy link box holds the same view's link
    page.get_by_role("button", name=re.compile("Copy link")).first.click()
    code = page.locator('[data-testid="stPopoverBody"] code, [data-testid="stPopover"] code').first
    code.wait_for()
    shown = code.inner_text()
    assert "sec_seed=5" in shown and "model=mnist_lenet_relu" in shown and shown.startswith("http://127.0.0.1")
    page.close()
    # a lesson step link opens that step
    page = _page(browser, "/?lesson_step=4")
    page.get_by_text(f"Step 4 of {STEPS}").first.wait_for()
    wait_idle(page)
    assert_no_exception(page)
    page.close()


def _tick_font_px(page) -> float:
    page.locator(f"{MAIN_PLOTS} .xtick text").first.wait_for()
    style = page.locator(f"{MAIN_PLOTS} .xtick text").first.get_attribute("style") or ""
    m = re.search(r"font-size:\s*([\d.]+)px", style)
    assert m, style
    return float(m.group(1))


def test_presentation_mode_enlarges_fonts(browser):
    page = _page(browser, "/overview")
    page.get_by_text("Predicted class").first.wait_for()
    wait_idle(page)
    normal = _tick_font_px(page)
    assert normal >= 14
    page.locator('[data-testid="stSidebar"]').get_by_text("Presentation mode").first.click()
    wait_idle(page)
    page.wait_for_function("() => new URLSearchParams(location.search).get('presentation') === '1'")
    big = _tick_font_px(page)
    assert big >= 20 and big > normal
    assert_no_exception(page)
    _shot(page, "presentation-overview")
    page.close()
