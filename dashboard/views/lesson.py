"""Lesson: the whole story in nine steps, each with one live figure on the current model and image.

Back/Next walk the steps; the step lives in the URL (``?lesson_step=``), so a teacher can send a link to
any step. Every figure is computed from the model through ``dashboard.jobs.compute`` with the same
arguments as the analysis pages use, so the lesson and the pages share their cached results (and the
bundled models' precomputed S, detector and experiments). Terms carry hover definitions from
dashboard/glossary.py; docs/science.md has the science in full.
"""

from __future__ import annotations

import streamlit as st

from dashboard import links
from dashboard.figures.common import image_figure, probability_figure, signed_image_figure
from dashboard.figures.curvature import spectrum_figure
from dashboard.figures.paths import margin_figure
from dashboard.figures.sections import section_figure
from dashboard.figures.vulnerability import fooling_figure, score_histograms_figure
from dashboard.glossary import CITATION, expand, glossary_section
from dashboard.jobs import compute
from dashboard.state import current_image, current_model
from dashboard.ui import guarded, presentation, show
from geometry.boundary import boundary_point
from geometry.curvature import principal_curvatures
from geometry.detector_variant import variant_detector
from geometry.errors import GeometryError
from geometry.images import gallery_counts, gallery_dataset, gallery_image
from geometry.operators import default_step
from geometry.paths import (DEFAULT_MAX_ANCHORS, PROJECTION_OVERSHOOT, adversarial_endpoint, connecting_paths,
                            gallery_chord_scan, gallery_class_leaving_pairs)
from geometry.sections import CURVED_PLANE, DEFAULT_RESOLUTION, VALID_PLANE, make_plane, section_on_plane
from geometry.precomputed import PAGE_DEFAULTS
from geometry.subspace import model_subspace
from geometry.tasks import (detector_examples, held_out_detector_evaluation, held_out_vulnerability, predict,
                            probabilities)

# The analysis pages' defaults: the same arguments hit the same cached (or shipped) results.
CURVATURE_K = 10
D = PAGE_DEFAULTS
VUL_IMAGES, VUL_DRAWS = D["experiment_images"], D["draws"]
DET_FPR, DET_CAL, DET_EVAL, DET_SIZES = D["fpr"], D["calibration_images"], D["evaluation_images"], tuple(D["sizes"])

clf = current_model()
img = current_image()
names = clf.class_names
x = img.tensor


# ------------------------------------------------------------------ computations (workers, cached)
def _label() -> int:
    return int(compute(predict, x, what="the prediction", quick=True)[0])


def _boundary():
    return compute(boundary_point, x, target=None, what="the boundary point")


def _section(spec: str):
    est = None  # "auto", as on the Cross-sections page
    plane = compute(make_plane, x, spec, seed=0, estimator=est, directions=None,
                    what="the plane (boundary point and directions)")
    return compute(section_on_plane, plane, extent=None, resolution=DEFAULT_RESOLUTION, adaptive=True,
                   what=f"the {DEFAULT_RESOLUTION}x{DEFAULT_RESOLUTION} cross-section")


def _curvatures():
    est = "exact" if clf.piecewise_linear is False else "fd"
    step = float(f"{default_step(clf):.4g}") if est == "fd" else None
    return compute(principal_curvatures, x, estimator=est, step=step, k=CURVATURE_K, boundary=_boundary(),
                   target=None, full=False, what=f"the principal curvatures ({est})")


def _same_class_pair(label: int):
    """Two gallery images of the image's class for the path step: (first tensor, first name, second image, leaves).

    The interesting case first, as on the Paths page: this image and one whose straight line from it leaves
    the class; else two other images of the class whose line leaves it; else the Paths page's easy pair (the
    first image whose line from this one stays inside: the scan already checked both ends' predictions)."""
    counts = gallery_counts(gallery_dataset(clf))
    if label not in counts:
        raise GeometryError(f"the gallery has no other image of class {names[label]}; pick another image")
    scan = compute(gallery_chord_scan, x, label, what="the straight lines to the other gallery images of the class")
    leaving = scan.leaving(1)
    if len(leaving):
        return x, "this image", gallery_image(clf, label, int(leaving.second[0])), True
    pairs = compute(gallery_class_leaving_pairs, label, what="pairs of the class whose straight line leaves it")
    if len(pairs):
        first = gallery_image(clf, label, int(pairs.first[0]))
        return first.tensor, first.source, gallery_image(clf, label, int(pairs.second[0])), True
    stay = scan.staying()
    if len(stay):
        return x, "this image", gallery_image(clf, label, int(stay.second[0])), False
    raise GeometryError(f"no other gallery image is predicted as {names[label]}")


