"""Compare models: the sidebar's image under 2-4 models side by side.

For each model: its prediction, its DeepFool distance to the nearest boundary (and the class across), a
cross-section of the same plane construction (each model's own boundary point and normal; only the random
direction is shared), and its curvature spectrum; then all distances in one bar chart and all spectra on one
pair of axes. Every model call is a job (dashboard.jobs.compute with the model's ModelRef).
"""

import time

import streamlit as st

from dashboard import links
from dashboard.figures.compare import distance_figure, spectra_figure
from dashboard.figures.sections import section_figure
from dashboard.glossary import formulas, plain
from dashboard.jobs import compute, current_ref
from dashboard.state import current_image, current_model, load_facts, zoo_ref
from dashboard.ui import export_buttons, guarded, presentation, show
from geometry.boundary import boundary_point
from geometry.curvature import principal_curvatures
from geometry.sections import EXTENT_FACTOR, default_estimator, default_extent, make_plane, section_on_plane
from geometry.tasks import probabilities
from geometry.zoo import zoo_names

DEFAULT_MODELS = ["mnist_lenet_relu", "mnist_lenet_gelu", "mnist_lenet_gelu_pgd"]
MAX_MODELS = 4
PLANES = {  # label -> spec
    "Flat: normal + random tangent": "normal,random",
    "Curved: normal + top positive curvature": "normal,curv+",
    "Two random directions (the same plane for every model)": "random,random",
}
ESTIMATORS = {  # label -> estimator (None: each model's default)
    "finite differences for every model (same step h)": "fd",
    "each model's default (exact for smooth models)": None,
}
RESOLUTIONS = [33, 65, 97, 129]
KS = [5, 10, 20]
SECTION_HEIGHT = 300  # the first row of figures fits a 1280x720 window under the header
UPLOADED = "uploaded: "


# ------------------------------------------------------------------ choices
def _options(clf) -> tuple[list[str], dict]:
    """Model choices (the bundled models, and the sidebar's uploaded model when there is one) and their refs."""
    device = st.session_state.get("device_choice", "auto")
    names = zoo_names()
    refs = {n: (lambda n=n: zoo_ref(n, device)) for n in names}
    if clf.name not in names:  # the sidebar's model is an upload: offer it too
        up = UPLOADED + clf.name
        refs[up] = current_ref
        names = [up] + names
    return names, refs


def _default(options: list[str]) -> list[str]:
    picked = [n for n in DEFAULT_MODELS if n in options]
    return picked if len(picked) >= 2 else options[:2]


def _settings() -> None:
    with st.expander("Plane and curvature settings", expanded=False):
        c1, c2, c3, c4, c5 = st.columns([3, 1, 1, 1, 3])
        c1.selectbox("Plane", list(PLANES), key="cmp_plane")
        c2.number_input("Seed", 0, 2**31 - 1, key="cmp_seed", step=1,
                        help="Seed of the random direction, the same for every model.")
        c3.select_slider("Resolution", RESOLUTIONS, key="cmp_resolution")
        c4.select_slider("Curvatures per end", KS, key="cmp_k",
                         help="Lanczos finds this many of the most positive and of the most negative curvatures.")
        c5.selectbox("Curvature estimator", list(ESTIMATORS), key="cmp_estimator",
                     help="Finite differences work on every model (ReLU networks have zero exact curvature) and use "
                          "the same step h for models of the same input size, so their spectra are comparable.")
        st.checkbox("Same scale for every model", key="cmp_same_scale",
                    help=f"Every cross-section spans the same square: {EXTENT_FACTOR:g} x the largest of the models' "
                         "boundary distances. Off: each model gets its own.")


# ------------------------------------------------------------------ page
clf = current_model()
img = current_image()
options, refs = _options(clf)
links.shared("cmp_models", _default(options), options=options,
             check=lambda v: 2 <= len(v) <= MAX_MODELS and len(set(v)) == len(v))
links.shared("cmp_plane", list(PLANES)[0], options=list(PLANES))
links.shared("cmp_seed", 0, check=lambda v: 0 <= v < 2**31)
links.shared("cmp_resolution", 65, options=RESOLUTIONS)
links.shared("cmp_k", 10, options=KS)
links.shared("cmp_estimator", list(ESTIMATORS)[0], options=list(ESTIMATORS))
links.shared("cmp_same_scale", True)

