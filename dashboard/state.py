"""The sidebar's choices (model, device, image) and the accessors every page uses.

``render_sidebar()`` runs in the entry script before any page, so a page can call
``current_model()`` (the model's facts), ``current_image()`` and ``model_key()``.
The web server never runs a model: loading (and every analysis) is a job for the
worker processes of ``dashboard.jobs``, which cache models by digest. Uploads are
stored under a folder named by their digest and read there by a worker; a bad
upload shows an error and falls back to the bundled default, keeping the rest of
the user's choices. ``?model=NAME&image=gallery:CLASS:INDEX`` in the URL picks the
model and gallery image of a new session. The image comes from the held-out gallery (class and
index, or a click on a thumbnail), a digit drawn on a canvas, or an uploaded file; drawings and
uploads are converted alike (``geometry.images.load_image``) and are never part of links
(``dashboard.gallery`` holds the canvas and the thumbnails).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
from pathlib import Path

import streamlit as st
import torch

from dashboard.gallery import NOT_IN_LINKS, draw_source, thumbnail_picker
from dashboard.jobs import compute, executor
from geometry.errors import GeometryError
from geometry.executor import ModelRef
from geometry.tasks import ModelFacts, model_facts
from geometry.images import ImageInput, gallery_counts, gallery_dataset, gallery_image, load_image, parse_gallery_ref
from geometry.zoo import DEFAULT_MODEL, zoo_card, zoo_names

UPLOAD = "Upload a model file…"
MODEL_TYPES = ["safetensors", "pt", "pt2", "pth", "ts", "jit"]
IMAGE_TYPES = ["png", "jpg", "jpeg", "npy"]
UPLOADS_KEPT = 32
LOAD_TIMEOUT_S = 60.0


def zoo_ref(name: str, device: str) -> ModelRef:
    """The job reference of a bundled model on ``device``."""
    return ModelRef.create(name, device=device)


@st.cache_resource(show_spinner=False)
def _upload_dir() -> Path:
    """Where uploaded model files wait for the workers to read them (one folder per server)."""
    path = Path(tempfile.mkdtemp(prefix="boundary-geometry-uploads-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _stored_upload(data: bytes, filename: str, sidecar: bytes | None) -> tuple[Path, Path | None]:
    """Write an upload (and its sidecar) once, under a folder named by its digest; keep the newest few."""
    root = _upload_dir()
    folder = root / f"{_digest(data)}-{_digest(sidecar) if sidecar else 'none'}"
    # the file name keeps only its extension (which selects the format): nothing user-typed reaches a path
    suffix = "".join(c for c in Path(filename).suffix.lower() if c.isalnum() or c == ".")[:12]
    path, side = folder / f"model{suffix}", (folder / "model.sidecar.json" if sidecar is not None else None)
    if path.exists():
        os.utime(folder)  # in use: the newest folders are the ones kept
    else:
        folder.mkdir(parents=True, exist_ok=True)
        # written under a temporary name and renamed, the sidecar first: a second session uploading the
        # same file at the same moment never sees a half-written model
        for target, data_ in ((side, sidecar), (path, data)):
            if target is not None:
                tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_bytes(data_)
                os.replace(tmp, target)
        folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for old in folders[:-UPLOADS_KEPT]:
            shutil.rmtree(old, ignore_errors=True)
    return path, side


def load_facts(ref: ModelRef, what: str) -> ModelFacts:
    """A model's facts, loaded by a worker within the load time limit (quick job)."""
    # loading includes the probe forward pass: a model that loops for minutes is stopped here
    timeout = min(LOAD_TIMEOUT_S, getattr(executor(), "timeout", LOAD_TIMEOUT_S))
    return compute(model_facts, model=ref, what=what, timeout=timeout, quick=True)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _device_options() -> list[str]:
    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _model_sidebar() -> None:
    names = zoo_names()
    options = names + [UPLOAD]
    qp = st.query_params.get("model")
    if "model_choice" not in st.session_state:
        st.session_state.model_choice = qp if qp in options else (DEFAULT_MODEL if DEFAULT_MODEL in names else options[0])
    choice = st.sidebar.selectbox("Model", options, key="model_choice",
                                  help="A bundled model trained on real MNIST / 8x8 digits, or your own file.")
    device = st.sidebar.selectbox("Compute on", _device_options(), key="device_choice",
                                  help="auto uses the GPU when there is one, else the CPU.")
    facts, error, ref = None, None, None
    if choice == UPLOAD:
        up = st.sidebar.file_uploader("Model file", type=MODEL_TYPES, key="model_upload",
                                      help="safetensors state dict (+ architecture), TorchScript .pt, or "
                                           "torch.export .pt2. Files are never unpickled; see the README's limits.")
        side = st.sidebar.file_uploader("Sidecar JSON (optional)", type=["json"], key="sidecar_upload",
                                        help="input_shape, pixel_range, class_names, mean, std, architecture")
        with st.sidebar.expander("Model facts (when the file does not say)", expanded=up is not None and side is None):
            shape = st.text_input("Input shape C,H,W", key="up_shape", placeholder="1,28,28")
            prange = st.text_input("Pixel range", key="up_range", placeholder="0,1")
            classes = st.text_input("Class names (comma-separated)", key="up_classes", placeholder="0,1,...,9")
            arch = st.text_input("Architecture (state dicts only)", key="up_arch", placeholder="lenet or resnet18")
        if up is None:
            st.sidebar.info("Upload a model file to analyse it; showing the bundled default meanwhile.")
        else:
            data = up.getvalue()
            sdata = side.getvalue() if side is not None else None
            try:
                path, side_path = _stored_upload(data, up.name, sdata)
                ref = ModelRef.create(str(path), data_digest=_digest(data) + (_digest(sdata) if sdata else ""),
                                      input_shape=shape or None, pixel_range=prange or None, class_names=classes or None,
                                      architecture=arch or None, sidecar=str(side_path) if side_path else None,
                                      device=device, name=_safe_name(up.name))
                facts = load_facts(ref, "loading the uploaded model")
            except GeometryError as exc:
                error, ref = str(exc), None
            except OSError as exc:
                error, ref = f"the upload could not be stored on the server ({exc.strerror})", None
    else:
        ref = zoo_ref(choice, device)
        try:
            facts = load_facts(ref, "loading the model")
        except GeometryError as exc:
            error, ref = str(exc), None
    if error:
        st.sidebar.error(f"Model not loaded: {error}")
    if facts is None:
        ref = zoo_ref(DEFAULT_MODEL, device)
        facts = load_facts(ref, "loading the default model")
        if choice == UPLOAD and error:
            st.sidebar.caption(f"Showing the bundled default ({DEFAULT_MODEL}) until the upload loads.")
    else:
        st.query_params["model"] = choice if choice != UPLOAD else "upload"
    st.session_state["_clf"] = facts
    st.session_state["_model_ref"] = ref
    st.session_state["_model_key"] = ref.digest


