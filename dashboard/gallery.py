"""The sidebar's visual image sources: a canvas to draw a digit on, and clickable gallery thumbnails.

``draw_source(clf)`` shows a canvas (white ink on black, MNIST-like stroke), converts what is drawn
exactly like an uploaded image (``geometry.images.load_image`` on the canvas' PNG: greyscale, MNIST
centring, the model's size and pixel range, each step listed), shows the converted image as the
model sees it and its prediction (a job of ``dashboard.jobs``), and returns the image, or None while
the canvas is empty. The canvas reruns the script each time a stroke ends, so the prediction follows
the drawing.

``thumbnail_picker(dataset, cls, n)`` shows the held-out images of one class as a grid of thumbnails
(one Plotly figure, cached per dataset, class and page); clicking one sets ``gallery_index`` (the
same key as the sidebar's index widget, so ``?image=gallery:C:I`` links keep working).
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard.jobs import compute
from dashboard.ui import show
from geometry.data import held_out
from geometry.errors import ImageError
from geometry.images import ImageInput, load_image
from geometry.tasks import probabilities

CANVAS_PX = 224           # the canvas is square: 8 x 28 pixels, fits the sidebar (240 px of content) at its default width
STROKE_PX = 16            # about 2 px once the digit is scaled into MNIST's 20 x 20 box: MNIST-like strokes
SIDEBAR_PX = 240          # the sidebar's content width at its default size: the thumbnails fill it
PER_PAGE = 40             # thumbnails shown at once (8 columns x 5 rows)
COLUMNS = 8
HIGHLIGHT = "#E69F00"     # Okabe-Ito orange: the current image's frame
DRAW_GEN = "_draw_generation"
NOT_IN_LINKS = "Drawn and uploaded images are not part of shareable links (a link opens the gallery image)."


# ------------------------------------------------------------------ drawing
def canvas_png(result) -> bytes | None:
    """The PNG bytes the canvas sent with its last drawing (None before it sent any)."""
    try:
        return result.image_bytes
    except (binascii.Error, ValueError):
        raise ImageError("the drawing could not be read back from the canvas; press Clear and draw again") from None


MAX_INK_FRACTION = 0.5   # a canvas more than half covered is not a digit
INK_LEVEL = 25           # a pixel brighter than this (of 255) carries ink, for the coverage check


def _grey(png: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("L"))


def has_ink(png: bytes) -> bool:
    """Whether the canvas PNG holds any stroke (some pixel brighter than the black background)."""
    return int(_grey(png).max()) > 0


def drawing_image(png: bytes | None, clf) -> ImageInput | None:
    """The drawing as the model's input, converted like an uploaded image (but never inverted: the canvas is
    white on black); None for an empty canvas. A canvas mostly covered in ink is refused."""
    if png is None:
        return None
    grey = _grey(png)  # decoded once for both checks
    if int(grey.max()) == 0:
        return None
    covered = float((grey > INK_LEVEL).mean())
    if covered > MAX_INK_FRACTION:
        raise ImageError(f"the drawing covers {covered:.0%} of the canvas; draw one digit in white "
                         "strokes on the black background (Clear starts again)")
    img = load_image(png, clf, name="drawing.png", light_on_dark=True)
    img.source = "drawing"
    return img


def _clear() -> None:
    st.session_state[DRAW_GEN] = st.session_state.get(DRAW_GEN, 0) + 1


def _model_view(img: ImageInput, lo: float, hi: float) -> np.ndarray:
    """The converted image scaled to [0, 255] and enlarged (nearest) for the sidebar: what the model sees."""
    a = img.tensor.detach().cpu().numpy()
    a = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
    a = np.clip((a - lo) / (hi - lo), 0, 1)
    rep = max(1, 84 // a.shape[0])
    return (np.kron(a, np.ones((rep, rep) + (1,) * (a.ndim - 2))) * 255).round().astype(np.uint8)


def draw_source(clf) -> ImageInput | None:
    """The Draw source in the sidebar: canvas, Clear, the model's view, the prediction and the conversion."""
    from streamlit_drawable_canvas import st_canvas

    side = st.sidebar
    side.caption("Draw a digit in white. The prediction updates each time you lift the pen.")
    if getattr(clf, "dataset", None) not in ("mnist", "digits"):
        side.warning("This model was not trained on handwritten digits: a drawing is converted to its input, but "
                     "its answers to one mean little.")
    elif tuple(clf.input_shape) != (1, 28, 28):
        side.caption(f"This model reads {clf.input_shape[-1]}x{clf.input_shape[-2]} digits: the drawing is shrunk "
                     "to that size, which loses most strokes; its answers are less reliable than on MNIST models.")
    key = f"draw_canvas_{st.session_state.get(DRAW_GEN, 0)}"
    with side:
        result = st_canvas(stroke_width=STROKE_PX, stroke_color="#FFFFFF", background_color="#000000",
                           width=CANVAS_PX, height=CANVAS_PX, drawing_mode="freedraw", return_image_data=True,
                           key=key)
    side.button("Clear", key="draw_clear", on_click=_clear, icon=":material/delete:",
                help="Empty the canvas and start again.")
    objects = (result.json_data or {}).get("objects") or []
    img = drawing_image(canvas_png(result), clf) if objects else None
    if img is None:
        side.info("The canvas is empty: draw a digit. Showing the gallery image meanwhile.")
        return None
    probs = compute(probabilities, img.tensor, what="the prediction", quick=True)[0]
    label = int(probs.argmax())
    left, right = side.columns([1, 1], vertical_alignment="center")
    left.image(_model_view(img, *clf.pixel_range), caption="What the model sees", output_format="PNG")
    right.metric("Drawing read as", clf.class_names[label], f"p = {float(probs[label]):.3f}", delta_color="off",
                 delta_arrow="off")
    side.caption("Conversion: " + "; ".join(img.steps))
    return img