st.header("Compare models")
plain("The same image under several models: how far each model's [[boundary]] lies, a flat "
      "[[cross_section]] around it, and how the boundary [[curvature|bends]] (an [[adversarial_training|"
      "adversarially trained]] model's boundary usually lies farther away).")
st.multiselect(f"Models (2-{MAX_MODELS}; the sidebar image is the same for all)", options, key="cmp_models",
               max_selections=MAX_MODELS)
chosen = list(st.session_state.cmp_models)[:MAX_MODELS]
spec = PLANES[st.session_state.cmp_plane]
seed = int(st.session_state.cmp_seed)
resolution = int(st.session_state.cmp_resolution)
k = int(st.session_state.cmp_k)
estimator = ESTIMATORS[st.session_state.cmp_estimator]
same_scale = bool(st.session_state.cmp_same_scale)

if len(chosen) < 2:
    st.info("Choose at least two models to compare.")
    _settings()
    st.stop()

x = img.tensor
shape = tuple(x.shape)
cols = st.columns(len(chosen))
progress = st.progress(0.0, text="Loading the models…")
count = {"done": 0, "steps": 3 * len(chosen)}
t0 = time.perf_counter()
rows: dict[str, dict] = {}      # model -> numbers
ready: dict[str, tuple] = {}    # model -> (ref, facts, boundary, plane)


def _tick(text: str) -> None:
    count["done"] += 1
    progress.progress(min(count["done"] / max(count["steps"], 1), 1.0), text=text)


# 1. each model's facts, prediction, boundary point and plane (quick): the numbers appear at once
for i, (col, name) in enumerate(zip(cols, chosen)):
    with col:
        with guarded(f"analysing {name}"):
            ref = refs[name]()
            facts = load_facts(ref, f"loading {name}")
            if tuple(facts.input_shape) != shape or tuple(facts.pixel_range) != tuple(clf.pixel_range):
                st.warning(f"**{name}** takes inputs of shape {'x'.join(map(str, facts.input_shape))} with pixels "
                           f"in [{facts.pixel_range[0]:g}, {facts.pixel_range[1]:g}]; the sidebar image has shape "
                           f"{'x'.join(map(str, shape))} with pixels in [{clf.pixel_range[0]:g}, "
                           f"{clf.pixel_range[1]:g}] (converted for {clf.name}). Models are compared on the same "
                           f"image, so only models of the same input can be compared: choose {name} in the sidebar "
                           "to analyse it on its own images.")
                count["steps"] -= 3
                continue
            names = facts.class_names
            probs = compute(probabilities, x[None], model=ref, what=f"{name}'s prediction", quick=True)[0]
            pred = int(probs.argmax())
            bp = compute(boundary_point, x, model=ref, what=f"{name}'s boundary point (DeepFool)")
            _tick(f"{name}: boundary point found")
            dist = float(bp.norms()[0])
            across = int(bp.boundary_label[0])
            m1, m2 = st.columns(2)
            m1.metric(name, names[pred], f"predicted, {100 * float(probs[pred]):.1f}%", delta_color="off",
                      delta_arrow="off", help=f"{name}'s answer for the sidebar image and its probability.")
            m2.metric("Boundary distance", f"{dist:.3g}", f"to class {names[across]}", delta_color="off",
                      delta_arrow="off", help="L2 length of the smallest change found (DeepFool, then bisection onto "
                                              "the boundary) that changes this model's answer.")
            est = estimator if "curv" in spec else None  # only curved planes depend on it (keeps the cache warm)
            plane = compute(make_plane, x, spec, seed=seed, estimator=est, boundary=bp, model=ref,
                            what=f"{name}'s plane")
            ready[name] = (ref, facts, bp, plane)
            rows[name] = {"model": name, "prediction": names[pred], "probability": round(float(probs[pred]), 4),
                          "boundary_distance": dist, "boundary_class": names[across],
                          "converged": bool(bp.converged[0])}

if len(ready) < 2:
    progress.empty()
    st.info("At least two models with the sidebar image's input shape are needed for a comparison.")
    _settings()
    st.stop()