def _path(x1, x2):
    return compute(connecting_paths, x1[None], x2[None], max_anchors=DEFAULT_MAX_ANCHORS, verification="auto",
                   overshoot=PROJECTION_OVERSHOOT, what="the connecting path")[0]


def _adversarial_source(label: int):
    counts = gallery_counts(gallery_dataset(clf))
    src_class = next(c for c in sorted(counts) if c != label)
    return gallery_image(clf, src_class, 0)


def _subspace():
    return compute(model_subspace, images=D["images"], m=D["m"], estimator=D["estimator"], progress=True, long=True,
                   what=f"the shared curved subspace S from {D['images']} boundary points")


def _detector():
    # the Vulnerability page's default detector (the pre-registered variant), with the same arguments
    return compute(variant_detector, D["detector"], images=D["images"], m=D["m"], estimator=D["estimator"],
                   fpr=DET_FPR, calibration_images=DET_CAL, progress=True, long=True,
                   what=f"the detector: its S and its calibration on {DET_CAL} clean held-out images")


# ------------------------------------------------------------------ the steps
def step_sees():
    probs = compute(probabilities, x, what="the prediction", quick=True)[0]
    label = int(probs.argmax())
    a, b = st.columns([1, 2])
    with a:
        show(image_figure(x, "The input", clf.pixel_range, height=300), key="lesson_image")
    with b:
        st.metric("Predicted class", names[label], f"p = {float(probs[label]):.3f}", delta_color="off",
                  delta_arrow="off")
        show(probability_figure(probs, names, top=min(5, clf.num_classes), title="How sure the model is"),
             key="lesson_probs")


def step_boundary():
    b = _boundary()
    label, j = int(b.label[0]), int(b.boundary_label[0])
    dist = float(b.norms()[0])
    size = float(x.reshape(-1).norm())
    cols = st.columns(3)
    with cols[0]:
        show(image_figure(b.x[0], f"Image: {names[label]}", clf.pixel_range, height=260), key="lesson_b_x")
    with cols[1]:
        show(signed_image_figure(b.perturbation[0], f"The change (length {dist:.3g})", height=260), key="lesson_b_r")
    with cols[2]:
        show(image_figure(b.point[0], f"On the boundary: {names[label]} | {names[j]}", clf.pixel_range, height=260),
             key="lesson_b_z")
    st.markdown(expand(f"The change has length **{dist:.3g}**, {100 * dist / max(size, 1e-12):.1f}% of the image's "
                       f"own length ({size:.3g}); a little more of it and the model answers **{names[j]}**."),
                unsafe_allow_html=True)


def _section_step(spec: str, key: str):
    section = _section(spec)
    show(section_figure(section, title="", height=470), key=key)
    info = section.plane.info
    if "boundary_distance" in info:
        st.caption(f"The image is at the centre; the boundary towards {names[info['boundary_label']]} is "
                   f"{info['boundary_distance']:.3g} away. Each axis is a distance in pixel space.")


def step_flat():
    _section_step(VALID_PLANE, "lesson_flat")


def step_curved():
    _section_step(CURVED_PLANE, "lesson_curved")


def step_spectrum():
    res = _curvatures()
    show(spectrum_figure([res], clf.dim, title=f"Principal curvatures at the boundary point ({len(res.curvatures)} "
                                               f"of {clf.dim - 1})"), key="lesson_spectrum")
    c = res.curvatures
    st.caption(f"Most positive {c[0]:.3g}, most negative {c[-1]:.3g}; "
               f"{'exact' if res.estimator == 'exact' else 'finite-difference'} estimate from "
               f"{res.hvp_count} Hessian-vector products.")


def _path_step(x2, what: str, key: str, x1=None):
    x1 = x if x1 is None else x1
    path = _path(x1.to(clf.dtype), x2.to(clf.dtype).cpu())
    show(margin_figure(path, names), key=key)
    s = path.statistics
    if path.connected:
        guarantee = path.statistics.get("guarantee_text") or path.statistics.get("guarantee")
        st.markdown(f"Connected ({guarantee}). The straight line between the two images spends "
                    f"**{100 * s['chord_outside_fraction']:.0f}%** of its length outside class {names[_label()]}; "
                    f"the path uses {path.n_anchors} bends and is {s['length_ratio']:.3g} times as long as the "
                    f"straight line. {what}")
    else:
        st.warning(f"No path was found within the search budget for this pair ({(path.stopped or {}).get('reason', '')})"
                   "; try another image.")
        return ("Here the search stopped before it found a path, which proves nothing either way: "
                "the straight line leaves the class, and a longer search might still join the two images.")
    return None


