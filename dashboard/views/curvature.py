"""Curvature: the image's boundary point and the principal curvatures of the boundary there.

Gathers the choices, calls geometry.boundary / geometry.curvature (cached per model, image and
settings), and hands the results to dashboard/figures/curvature.py. Nothing is computed here.
"""

import time

import numpy as np
import streamlit as st

from dashboard.figures.common import image_figure, signed_image_figure
from dashboard.figures.curvature import (asymmetry_figure, asymmetry_table, direction_figures, estimator_label,
                                         profile_figure, spectrum_figure)
from dashboard.jobs import compute
from dashboard.state import current_image, current_model, model_key
from dashboard import links
from dashboard.glossary import formulas, plain
from dashboard.ui import export_buttons, guarded, show
from geometry.boundary import boundary_point
from geometry.curvature import SIGN_CONVENTION, auto_full, curvature_profile, principal_curvatures
from geometry.lanczos import FULL_SPECTRUM_MAX_DIM
from geometry.operators import default_step
from geometry.tasks import curvature_asymmetry_summary

ESTIMATOR_CHOICES = ["auto", "exact", "fd"]
ASYM_DEFAULT_POINTS, ASYM_MIN_POINTS, ASYM_MAX_POINTS = 20, 2, 200
ASYM_LOCATIONS = {"both": ("boundary", "inside"), "boundary": ("boundary",), "inside": ("inside",)}
ESTIMATOR_HELP = ("exact: the autograd Hessian (zero almost everywhere for ReLU / max-pool networks). fd: central "
                  "differences of gradients at step h, i.e. curvature at the scale h (the original paper's choice "
                  "for ReLU networks). auto: exact for smooth networks, fd for piecewise-linear ones.")


# ------------------------------------------------------------------ computations (in the workers, cached)
def _boundary(target, x):
    return compute(boundary_point, x, target=target, what="the boundary point")


def _curvature(target, estimator: str, step, k: int, full: bool, x, boundary):
    return compute(principal_curvatures, x, estimator=estimator, step=step, k=k, boundary=boundary, target=target,
                   full=full, what=f"the principal curvatures ({estimator})")


def _profile(res):
    return compute(curvature_profile, res, indices=(0, -1), what="the curvature profiles")


def _asymmetry(points: int, k: int, locations: tuple):
    return compute(curvature_asymmetry_summary, points, k, locations, progress=True, long=True,
                   what=f"the curvature asymmetry over {points} images")


def _auto_estimator(clf) -> str:
    return "exact" if clf.piecewise_linear is False else "fd"


def _init_state(clf):
    links.shared("curv_estimator", "auto", options=ESTIMATOR_CHOICES)
    links.shared("curv_k", 10, options=range(2, 51))
    links.shared("curv_compare", True)
    links.shared("curv_full", False)
    links.shared("curv_target", "nearest", options=["nearest"] + [f"{i}: {n}" for i, n in enumerate(clf.class_names)])
    links.shared("curv_ndirs", 3, options=range(1, 7))
    links.shared("curv_asym_points", ASYM_DEFAULT_POINTS, options=range(ASYM_MIN_POINTS, ASYM_MAX_POINTS + 1))
    links.shared("curv_asym_location", "both", options=list(ASYM_LOCATIONS))
    # the step default depends on the model (its d and pixel range): reset it when the model changes
    h0 = default_step(clf)
    if st.session_state.get("curv_step_model") != model_key():
        st.session_state.curv_step_model = model_key()
        st.session_state.curv_step = float(f"{h0:.4g}")


def _settings(clf, d):
    with st.expander("Settings", expanded=False):
        c1, c2, c3 = st.columns(3)
        c1.radio("Estimator", ESTIMATOR_CHOICES, key="curv_estimator", horizontal=True, help=ESTIMATOR_HELP)
        c1.number_input("Finite-difference step h (pixel-space L2 length)", min_value=1e-6, format="%.4g",
                        key="curv_step", help=f"Default c·√d·span/512 with c = 10: {default_step(clf):.4g} for this "
                                              "model. Used by the fd estimator only.")
        c2.slider("Curvatures per end of the spectrum (k)", 2, 50, key="curv_k",
                  help="Lanczos finds the k most positive and the k most negative curvatures")
        full_ok = d <= FULL_SPECTRUM_MAX_DIM
        c2.checkbox(f"Full spectrum (all {d - 1} curvatures; {d} Hessian-vector products)", key="curv_full",
                    disabled=not full_ok, help="Offered up to d = 4096" if full_ok else f"d = {d} is too large")
        c2.checkbox("Compare both estimators on one plot", key="curv_compare")
        targets = ["nearest"] + [f"{i}: {n}" for i, n in enumerate(clf.class_names)]
        if st.session_state.curv_target not in targets:
            st.session_state.curv_target = "nearest"
        c3.selectbox("Boundary with class", targets, key="curv_target",
                     help="nearest: the class DeepFool reaches first; or the boundary towards a chosen class (targeted)")
        c3.slider("Directions shown per sign", 1, 6, key="curv_ndirs")


