"""Cross-sections: two planes through the chosen image side by side (flat and curved views by default).

Gathers the choices, calls geometry.sections (cached per model, image and settings), hands the
results to dashboard/figures/sections.py, and lets the user inspect any point of a plane.
"""

import io

import numpy as np
import streamlit as st

from dashboard.figures.common import image_figure, probability_figure
from dashboard.figures.sections import margin_surface_figure, section_figure, selected_point
from dashboard.jobs import compute
from dashboard.state import current_image, current_model
from dashboard import links
from dashboard.glossary import formulas, plain
from dashboard.ui import export_buttons, guarded, presentation, show
from geometry.errors import GeometryError
from geometry.images import gallery_counts, gallery_dataset
from geometry.sections import (CURVED_PLANE, DEFAULT_PLANE, DEFAULT_RESOLUTION, EXTENT_FACTOR, VALID_PLANE,
                               DEFAULT_SURFACE_RESOLUTION, default_estimator, direction_from_array, inspect_point,
                               make_plane, margin_surface, section_on_plane)

PLANES = {  # label -> spec template
    "Valid images: towards the boundary + random in-range direction": VALID_PLANE,
    "Flat: normal + random tangent": DEFAULT_PLANE,
    "Curved: normal + top positive curvature": CURVED_PLANE,
    "Curved: normal + top negative curvature": "normal,curv-",
    "Two random directions": "random,random",
    "Adversarial (DeepFool) + random": "adversarial,random",
    "Adversarial (FGSM) + random": "adversarial:fgsm,random",
    "Adversarial (PGD) + random": "adversarial:pgd,random",
    "Towards another image + random": "image:{ref1}",
    "Through two more images": "images:{ref1},{ref2}",
    "Two uploaded directions (.npy)": "npy:U.npy,V.npy",
}
LABELS = list(PLANES)
RESOLUTIONS = [33, 65, 97, 129, 161, 201, 257]
ESTIMATORS = {"auto": None, "exact (autograd)": "exact", "fd (finite differences)": "fd"}
SIDES = ("left", "right")


# ------------------------------------------------------------------ computations (in the workers, cached)
def _plane(spec: str, seed: int, estimator, x, dirs):
    return compute(make_plane, x, spec, seed=seed, estimator=estimator, directions=dirs,
                   what="the plane (boundary point and directions)")


def _grid(extent, resolution: int, adaptive: bool, plane):
    return compute(section_on_plane, plane, extent=extent, resolution=resolution, adaptive=adaptive,
                   what=f"the {resolution}x{resolution} cross-section")


def _inspect(a: float, b: float, plane):
    return compute(inspect_point, plane, a, b, what="the point", quick=True)


# ------------------------------------------------------------------ controls
def _init_state(clf):
    links.shared("sec_plane_left", LABELS[0], options=LABELS)
    links.shared("sec_plane_right", LABELS[2], options=LABELS)
    links.shared("sec_auto_extent", True)
    links.shared("sec_extent", 3.0, check=lambda v: 1e-3 <= v <= 1e6)
    links.shared("sec_resolution", DEFAULT_RESOLUTION, options=RESOLUTIONS)
    links.shared("sec_adaptive", True)
    links.shared("sec_seed", 0, check=lambda v: 0 <= v < 2**31)
    links.shared("sec_estimator", "auto", options=list(ESTIMATORS))
    links.shared("sec_3d", False)
    for k, v in {"sec_inspect_side": "left", "sec_inspect_a": 0.0, "sec_inspect_b": 0.0}.items():
        if k not in st.session_state:
            st.session_state[k] = v
    counts = gallery_counts(gallery_dataset(clf))
    classes = sorted(counts)
    for i in (1, 2):
        ck, ik = f"sec_img{i}_class", f"sec_img{i}_index"
        first = st.session_state.get("gallery_class") if st.session_state.get("gallery_class") in classes \
            else classes[0]
        links.shared(ck, first, options=classes)
        links.shared(ik, min(i, counts[st.session_state[ck]] - 1), check=lambda v: v >= 0)
        if not 0 <= int(st.session_state[ik]) < counts[st.session_state[ck]]:
            st.session_state[ik] = 0
    return counts


