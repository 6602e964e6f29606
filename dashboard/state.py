"""The sidebar's choices (model, device, image) and the accessors every page uses.

``render_sidebar()`` runs in the entry script before any page, so a page can call
``current_model()``, ``current_image()`` and ``model_key()``. Models are cached
with ``st.cache_resource`` (keyed by zoo name or the upload's hash and options);
a bad upload shows an error and falls back to the bundled default, keeping the
rest of the user's choices.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import streamlit as st
import torch

from geometry.classifier import Classifier
from geometry.errors import GeometryError
from geometry.images import ImageInput, gallery_counts, gallery_dataset, gallery_image, load_image
from geometry.loading import load_classifier
from geometry.zoo import DEFAULT_MODEL, zoo_card, zoo_names

UPLOAD = "Upload a model file…"
MODEL_TYPES = ["safetensors", "pt", "pt2", "pth", "ts", "jit"]
IMAGE_TYPES = ["png", "jpg", "jpeg", "npy"]


@st.cache_resource(show_spinner="Loading the model…", max_entries=8)
def _zoo_classifier(name: str, device: str) -> Classifier:
    return load_classifier(name, device=device)


@st.cache_resource(show_spinner="Loading the uploaded model…", max_entries=4)
def _uploaded_classifier(digest: str, _data: bytes, filename: str, _sidecar: bytes | None, sidecar_digest: str,
                         input_shape: str, pixel_range: str, classes: str, architecture: str,
                         device: str) -> Classifier:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(filename).name
        path.write_bytes(_data)
        side = None
        if _sidecar is not None:
            side = Path(tmp) / "sidecar.json"
            side.write_bytes(_sidecar)
        return load_classifier(path, input_shape=input_shape or None, pixel_range=pixel_range or None,
                               class_names=classes or None, architecture=architecture or None, sidecar=side,
                               device=device, name=Path(filename).stem)


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
    clf, error, key = None, None, f"zoo:{choice}:{device}"
    if choice == UPLOAD:
        up = st.sidebar.file_uploader("Model file", type=MODEL_TYPES, key="model_upload",
                                      help="safetensors state dict (+ architecture), TorchScript .pt, or "
                                           "torch.export .pt2. Files are never unpickled.")
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
            key = f"upload:{_digest(data)}:{_digest(sdata) if sdata else ''}:{shape}:{prange}:{classes}:{arch}:{device}"
            try:
                clf = _uploaded_classifier(_digest(data), data, up.name, sdata, _digest(sdata) if sdata else "",
                                           shape, prange, classes, arch, device)
            except GeometryError as exc:
                error = str(exc)
    else:
        try:
            clf = _zoo_classifier(choice, device)
        except GeometryError as exc:
            error = str(exc)
    if error:
        st.sidebar.error(f"Model not loaded: {error}")
    if clf is None:
        clf, key = _zoo_classifier(DEFAULT_MODEL, device), f"zoo:{DEFAULT_MODEL}:{device}"
        if choice == UPLOAD and error:
            st.sidebar.caption(f"Showing the bundled default ({DEFAULT_MODEL}) until the upload loads.")
    else:
        st.query_params["model"] = choice if choice != UPLOAD else "upload"
    st.session_state["_clf"] = clf
    st.session_state["_model_key"] = key


def _image_sidebar() -> None:
    clf: Classifier = st.session_state["_clf"]
    st.sidebar.divider()
    source = st.sidebar.radio("Image", ["Gallery", "Upload"], horizontal=True, key="image_source")
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
    counts = gallery_counts(dataset)
    if img is None:
        classes = sorted(counts)
        if st.session_state.get("gallery_class") not in classes:
            st.session_state.gallery_class = classes[0]
        cls = st.sidebar.selectbox(f"Class ({dataset} held-out gallery)", classes, key="gallery_class",
                                   disabled=source == "Upload")
        n = counts[cls]
        if st.session_state.get("gallery_index", 0) >= n:
            st.session_state.gallery_index = 0
        idx = st.sidebar.number_input(f"Index (0-{n - 1})", 0, n - 1, key="gallery_index", step=1,
                                      disabled=source == "Upload")
        img = gallery_image(clf, cls, int(idx))
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


def current_model() -> Classifier:
    return st.session_state["_clf"]


def current_image() -> ImageInput:
    return st.session_state["_image"]


def model_key() -> str:
    """A string that identifies the current model (name, card, device, dtype) for cache keys."""
    return st.session_state["_model_key"]


def model_card(clf: Classifier) -> dict:
    try:
        return zoo_card(clf.name)
    except GeometryError:
        return clf.card