def step_path():
    label = _label()
    x1, first, other, leaves = _same_class_pair(label)
    failed = _path_step(other.tensor, f"From {first} to {other.source}.", "lesson_path", x1=x1)
    if failed:
        return failed
    if not leaves:
        others = ", ".join(names[c] for c in (3, 5, 8) if c != label and c < len(names))
        return (f"No straight line between two gallery images of class {names[label]} was seen leaving the class "
                f"(a sampled scan), so here the straight line itself stays inside: the region looks convex. "
                + (f"Try an image of class {others}, where lines often leave." if others else ""))
    return None


def step_adversarial_path():
    label = _label()
    src = _adversarial_source(label)
    x_adv = compute(adversarial_endpoint, src.tensor, label, overshoot=PROJECTION_OVERSHOOT,
                    what="the adversarial image (targeted DeepFool)")[0]
    a, b = st.columns([1, 3])
    with a:
        show(image_figure(x_adv, f"A {names[src.label]} the model calls {names[label]}", clf.pixel_range, height=240),
             key="lesson_adv_img")
    with b:
        return _path_step(x_adv, f"The other end is {src.source} pushed into class {names[label]}.", "lesson_adv_path")


def step_shared():
    S = _subspace()
    vul = compute(held_out_vulnerability, S, VUL_IMAGES, VUL_DRAWS, progress=True, long=True,
                  what=f"random noise on {VUL_IMAGES} held-out images")
    f, c = vul.fooling, vul.concentration
    show(fooling_figure(f.eps, f.subspace, f.whole, c.m, f.clip), key="lesson_fooling")
    fs = f.summary()
    if fs["eps_50_whole"] and fs["eps_50_subspace"]:
        st.markdown(f"Noise of length **{fs['eps_50_subspace']:.3g}** inside S fools the model on half of the images; "
                    f"anywhere else it takes **{fs['eps_50_whole']:.3g}**.")


def step_detect():
    det = _detector()
    ev = compute(held_out_detector_evaluation, det, DET_CAL, DET_EVAL, DET_SIZES, progress=True, long=True,
                 what=f"attacking and scoring {DET_EVAL} held-out images")
    show(score_histograms_figure(ev.clean_scores, ev.rows, det.threshold, 1.0), key="lesson_scores")
    rows = [r for r in ev.rows if r.attack == "deepfool" and r.size == 1.0]
    auc = f"{rows[0].auc:.2f}" if rows and rows[0].auc is not None else "—"
    rate = f"{100 * rows[0].detection_rate:.0f}%" if rows and rows[0].detection_rate is not None else "—"
    ex = compute(detector_examples, det, what="one caught and one missed attack among the gallery images")
    cols = st.columns(2)
    for col, flagged in zip(cols, (True, False)):
        i = ex.pick(flagged)
        with col:
            if i is None:
                st.info("No gallery image fooled by DeepFool was " + ("caught" if flagged else "missed") +
                        " among those tried.")
                continue
            shown = gallery_image(clf, ex.cls[i], ex.index[i])
            verdict = (f"**caught**: score {ex.attacked_score[i]:.3g} > threshold {ex.threshold:.3g}; the recovered "
                       f"label is {names[ex.recovered_label[i]]}" if flagged else
                       f"**missed**: score {ex.attacked_score[i]:.3g} ≤ threshold {ex.threshold:.3g}")
            a, b = st.columns([1, 2])
            with a:
                show(image_figure(shown.tensor, f"{names[ex.cls[i]]} #{ex.index[i]}", clf.pixel_range, height=150),
                     key=f"lesson_example_{int(flagged)}")
            b.markdown(f"After DeepFool the model says **{names[ex.attacked_label[i]]}**; {verdict}.")
    st.markdown(expand(f"Honestly: against DeepFool the [[roc_auc|ROC AUC]] is **{auc}** on held-out images, and "
                       f"**{rate}** of attacked images are flagged when {DET_FPR:.0%} of clean images are. "
                       "Curvature carries a real signal, but it is not a reliable alarm on its own."),
                unsafe_allow_html=True)


