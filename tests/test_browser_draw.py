"""A real browser (1280x720) against `streamlit run`: clicking a gallery thumbnail selects that
image, and drawing strokes on the Draw canvas with the mouse changes the prediction (a vertical
line reads as 1; after Clear, a circle reads as 0). Uses Debian's Chromium (installed by `make test`)."""

from __future__ import annotations

import math

import pytest
from browser_support import SHOTS, browser_page

WAIT_MS = 90_000


@pytest.fixture(scope="module")
def page(server):
    with browser_page(server, 1280, 720, WAIT_MS) as pg:
        yield pg


def no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.locator("text=Traceback").count() == 0


def stroke(page, canvas, points) -> None:
    """Press the mouse at the first point (canvas-relative, in pixels), move through the rest, release."""
    box = canvas.bounding_box()
    x0, y0 = box["x"], box["y"]
    page.mouse.move(x0 + points[0][0], y0 + points[0][1])
    # the canvas' toolbar sits over its top edge until the pointer has been over the canvas a moment
    page.wait_for_timeout(600)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x0 + x, y0 + y, steps=2)
    page.mouse.up()


def canvas(page):
    cv = page.locator("[data-testid='stSidebar'] canvas.upper-canvas").first
    cv.wait_for()
    cv.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    return cv


def test_click_thumbnail_selects_image(page):
    from playwright.sync_api import expect

    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_text("Click a thumbnail to analyse it.").wait_for()
    index = sidebar.get_by_role("spinbutton").first
    expect(index).to_have_value("0")
    points = sidebar.locator(".js-plotly-plot .scatterlayer .point")
    expect(points).to_have_count(40)
    points.nth(0).scroll_into_view_if_needed()
    box = points.nth(11).bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(index).to_have_value("11", timeout=WAIT_MS)
    page.wait_for_timeout(1500)
    no_exception(page)
    page.screenshot(path=str(SHOTS / "gallery_thumbnails.png"))


def test_drawing_changes_the_prediction(page):
    from playwright.sync_api import expect

    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_text("Draw", exact=True).click()
    sidebar.get_by_text("canvas is empty").wait_for()
    cv = canvas(page)
    side = cv.bounding_box()["width"]
    read_as = sidebar.locator("[data-testid='stMetric']").filter(has_text="Drawing read as")
    value = read_as.locator("[data-testid='stMetricValue']")

    stroke(page, cv, [(side / 2, side * 0.15 + k * side * 0.7 / 20) for k in range(21)])
    expect(value).to_have_text("1", timeout=WAIT_MS)
    expect(sidebar.get_by_text("What the model sees")).to_have_count(1)
    expect(sidebar.get_by_text("Conversion:")).to_have_count(1)
    no_exception(page)

    sidebar.get_by_role("button", name="Clear").click()
    sidebar.get_by_text("canvas is empty").wait_for()
    expect(read_as).to_have_count(0)
    cv = canvas(page)
    ring = [(side / 2 + side * 0.27 * math.sin(t), side / 2 - side * 0.33 * math.cos(t))
            for t in (2 * math.pi * k / 48 for k in range(53))]
    stroke(page, cv, ring)
    expect(value).to_have_text("0", timeout=WAIT_MS)
    page.wait_for_timeout(1500)
    no_exception(page)
    page.screenshot(path=str(SHOTS / "draw.png"))
