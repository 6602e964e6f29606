"""A real browser against `streamlit run` on 127.0.0.1: the page loads, the prediction chart
renders, and a model switch updates it. Uses Debian's Chromium (installed by `make test`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(os.environ.get("BROWSER_SHOTS", "/tmp/geometry-browser-shots"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make test`, which installs Debian's chromium")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.address=127.0.0.1",
                             f"--server.port={port}", "--server.headless=true"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("streamlit did not answer its health endpoint within 90 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(90_000)
        pg.goto(server)
        yield pg
        browser.close()


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