# 2. the cross-sections, on one common square unless asked otherwise
extents = {n: default_extent(p) for n, (_, _, _, p) in ready.items()}
common = max(extents.values())
sections = {}
for i, (col, name) in enumerate(zip(cols, chosen)):
    if name not in ready:
        continue
    ref, facts, bp, plane = ready[name]
    with col:
        with guarded(f"{name}'s cross-section"):
            sec = compute(section_on_plane, plane, extent=common if same_scale else extents[name],
                          resolution=resolution, what=f"{name}'s {resolution}x{resolution} cross-section", model=ref)
            _tick(f"{name}: cross-section drawn")
            sections[name] = sec
            fig = section_figure(sec, title="", height=SECTION_HEIGHT, click_points=False)
            fig.update_layout(showlegend=False, margin=dict(l=10, r=10, t=10, b=10))  # narrow: the caption explains
            show(fig, key=f"cmp_section_{i}")
            rows[name]["section_extent"] = float(sec.extent)

if not presentation():
    st.caption(("Each plane passes through that model's own boundary point and spans its own normal (the boundary "
                f"differs per model); the random direction (seed {seed}) is shared. " if spec != "random,random" else
                f"One plane for every model: the image and two random directions (seed {seed}). ")
               + (f"Every square has the same half-width {common:.3g} (L2 pixel units)." if same_scale else
                  "Each square has its own half-width.")
               + " Star: the image; diamond: the boundary point z; black line: the decision boundary; hatched: "
                 "outside the pixel range (not a valid image). Hover a point for its class and margin.")

# 3. the curvature spectra at each model's boundary point, then both comparison figures
curv = {}
for name in chosen:
    if name not in ready:
        continue
    ref, facts, bp, plane = ready[name]
    with guarded(f"{name}'s curvature spectrum"):
        res = compute(principal_curvatures, x, estimator=estimator or default_estimator(facts),
                      k=k, boundary=bp, full=False, model=ref, what=f"{name}'s curvature spectrum")
        curv[name] = res
        rows[name].update(estimator=res.estimator, step=res.step, largest_curvature=float(res.curvatures.max()),
                          most_negative_curvature=float(res.curvatures.min()),
                          curvatures=[float(c) for c in res.curvatures])
    _tick(f"{name}: curvature spectrum done")
progress.empty()

names_ok = [n for n in chosen if n in ready]
b1, b2 = st.columns([2, 3])
with b1:
    fig_d = distance_figure(names_ok, [rows[n]["boundary_distance"] for n in names_ok],
                            [rows[n]["boundary_class"] for n in names_ok])
    show(fig_d, key="cmp_distances")
with b2:
    spec_names = [n for n in names_ok if n in curv]
    if spec_names:
        labels = [n + (f" ({curv[n].estimator}" + (f", h = {curv[n].step:.3g})" if curv[n].step else ")"))
                  for n in spec_names]
        fig_s = spectra_figure([curv[n] for n in spec_names], labels, int(x.numel()))
        show(fig_s, key="cmp_spectra")
for n in names_ok:
    if n in curv and curv[n].warning and not presentation():
        st.caption(f"{n}: {curv[n].warning}")

summary = [rows[n] for n in names_ok]
st.dataframe([{k_: v for k_, v in r.items() if k_ != "curvatures"} for r in summary], hide_index=True,
             width="stretch")
formulas("The boundary distance is $|z - x_0|$ for the boundary point $z$ that DeepFool (then bisection) finds "
         "from the image $x_0$: the smallest change it found that changes the model's answer. The curvatures are "
         "the eigenvalues of $P H P / |\\nabla F|$ at $z$, $F = f_k - f_j$ ($k$ the image's class, $j$ the class "
         "across), $H$ the Hessian of $F$ (or its finite-difference estimate at step $h$), $P$ the projection onto "
         "the tangent directions. Positive: the boundary bends towards class $j$. See docs/science.md sections 2-3.")
_settings()
export_buttons(None, params={"image": img.source, "plane": spec, "seed": seed, "resolution": resolution, "k": k,
                             "estimator": estimator or "default", "same_scale": same_scale,
                             "models": summary, "seconds": round(time.perf_counter() - t0, 2)},
               name="compare_models", key="cmp_export")
