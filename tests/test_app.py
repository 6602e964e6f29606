"""AppTest drives the shell: it starts on the default model, switches model and image, and a bad
upload shows a clear error while the rest of the user's choices stay."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import ROOT

from geometry.zoo import DEFAULT_MODEL

APP = str(ROOT / "dashboard" / "app.py")


@pytest.fixture()
def app():
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _metric(at):
    return [m.value for m in at.metric if m.label == "Predicted class"][0]


def test_starts_on_default_model_and_image(app):
    assert app.sidebar.selectbox(key="model_choice").value == DEFAULT_MODEL
    assert _metric(app) == "0"
    assert not app.error
    assert any("Computing on" in c.value for c in app.sidebar.caption)


def test_switch_model_and_image(app):
    app.switch_page("views/overview.py").run()
    app.sidebar.selectbox(key="model_choice").set_value("mnist_lenet_relu").run()
    assert any("mnist_lenet_relu" in m.value for m in app.markdown)
    app.sidebar.selectbox(key="gallery_class").set_value(7).run()
    app.sidebar.number_input(key="gallery_index").set_value(4).run()
    assert _metric(app) == "7" and not app.exception
    app.sidebar.selectbox(key="model_choice").set_value("digits_mlp").run()
    assert "digits" in app.sidebar.selectbox(key="gallery_class").label
    assert not app.exception and not app.error


def test_bad_model_upload_shows_error_and_keeps_image(app):
    app.sidebar.selectbox(key="gallery_class").set_value(5).run()
    app.sidebar.selectbox(key="model_choice").set_value("Upload a model file…").run()
    app.sidebar.get("file_uploader")[0].upload("broken.pt", b"garbage bytes", "application/octet-stream")
    app.run()
    errors = [e.value for e in app.sidebar.error]
    assert errors and "not a PyTorch archive" in errors[0]
    assert not app.exception
    assert _metric(app) == "5"  # the default model still classifies the chosen image


def test_image_upload_conversion_and_bad_image(app):
    app.switch_page("views/overview.py").run()
    app.sidebar.radio(key="image_source").set_value("Upload").run()
    paper = np.full((64, 64), 255, dtype=np.uint8)
    paper[10:54, 28:36] = 0
    buf = io.BytesIO()
    Image.fromarray(paper).save(buf, format="PNG")
    uploader = [u for u in app.sidebar.get("file_uploader") if u.key == "image_upload"][0]
    uploader.upload("one.png", buf.getvalue(), "image/png")
    app.run()
    assert _metric(app) == "1"
    assert any("inverted" in c.value for c in app.caption)
    uploader = [u for u in app.sidebar.get("file_uploader") if u.key == "image_upload"][0]
    uploader.set_value(("x.png", b"not a png", "image/png"))
    app.run()
    assert any("not a readable PNG" in e.value for e in app.sidebar.error)
    assert not app.exception