def _other_refs(need_two: bool) -> tuple[str, str]:
    refs = [f"gallery:{st.session_state[f'sec_img{i}_class']}:{int(st.session_state[f'sec_img{i}_index'])}"
            for i in (1, 2)]
    return refs[0], refs[1] if need_two else ""


def _other_image_controls(counts, need_two: bool) -> None:
    classes = sorted(counts)
    cols = st.columns(4 if need_two else 2)
    for i in (1, 2) if need_two else (1,):
        ck, ik = f"sec_img{i}_class", f"sec_img{i}_index"
        c = cols[2 * (i - 1)].selectbox(f"Image {i + 1}: class", classes, key=ck)
        n = counts[c]
        if int(st.session_state.get(ik, 0)) >= n:
            st.session_state[ik] = 0
        cols[2 * (i - 1) + 1].number_input(f"Image {i + 1}: index (0-{n - 1})", 0, n - 1, key=ik, step=1)


def _npy_directions(clf):
    ups = [st.session_state.get("sec_npy_u"), st.session_state.get("sec_npy_v")]
    if any(u is None for u in ups):
        return None
    arrays = []
    for up in ups:
        try:
            arr = np.load(io.BytesIO(up.getvalue()), allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            raise GeometryError(f"{up.name} is not a plain .npy array ({type(exc).__name__}); pickled arrays are "
                                "never loaded") from None
        arrays.append(direction_from_array(arr, clf, up.name).numpy())
    return tuple(arrays)


def _settings(clf, counts, need_images: bool, need_two: bool, need_npy: bool) -> None:
    """The settings, drawn below the figures (their values are read from the session before)."""
    with st.expander("Plane and grid settings", expanded=False):
        c1, c2 = st.columns(2)
        c1.selectbox("Left plane", LABELS, key="sec_plane_left")
        c2.selectbox("Right plane", LABELS, key="sec_plane_right")
        c3, c4, c5, c6 = st.columns(4)
        c3.checkbox("Automatic extent", key="sec_auto_extent",
                    help=f"{EXTENT_FACTOR:g} x the image's DeepFool distance to the boundary, grown to contain the "
                         "marked images")
        c3.number_input("Extent (half-width, L2 pixel units)", min_value=1e-3, step=0.5, key="sec_extent",
                        disabled=st.session_state.sec_auto_extent)
        c4.select_slider("Resolution (points per axis)", RESOLUTIONS, key="sec_resolution")
        c4.checkbox("Adaptive grid", key="sec_adaptive",
                    help="Evaluate a coarse grid and refine only where labels change; same labels as the dense grid "
                         "unless a pocket of a class misses every coarse grid point (see docs/sections.md)")
        c5.number_input("Seed of random directions", 0, 2**31 - 1, key="sec_seed", step=1)
        c6.selectbox("Curvature estimator", list(ESTIMATORS), key="sec_estimator",
                     help=f"auto: exact Hessian for smooth networks, finite differences for piecewise-linear ones "
                          f"(this model: {default_estimator(clf)})")
        if need_images:
            st.markdown("**Other images** (from the held-out gallery)")
            _other_image_controls(counts, need_two)
        if need_npy:
            cols = st.columns(2)
            cols[0].file_uploader("Direction U (.npy)", type=["npy"], key="sec_npy_u")
            cols[1].file_uploader("Direction V (.npy)", type=["npy"], key="sec_npy_v")
            st.caption(f"Two .npy arrays of shape {clf.input_shape} (or {clf.dim} values) span the plane.")


# ------------------------------------------------------------------ page
clf = current_model()
img = current_image()
counts = _init_state(clf)

st.header("Cross-sections of the decision boundary")
plain("Each picture is a flat slice through image space around the image, coloured by the model's answer; its "
      "two directions are named above it. Hatched points are not valid images (some pixel leaves the "
      "[[pixel_range|pixel range]]), though the model still answers there. By default: on the left towards the "
      "nearest [[boundary|boundary]] and along a random change that keeps the image valid, on the right across "
      "the boundary and along the direction where it [[curvature|bends]] most.")
formulas("A cross-section is the plane $x_0 + a\\,u + b\\,v$ through the image (or its boundary point z), coloured "
         "by the class the model predicts at every point. The *flat* view spans the boundary normal "
         "$\\nabla F/|\\nabla F|$ (F = f_k − f_j) and a random tangent direction; the *curved* view replaces the "
         "random direction by the principal direction of largest curvature. Near real images the boundary is flat "
         "along almost every direction and strongly curved along a few. Axes are L2 distances in pixel space. See "
         "docs/science.md sections 3 and 6.")

choices = [st.session_state.sec_plane_left, st.session_state.sec_plane_right]
need_images = any("{ref1}" in PLANES[c] for c in choices)
need_two = any("{ref2}" in PLANES[c] for c in choices)
need_npy = any(PLANES[c].startswith("npy") for c in choices)
ref1, ref2 = _other_refs(need_two) if need_images else ("", "")
dirs = None
if need_npy:
    with guarded("reading the uploaded directions"):
        dirs = _npy_directions(clf)

seed = int(st.session_state.sec_seed)
estimator = ESTIMATORS[st.session_state.sec_estimator]
resolution = int(st.session_state.sec_resolution)
adaptive = bool(st.session_state.sec_adaptive)
extent_choice = None if st.session_state.sec_auto_extent else float(st.session_state.sec_extent)

specs = []
for label in choices:
    spec = PLANES[label].format(ref1=ref1, ref2=ref2)
    specs.append(spec)


def _caption(section) -> str:
    info = section.plane.info
    names = clf.class_names
    parts = [f"a, b in [{-section.extent:.3g}, {section.extent:.3g}] (L2 pixel units), "
             f"{section.resolution}x{section.resolution} grid: {section.evaluations:,} model evaluations "
             f"({'adaptive' if section.params['adaptive'] else 'dense'}; dense grid {section.dense_evaluations:,}) "
             f"in {section.seconds:.2f} s."]
    if "label" in info:
        parts.append(f"Image class **{names[info['label']]}**; DeepFool distance {info['boundary_distance']:.3g} "
                     f"to class {names[info['boundary_label']]}.")
    if info.get("anchor") == "boundary" and section.points and section.points[0].offset > 1e-6:
        parts.append(f"The plane passes through the boundary point z (the normal and curvature directions live "
                     f"there); the image x0 lies {section.points[0].offset:.3g} off it and is drawn at its projection.")
    if info.get("estimator"):
        h = f", h = {info['step']:.3g}" if info.get("step") else ""
        parts.append(f"Curvature directions: **{info['estimator']}** estimator{h} ({info.get('estimator_reason')}).")
    for key, what in (("curv+_curvature", "top positive"), ("curv-_curvature", "most negative")):
        if key in info:
            parts.append(f"{what} principal curvature {info[key]:.3g}.")
    n_out = section.outside_count
    if n_out == section.outside.size:
        parts.append("Every grid point leaves the pixel range (the plane's directions push some pixels below 0 or "
                     "above 1 at once); labels are the model's answer on those unclipped inputs.")
    elif n_out:
        parts.append(f"{n_out:,} of {section.outside.size:,} grid points are outside the pixel range (lighter, "
                     "dotted edge).")
    return " ".join(parts)


def _inspect_panel(side: str, plane) -> None:
    """The image at the inspected point of this plane, right under the plot that was clicked."""
    i1, i2 = st.columns(2)
    i1.number_input("a", key="sec_inspect_a", step=0.1, format="%.4f")
    i2.number_input("b", key="sec_inspect_b", step=0.1, format="%.4f")
    a, b = float(st.session_state.sec_inspect_a), float(st.session_state.sec_inspect_b)
    with guarded("inspecting the point"):
        pt = _inspect(a, b, plane)
        left, right = st.columns([2, 3])
        with left:
            show(image_figure(pt.image, f"Image at a={a:.3g}, b={b:.3g}", clf.pixel_range, height=220),
                 key="sec_inspect_image")
        with right:
            st.metric("Prediction at this point", clf.class_names[pt.label], f"margin {pt.margin:.3g}",
                      delta_color="off")
            st.caption(("Inside the pixel range: a valid image." if pt.in_pixel_range else
                        "Outside the pixel range: the model sees this unclipped input, which is not a valid image.")
                       + f" Distance from the plane's centre: {pt.distance:.3g}.")
        show(probability_figure(pt.probabilities, clf.class_names, top=min(5, clf.num_classes),
                                title="Top-5 class probabilities at this point"), key="sec_inspect_probs")


def _render(side: str, label: str, spec: str, plane, section) -> None:
    fig = section_figure(section, title="", height=560, legend="below")
    if st.session_state.sec_inspect_side == side:
        import plotly.graph_objects as go

        fig.add_trace(go.Scatter(x=[st.session_state.sec_inspect_a], y=[st.session_state.sec_inspect_b],
                                 mode="markers", name="inspected point",
                                 marker=dict(symbol="circle-open", size=16, color="black", line=dict(width=2.5))))
    event = show(fig, key=f"sec_fig_{side}", on_select="rerun", selection_mode=("points", "box", "lasso"))
    picked = selected_point(event)
    if picked is not None and st.session_state.get(f"sec_last_pick_{side}") != picked:
        st.session_state[f"sec_last_pick_{side}"] = picked
        st.session_state.sec_inspect_side = side
        st.session_state.sec_inspect_a, st.session_state.sec_inspect_b = picked
        st.rerun()
    if st.session_state.sec_3d:
        with guarded("the 3-D margin surface"):
            _surface(side, plane, section)
    if st.session_state.sec_inspect_side == side:
        _inspect_panel(side, plane)
    elif st.button("Inspect a point of this plane", key=f"sec_inspect_here_{side}"):
        st.session_state.sec_inspect_side = side
        st.rerun()
    for w in section.plane.info.get("warnings", []):
        st.warning(w)
    if not presentation():
        st.caption(_caption(section))
        export_buttons(fig, data=section.arrays(), params=section.summary(),
                       name=f"section_{spec.replace(',', '_').replace(':', '-')[:60]}", key=f"sec_export_{side}")


def _surface(side: str, plane, section) -> None:
    label = plane.info.get("label")
    if label is None:
        label = int(section.labels[section.labels.shape[0] // 2, section.labels.shape[1] // 2])
    res = min(int(section.resolution), DEFAULT_SURFACE_RESOLUTION)
    a, b, margin = compute(margin_surface, plane, int(label), float(section.extent), res,
                           what=f"the {res}x{res} margin surface")
    show(margin_surface_figure(a, b, margin, clf.class_names[int(label)], plane.axis_names, section.points,
                               height=460), key=f"sec_surface_{side}")


t1, t2 = st.columns([1, 3], vertical_alignment="center")
t1.toggle("3-D margin surface", key="sec_3d",
          help="Also draw the margin (the image's class score minus the best other score) over each plane as a "
               "surface; where it crosses zero is the boundary.")
t2.caption("Click a point of a plane to see the image there, right under the plot.")
drawn: set[str] = set()   # the sides whose cross-section is on the page
progress = st.progress(0.0, text="Preparing the planes…")
steps = 2 * len(SIDES)
done = 0
# each view is drawn as soon as it is ready (the curved one waits for the curvature directions)
for col, side, label, spec in zip(st.columns(2), SIDES, choices, specs):
    est = estimator if "curv" in spec else None  # only curved planes depend on it (keeps the cache warm)
    with col:
        st.subheader(label)
        if spec.startswith("npy") and dirs is None:
            st.info(f"Upload two .npy arrays of shape {clf.input_shape} (or {clf.dim} values) under *Plane and "
                    "grid settings* below to span this plane.")
            done += 2
            continue
        with guarded(f"the {side} cross-section"):
            progress.progress(done / steps, text=f"{side.title()} plane: boundary point and directions…")
            plane = _plane(spec, seed, est, img.tensor, dirs if spec.startswith("npy") else None)
            done += 1
            progress.progress(done / steps, text=f"{side.title()} plane: evaluating the grid…")
            section = _grid(extent_choice, resolution, adaptive, plane)
            done += 1
            drawn.add(side)
            if st.session_state.sec_inspect_side not in SIDES or (side == "right" and "left" not in drawn
                                                                   and st.session_state.sec_inspect_side == "left"):
                st.session_state.sec_inspect_side = side
            _render(side, label, spec, plane, section)
progress.empty()
if not drawn:
    st.info("No cross-section is available yet.")
_settings(clf, counts, need_images, need_two, need_npy)
