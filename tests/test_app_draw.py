"""AppTest drives the sidebar's visual image sources: a drawing on the canvas becomes the session's
image (converted like an upload, shown and classified), an empty canvas falls back to the gallery,
Clear empties the canvas, and clicking a gallery thumbnail selects that image.

AppTest cannot move a mouse: the canvas' value and the thumbnail chart's click are sent the way the
browser sends them, as the widget states of the next run (tests/test_browser_draw.py draws with a
real mouse)."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

from conftest import ROOT, assert_page_ok, zoo

from dashboard.gallery import CANVAS_PX, STROKE_PX, drawing_image, has_ink, thumbnail_figure
from geometry.images import load_image

APP = str(ROOT / "dashboard" / "app.py")


def canvas_png(draw) -> bytes:
    """An RGBA PNG like the canvas sends: opaque black background, white strokes of the canvas' width."""
    im = Image.new("RGBA", (CANVAS_PX, CANVAS_PX), (0, 0, 0, 255))
    draw(ImageDraw.Draw(im))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def vertical_line(d):
    d.line([(CANVAS_PX // 2, 30), (CANVAS_PX // 2 + 6, CANVAS_PX - 30)], fill=(255, 255, 255, 255), width=STROKE_PX)


def circle(d):
    d.ellipse([50, 30, CANVAS_PX - 50, CANVAS_PX - 30], outline=(255, 255, 255, 255), width=STROKE_PX)


def nothing(d):
    pass


def _element(at, kind: str, key_part: str):
    found = [e for e in at.sidebar if getattr(e, "type", "") == kind and key_part in e.proto.id]
    assert found, f"no {kind} whose id holds {key_part!r} in the sidebar"
    return found[0]


def send(at, element, **value) -> AppTest:
    """Rerun with ``element``'s widget state set as the browser would set it (JSON), others unchanged."""
    states = at._tree.get_widget_states()
    state = states.widgets.add()
    state.id = element.proto.id
    if "json_value" in value:
        state.json_value = json.dumps(value["json_value"])
    else:
        state.string_value = json.dumps(value["string_value"])
    at._run(states)
    return at


def draw(at, png: bytes | None, objects: int = 1) -> AppTest:
    """What the canvas sends when a stroke ends: Fabric's JSON (one path per stroke) and the PNG."""
    canvas = _element(at, "bidi_component", "draw_canvas")
    data = None if png is None else "data:image/png;base64," + base64.b64encode(png).decode()
    raw = {"objects": [{"type": "Path"}] * objects, "background": "#000000"}
    return send(at, canvas, json_value={"drawing": {"raw": raw, "data": data}})


def click_thumbnail(at, index: int) -> AppTest:
    chart = _element(at, "plotly_chart", "thumbs_")
    point = {"curve_number": 1, "point_number": index % 40, "point_index": index % 40, "customdata": index}
    return send(at, chart, string_value={"selection": {"points": [point], "point_indices": [index % 40],
                                                       "box": [], "lasso": []}})


def drawing_metric(at):
    values = [m.value for m in at.sidebar.metric if m.label == "Drawing read as"]
    return values[0] if values else None


@pytest.fixture()
def app():
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert_page_ok(at)
    return at


def test_conversion_is_the_uploads():
    clf = zoo("mnist_lenet_gelu")
    png = canvas_png(vertical_line)
    img = drawing_image(png, clf)
    same = load_image(png, clf, name="x.png")
    assert np.array_equal(img.tensor.numpy(), same.tensor.numpy()) and img.steps == same.steps
    assert img.source == "drawing" and any("centred" in s for s in img.steps)
    assert img.tensor.shape == (1, 28, 28) and float(img.tensor.max()) > 0.9
    assert not has_ink(canvas_png(nothing)) and drawing_image(canvas_png(nothing), clf) is None
    assert drawing_image(None, clf) is None


def test_drawn_one_and_zero_are_read_and_become_the_image(app):
    app.sidebar.radio(key="image_source").set_value("Draw").run()
    assert_page_ok(app)
    draw(app, canvas_png(vertical_line))
    assert_page_ok(app)
    assert drawing_metric(app) == "1"
    assert app.session_state["_image"].source == "drawing"
    captions = [c.value for c in app.sidebar.caption]
    assert any(c.startswith("Conversion:") and "centred" in c for c in captions)
    assert any("not part of shareable links" in c for c in captions)
    assert len(app.sidebar.get("image")) == 1  # the converted image, as the model sees it
    draw(app, canvas_png(circle), objects=2)
    assert_page_ok(app)
    assert drawing_metric(app) == "0"
    # every page analyses the drawing: the Overview page shows the same prediction
    app.switch_page("views/overview.py").run()
    assert_page_ok(app)
    assert [m.value for m in app.metric if m.label == "Predicted class"] == ["0"]


def test_empty_canvas_falls_back_to_the_gallery(app):
    app.sidebar.selectbox(key="gallery_class").set_value(3).run()
    app.sidebar.radio(key="image_source").set_value("Draw").run()
    assert_page_ok(app)
    infos = [i.value for i in app.sidebar.info]
    assert any("canvas is empty" in i for i in infos)
    assert drawing_metric(app) is None
    assert app.session_state["_image"].source == "gallery mnist, class 3, #0"
    draw(app, canvas_png(nothing), objects=0)        # the toolbar's reset sends an empty drawing
    assert_page_ok(app)
    assert any("canvas is empty" in i.value for i in app.sidebar.info)
    draw(app, None, objects=1)                       # strokes but no image yet
    assert_page_ok(app)
    assert app.session_state["_image"].source.startswith("gallery")


def test_clear_empties_the_canvas_and_gallery_choice_survives(app):
    app.sidebar.selectbox(key="gallery_class").set_value(7).run()
    app.sidebar.number_input(key="gallery_index").set_value(4).run()
    app.sidebar.radio(key="image_source").set_value("Draw").run()
    draw(app, canvas_png(vertical_line))
    assert drawing_metric(app) == "1"
    app.sidebar.button(key="draw_clear").click().run()
    assert_page_ok(app)
    assert drawing_metric(app) is None and any("canvas is empty" in i.value for i in app.sidebar.info)
    draw(app, canvas_png(vertical_line))
    assert drawing_metric(app) == "1"
    app.sidebar.radio(key="image_source").set_value("Gallery").run()
    assert_page_ok(app)
    assert app.session_state["_image"].source == "gallery mnist, class 7, #4"


def test_clicking_a_thumbnail_selects_it(app):
    app.sidebar.selectbox(key="gallery_class").set_value(2).run()
    click_thumbnail(app, 13)
    assert_page_ok(app)
    assert app.sidebar.number_input(key="gallery_index").value == 13
    assert app.session_state["_image"].source == "gallery mnist, class 2, #13"
    assert app.query_params["image"] in ("gallery:2:13", ["gallery:2:13"])
    app.sidebar.button(key="thumbs_next").click().run()
    assert app.sidebar.number_input(key="gallery_index").value == 40
    click_thumbnail(app, 57)
    assert app.sidebar.number_input(key="gallery_index").value == 57
    assert not app.sidebar.button(key="thumbs_prev").disabled


def test_thumbnail_figure_is_the_gallery():
    from geometry.data import held_out

    fig = thumbnail_figure("mnist", 4, 1, 45)
    image, markers = fig.data
    assert image.source.startswith("data:image/png;base64,")
    sheet = np.asarray(Image.open(io.BytesIO(base64.b64decode(image.source.split(",", 1)[1]))).convert("L"))
    split = held_out("mnist")
    members = np.flatnonzero(split.y == 4)
    assert list(markers.customdata) == list(range(40, 80))
    # the thumbnail under marker k is held-out image 40 + k of class 4
    for k in (0, 9, 39):
        x, y = int(markers.x[k] + 0.5 - 14), int(markers.y[k] + 0.5 - 14)
        tile = sheet[y:y + 28, x:x + 28].astype(np.float32) / 255
        assert np.abs(tile - split.x[members[40 + k], 0]).max() < 0.01
    assert len(fig.layout.shapes) == 1       # the current image (45) is framed
    assert len(thumbnail_figure("digits", 0, 0, 0).data[1].customdata) == 36


def test_a_drawing_is_never_inverted_and_a_mostly_inked_canvas_is_refused():
    """The canvas is white on black: a bold digit covering much of it must not be read as its negative;
    a canvas more than half covered is refused with a message (never a guess)."""
    import io as _io

    import numpy as np
    import pytest
    from PIL import Image

    from conftest import zoo
    from dashboard.gallery import drawing_image
    from geometry.errors import ImageError

    clf = zoo("mnist_lenet_gelu")
    a = np.zeros((280, 280), dtype=np.uint8)
    a[:, 60:200] = 255            # a very bold "1": 50% of the border is ink
    a[:, :20] = 0
    buf = _io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    img = drawing_image(buf.getvalue(), clf)
    assert not any("inverted" in s for s in img.steps)
    assert float(img.tensor.max()) > 0.9 and float(img.tensor[0, 0, 0]) == 0.0
    full = np.full((280, 280), 255, dtype=np.uint8)
    buf = _io.BytesIO()
    Image.fromarray(full).save(buf, format="PNG")
    with pytest.raises(ImageError, match="covers 100% of the canvas"):
        drawing_image(buf.getvalue(), clf)