# ------------------------------------------------------------------ page
clf = current_model()
img = current_image()
mkey = model_key()
_init_state(clf)
d = clf.dim

st.header("Principal curvatures of the decision boundary")
plain("How much does the [[boundary|decision boundary]] bend at the point nearest to the image? Each bar is one "
      "[[principal_curvature|principal curvature]]: almost all are close to zero (flat), a few are large.")
formulas("DeepFool (without overshoot) and a bisection find the point z on the decision boundary closest to the "
         "image along its minimal perturbation. There the boundary is a (d − 1)-dimensional surface; its principal "
         "curvatures are the eigenvalues of $P H P / |\\nabla F|$ for $F = f_k - f_j$, with $H$ the Hessian of F at z "
         "and $P$ the projection onto the tangent space. Near real images almost all of them are close to zero and a "
         "few are large, with more on one side than the other. Sign convention: " + SIGN_CONVENTION
         + " See docs/science.md section 3.")

choice = st.session_state.curv_estimator
estimator = _auto_estimator(clf) if choice == "auto" else choice
step = float(st.session_state.curv_step)
k = int(st.session_state.curv_k)
full = bool(st.session_state.curv_full) and d <= FULL_SPECTRUM_MAX_DIM
target = None if st.session_state.curv_target == "nearest" else int(st.session_state.curv_target.split(":")[0])
estimators = [estimator] + ([e for e in ("exact", "fd") if e != estimator] if st.session_state.curv_compare else [])
# one method for every estimator so the overlaid spectra are comparable index by index
full = full or any(auto_full(d, e) for e in estimators)

results = {}
boundary = None
t0 = time.perf_counter()
first = st.empty()   # the main estimator's spectrum, drawn before the comparison is computed


def _title(res_list) -> str:
    # the estimators are named in the legend; the title stays one line
    return ("Principal curvatures at z" + (" (full spectrum)" if res_list[0].method == "full" else
                                          f" (Lanczos, k = {k} per end)"))


with guarded("finding the boundary point and its curvatures"):
    with st.status("Computing the boundary point and curvatures…", expanded=True) as status:
        bar = st.progress(0.0, text="Boundary point (DeepFool + bisection)…")
        boundary = _boundary(target, img.tensor)
        for i, est in enumerate(estimators):
            bar.progress((i + 1) / (len(estimators) + 1),
                         text=f"Principal curvatures, {est} estimator ({'full spectrum' if full else f'Lanczos, k = {k}'})…")
            results[est] = _curvature(target, est, step if est == "fd" else None, k, full, img.tensor, boundary)
            if i == 0 and len(estimators) > 1:
                with first.container():
                    show(spectrum_figure([results[est]], d, title=_title([results[est]])), key="curv_spectrum_first")
        bar.progress(1.0, text="Done")
        status.update(label=f"Boundary point and curvatures ready ({time.perf_counter() - t0:.1f} s including cached "
                            "results)", state="complete", expanded=False)
first.empty()

if results:
    main = results[estimator]
    if main.warning:
        st.info(main.warning)
    for est, res in results.items():
        if est != estimator and res.warning and est == "exact":
            st.caption(f"Exact estimator: {res.warning}")
    fig = spectrum_figure(list(results.values()), d, title=_title(list(results.values())))
    show(fig, key="curv_spectrum")
    stats = []
    for est, res in results.items():
        c = res.curvatures
        stats.append(f"**{estimator_label(res)}**: {len(c)} curvatures, most positive {c[0]:.4g}, most negative "
                     f"{c[-1]:.4g}; {res.hvp_count} Hessian-vector products; "
                     f"{'converged' if res.converged else 'not converged'}; |∇F| = {res.gradient_norm:.4g}.")
    st.markdown("\n".join(f"- {s}" for s in stats))
    export_buttons(fig, data={f"{est}_{key}": v for est, res in results.items() for key, v in res.arrays().items()},
                   params={"model": clf.name, "image": img.source, "target": target,
                           **{est: res.summary() for est, res in results.items()}},
                   name=f"curvature_{clf.name}", key="curv_export")