STEPS = [  # (title, what to look at, what to notice, render)
    ("The model sees a digit",
     "Here is the image the model reads, as a grid of pixels, and how sure it is of each class.",
     "The model gives every class a score; the highest wins. Pick any image in the sidebar, or draw one.",
     step_sees),
    ("The nearest boundary is very close",
     "[[deepfool|DeepFool]] finds the smallest change that takes the image to the [[boundary|decision boundary]].",
     "The change is faint, yet it is all it takes to reach another class: real images sit close to a boundary.",
     step_boundary),
    ("A flat slice through the boundary",
     "A [[cross_section|cross-section]]: images along the change DeepFool found (towards the boundary) and along a "
     "random change, coloured by the model's answer; the star is the image. Only the unhatched wedge holds valid "
     "images (every pixel inside the [[pixel_range|pixel range]]); the model still answers everywhere else.",
     "Along a random direction the boundary is a straight line: nearly flat.",
     step_flat),
    ("A curved slice",
     "Now across the boundary along the [[normal|normal direction]] and along the direction in which the boundary "
     "bends most ([[principal_curvature|principal curvature]]). These directions leave the pixel range at once "
     "(hatched): it is the model's geometry, not a set of real images.",
     "In a few special directions the boundary clearly bends.",
     step_curved),
    ("Flat in almost every direction, curved in a few",
     "The [[spectrum|curvature spectrum]] at the boundary point: the largest and smallest of its "
     f"{clf.dim - 1} principal curvatures.",
     "Most curvatures are near zero; a few stand out, and more of them on one side ([[negative_curvature|negative]] "
     "or [[positive_curvature|positive]]) than the other.",
     step_spectrum),
    ("Two images of a class are connected",
     "Two images of the same class (when there is one, a pair whose [[chord|straight line]] leaves the class) and "
     "a [[path|connecting path]] between them: the model's [[margin|margin]] for the class along both.",
     "The straight line dips below zero (another class) but the path never does: the [[region|class region]] is "
     "[[connected|connected]], by a path that bends only a little.",
     step_path),
    ("Even an adversarial image is connected",
     "An image of another class pushed into this class by a tiny targeted change, joined to this image by a path.",
     "The [[adversarial|adversarial example]] is not in a separate pocket: a path links it to real images of its "
     "new class.",
     step_adversarial_path),
    ("The curved directions are shared",
     "Averaging curvature over many images gives a few directions, [[subspace_S|S]], curved near all of them. "
     "[[random_noise|Random noise]] inside S against noise of the same length in any direction.",
     "Noise in S changes the answer at a much smaller length than noise anywhere: the curved directions are where "
     "the model is fragile.",
     step_shared),
    ("Can curvature detect an attack?",
     "The [[detector|detector]]'s [[score|score]] on clean and on attacked held-out images, with its "
     "[[threshold|threshold]].",
     "Attacked images tend to score higher than clean ones, but the two overlap: some attacks are caught, some "
     "are not.",
     step_detect),
]

# ------------------------------------------------------------------ page
n = len(STEPS)
links.shared("lesson_step", 1, options=range(1, n + 1))


def _go(delta: int) -> None:
    step_ = int(st.session_state.get("lesson_step", 1))
    st.session_state.lesson_step = min(max(step_ + delta, 1), n)


def _jump() -> None:
    st.session_state.lesson_step = int(st.session_state.lesson_jump)


step = int(st.session_state.lesson_step)
title, look, notice, render = STEPS[step - 1]
nav_back, nav_title, nav_next = st.columns([1, 6, 1], vertical_alignment="center")
nav_back.button("Back", icon=":material/arrow_back:", on_click=_go, args=(-1,), disabled=step == 1,
                key="lesson_back", width="stretch")
nav_next.button("Next", icon=":material/arrow_forward:", on_click=_go, args=(1,), disabled=step == n,
                key="lesson_next", width="stretch", type="primary")
nav_title.markdown(f"#### Step {step} of {n}: {title}")
st.markdown(expand(look), unsafe_allow_html=True)
with guarded(f"step {step}"):
    notice = render() or notice   # a step may say what this image shows instead of the general remark
st.markdown(expand(f"**What to notice:** {notice}"), unsafe_allow_html=True)
if not presentation():
    # its own key: a widget key disappears while the widget is hidden (presentation mode)
    st.session_state.lesson_jump = step
    st.select_slider("Jump to step", options=list(range(1, n + 1)), key="lesson_jump", on_change=_jump,
                     format_func=lambda i: f"{i}. {STEPS[i - 1][0]}")
    glossary_section()
    st.caption(f"The science behind each step, in full: docs/science.md in the repository. After {CITATION}.")