def _safe_name(filename: str) -> str:
    stem = "".join(c for c in Path(filename).stem if c.isalnum() or c in "-_.")[:60]
    return stem or "uploaded_model"


IMAGE_SOURCES = ["Gallery", "Draw", "Upload"]
GALLERY_KEYS = ("gallery_class", "gallery_index")


def _image_sidebar() -> None:
    clf: ModelFacts = st.session_state["_clf"]
    st.sidebar.divider()
    source = st.sidebar.radio("Image", IMAGE_SOURCES, horizontal=True, key="image_source",
                              help="A held-out image picked by looking, a digit you draw, or your own file.")
    img, error = None, None
    dataset = gallery_dataset(clf)
    if source == "Upload":
        up = st.sidebar.file_uploader("Image file", type=IMAGE_TYPES, key="image_upload",
                                      help="PNG/JPEG (converted to the model's input; the conversion is shown) "
                                           "or a .npy array in the model's input shape and pixel range.")
        if up is not None:
            try:
                img = load_image(up.getvalue(), clf, name=up.name)
            except GeometryError as exc:
                error = str(exc)
        else:
            st.sidebar.info("Upload an image; showing a gallery image meanwhile.")
    elif source == "Draw":
        try:
            img = draw_source(clf)
        except GeometryError as exc:
            error = str(exc)
    if source != "Gallery":
        st.sidebar.caption(NOT_IN_LINKS)
        # the gallery widgets are not drawn while a drawing or an upload is shown: keep their values for
        # when the user comes back (Streamlit forgets the state of widgets a run does not draw)
        for k in GALLERY_KEYS:
            if k in st.session_state:
                st.session_state[k] = st.session_state[k]
    counts = gallery_counts(dataset)
    if "_image_from_url" not in st.session_state:
        st.session_state["_image_from_url"] = True
        try:
            _, c, i = parse_gallery_ref(st.query_params.get("image", ""))
            if c in counts and 0 <= i < counts[c]:
                st.session_state.gallery_class, st.session_state.gallery_index = c, i
        except (GeometryError, ValueError, TypeError):
            pass
    if img is None:
        classes = sorted(counts)
        if st.session_state.get("gallery_class") not in classes:
            st.session_state.gallery_class = classes[0]
        cls = st.sidebar.selectbox(f"Class ({dataset} held-out gallery)", classes, key="gallery_class",
                                   disabled=source != "Gallery")
        n = counts[cls]
        if st.session_state.get("gallery_index", 0) >= n:
            st.session_state.gallery_index = 0
        idx = st.sidebar.number_input(f"Index (0-{n - 1})", 0, n - 1, key="gallery_index", step=1,
                                      disabled=source != "Gallery")
        img = gallery_image(clf, cls, int(idx))
        if source == "Gallery":
            st.query_params["image"] = f"gallery:{cls}:{int(idx)}"
            with st.sidebar:
                thumbnail_picker(dataset, cls, n, int(idx))
    if error:
        st.sidebar.error(f"Image not loaded: {error}")
    st.session_state["_image"] = img


def render_sidebar() -> None:
    st.sidebar.title("Boundary geometry")
    _model_sidebar()
    _image_sidebar()
    clf = current_model()
    st.sidebar.caption(f"Computing on **{clf.device.type.upper()}** "
                       f"({torch.cuda.get_device_name(clf.device) if clf.device.type == 'cuda' else 'no GPU in use'})")


def current_model() -> ModelFacts:
    """The current model's facts (shape, classes, range, ...); run it with ``dashboard.jobs.compute``."""
    return st.session_state["_clf"]


def current_image() -> ImageInput:
    return st.session_state["_image"]


def model_key() -> str:
    """The current model's digest (weights, options, device): a key for per-model widget state."""
    return st.session_state["_model_key"]


def model_card(clf: ModelFacts) -> dict:
    try:
        return zoo_card(clf.name)
    except GeometryError:
        return clf.card