# ------------------------------------------------------------------ thumbnails
def _png_uri(gray: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(gray, 0, 1) * 255).round().astype(np.uint8), mode="L").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@st.cache_data(show_spinner=False, max_entries=256)
def thumbnail_figure(dataset: str, cls: int, page: int, current: int | None) -> go.Figure:
    """Held-out images ``page * PER_PAGE ...`` of class ``cls`` as one image with an invisible clickable
    marker on each thumbnail (``customdata`` = the image's index in its class); ``current`` is framed."""
    split = held_out(dataset)
    members = np.flatnonzero(split.y == int(cls))
    start = page * PER_PAGE
    chunk = members[start:start + PER_PAGE]
    side = split.x.shape[-1]
    gap = max(1, side // 14)
    cell = side + gap
    rows = -(-len(chunk) // COLUMNS)
    sheet = np.full((rows * cell + gap, COLUMNS * cell + gap), 0.35, dtype=np.float32)
    xs, ys = [], []
    for k, j in enumerate(chunk):
        r, c = divmod(k, COLUMNS)
        top, left = gap + r * cell, gap + c * cell
        sheet[top:top + side, left:left + side] = split.x[j, 0]
        xs.append(left + side / 2 - 0.5)
        ys.append(top + side / 2 - 0.5)
    fig = go.Figure(go.Image(source=_png_uri(sheet), hoverinfo="skip"))  # a PNG: ~10x smaller than pixel lists
    indices = list(range(start, start + len(chunk)))
    fig.add_trace(go.Scatter(
        x=xs, y=ys, mode="markers", customdata=indices, showlegend=False,
        marker=dict(symbol="square", size=24, color="rgba(0,0,0,0)", line=dict(width=0)),
        selected=dict(marker=dict(opacity=0)), unselected=dict(marker=dict(opacity=0)),
        hovertemplate=f"class {cls}, #%{{customdata}}<extra></extra>"))
    if current is not None and start <= current < start + len(chunk):
        r, c = divmod(current - start, COLUMNS)
        x0, y0 = gap + c * cell - 0.5 - gap / 2, gap + r * cell - 0.5 - gap / 2
        fig.add_shape(type="rect", x0=x0, y0=y0, x1=x0 + side + gap, y1=y0 + side + gap,
                      line=dict(color=HIGHLIGHT, width=3))
    fig.update_xaxes(visible=False, range=[-0.5, sheet.shape[1] - 0.5], fixedrange=True)
    fig.update_yaxes(visible=False, range=[sheet.shape[0] - 0.5, -0.5], fixedrange=True,
                     scaleanchor="x", scaleratio=1)
    scale = SIDEBAR_PX / sheet.shape[1]
    fig.data[1].marker.size = int(side * scale)
    fig.update_layout(height=round(sheet.shape[0] * scale), margin=dict(l=0, r=0, t=0, b=0), dragmode=False,
                      clickmode="event+select", plot_bgcolor="rgba(0,0,0,0)", paper_bgcolor="rgba(0,0,0,0)")
    return fig


def _picked(chart_key: str) -> None:
    """A thumbnail was clicked: make it the current gallery image (runs before the script, so the
    sidebar's class/index widgets can still be set)."""
    event = st.session_state.get(chart_key)
    points = event.selection.points if event is not None else []
    for point in points:
        index = point.get("customdata")
        if isinstance(index, list):
            index = index[0] if index else None
        if index is not None:
            st.session_state.gallery_index = int(index)
            st.session_state.image_source = "Gallery"
            return


def _page_to(index: int) -> None:
    st.session_state.gallery_index = index


def thumbnail_picker(dataset: str, cls: int, n: int, current: int) -> None:
    """The thumbnails of class ``cls`` (the page holding ``current``), with buttons for other pages."""
    page = current // PER_PAGE
    pages = -(-n // PER_PAGE)
    # the key changes with the current image: a fresh chart, so clicking any thumbnail (even one picked
    # before the index was changed another way) is a new selection
    key = f"thumbs_{dataset}_{cls}_{page}_{current}"
    st.caption("Click a thumbnail to analyse it.")
    show(thumbnail_figure(dataset, int(cls), page, current), key, on_select=lambda: _picked(key),
         selection_mode="points", config={"displayModeBar": False})
    if pages > 1:
        first, last = page * PER_PAGE, min(n, (page + 1) * PER_PAGE) - 1
        prev, mid, nxt = st.columns([1, 2, 1], vertical_alignment="center")
        prev.button("‹", key="thumbs_prev", disabled=page == 0, on_click=_page_to, args=((page - 1) * PER_PAGE,),
                    help="Earlier images of this class", width="stretch")
        mid.caption(f"{first}-{last} of {n}")
        nxt.button("›", key="thumbs_next", disabled=page == pages - 1, on_click=_page_to,
                   args=((page + 1) * PER_PAGE,), help="Later images of this class", width="stretch")