if boundary is not None:
    b = boundary
    label, j = int(b.label[0]), int(b.boundary_label[0])
    names = clf.class_names
    st.subheader("The image, its nearest boundary point and the change between them")
    cols = st.columns(3)
    with cols[0]:
        show(image_figure(b.x[0], f"Image x: class {names[label]}", clf.pixel_range), key="curv_x")
    with cols[1]:
        show(image_figure(b.point[0], f"Boundary point z: {names[label]} | {names[j]}", clf.pixel_range),
             key="curv_z")
    with cols[2]:
        show(signed_image_figure(b.perturbation[0], f"Perturbation r = z − x, |r| = {float(b.norms()[0]):.3g}"),
             key="curv_r")
    facts = (f"Boundary between **{names[int(b.side_label[0])]}** and **{names[j]}** at L2 distance "
             f"**{float(b.norms()[0]):.4g}** after {int(b.iterations[0])} DeepFool iterations; residual "
             f"|f_k − f_j| = {float(b.residual[0]):.2g}.")
    if bool(b.clipped[0]):
        facts += " The pixel range clipped the DeepFool steps (the point is the nearest boundary point inside the range)."
    st.markdown(facts)
    if not bool(b.converged[0]):
        st.error("No boundary point was found within the iteration budget for this image (the model's region may "
                 "fill the pixel range in every direction DeepFool tried); pick another image or a target class.")

if results:
    st.subheader(f"Most curved directions ({estimator_label(main)})")
    st.caption("Unit tangent directions at z (red: positive pixel change, blue: negative). Sliding along a positive "
               "direction leads back into the image's class; along a negative one, across into the other class.")
    nd = int(st.session_state.curv_ndirs)
    for which in ("positive", "negative"):
        figs = direction_figures(main, which, nd, clf.input_shape)
        st.markdown(f"**Most {which}**")
        cols = st.columns(max(len(figs), 1))
        for i, (col, f) in enumerate(zip(cols, figs)):
            with col:
                show(f, key=f"curv_dir_{which}_{i}")

    with guarded("drawing the curvature profiles"):
        prof = _profile(main)
        pfig = profile_figure(prof)
        show(pfig, key="curv_profile")
        st.caption("The model's f_k − f_j along the top positive and the most negative direction through z, with "
                   "the quadratic κ|∇F|t²/2 the curvature predicts: the same sign near t = 0 is the convention above.")
        export_buttons(pfig, data={k_: np.asarray(v) for k_, v in prof.items()}, name="curvature_profile",
                       key="curv_profile_export")

_settings(clf, d)


# ------------------------------------------------------------------ many images
def _asymmetry_section(clf, d):
    """The paper's statistic: the mean sorted spectrum over many held-out images, run on request."""
    st.subheader("Curvature asymmetry over many images")
    plain("Is the boundary bent more one way than the other near real images? This averages the sorted "
          "[[spectrum|curvature spectrum]] over many held-out images: the [[positive_curvature|positive]] end against "
          "the [[negative_curvature|negative]] end, with a 95% band.")
    kmax = max(1, (d - 1) // 2)
    k_asym = min(int(st.session_state.curv_k), kmax)
    auto = ("exact Hessian" if clf.piecewise_linear is False else
            f"finite differences at h = 0.5, 1 and 2 × {default_step(clf):.3g}")
    with st.expander("Run the asymmetry over many images", expanded=True):
        c1, c2 = st.columns(2)
        c1.number_input("Number of held-out images", ASYM_MIN_POINTS, ASYM_MAX_POINTS, step=10,
                        key="curv_asym_points",
                        help="Each image costs one curvature spectrum per location and estimator (about 0.1-0.5 s "
                             "each on a CPU); images whose boundary search fails are dropped and counted.")
        c2.radio("Where", list(ASYM_LOCATIONS), key="curv_asym_location", horizontal=True,
                 help="boundary: at each image's boundary point. inside: at x + 0.8 r, the point of the authors' "
                      "code (r = their DeepFool perturbation, at most 5 iterations), still inside the class. "
                      "both: each.")
        st.caption(f"k = {k_asym} curvatures per end (the page's setting); estimator: {auto} (auto for this "
                   "model). The same numbers come from `python -m geometry asymmetry`.")
        if st.button("Compute the asymmetry", key="curv_asym_run", type="primary"):
            st.session_state.curv_asym_request = {"model": mkey, "points": int(st.session_state.curv_asym_points),
                                                  "k": k_asym, "location": st.session_state.curv_asym_location}
    req = st.session_state.get("curv_asym_request")
    if not req or req.get("model") != mkey:
        return
    with guarded("the curvature asymmetry"):
        result = _asymmetry(req["points"], req["k"], ASYM_LOCATIONS[req["location"]])
        fig = asymmetry_figure(result)
        show(fig, key="curv_asym_figure")
        st.dataframe(asymmetry_table(result), hide_index=True, width="stretch")
        st.caption("Band: " + result["band"] + ". Mostly positive / negative: the share of images whose 2k curvatures "
                   "sum to more / less than zero. Ratio: mean of the k most positive over the mean magnitude of the k "
                   "most negative (above 1: the positive end is larger). See docs/science.md section 3.")
        for e in result["results"]:
            if e["warning"]:
                st.info(f"{e['location']}, {e['estimator']}: {e['warning']}")
        export_buttons(fig, params=result, name=f"curvature_asymmetry_{clf.name}", key="curv_asym_export")


_asymmetry_section(clf, d)
