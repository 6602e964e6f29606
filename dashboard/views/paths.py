"""Paths: is the region of a class connected? A path between two images of one class, proven where the model allows.

Gathers the choices (the sidebar image, a second gallery image of its class or an image of another
class pushed into it), calls geometry.paths (cached per model, images and settings), and hands the
results to dashboard/figures/paths.py. Many-pair statistics run on request.
"""

import time

import numpy as np
import streamlit as st

from dashboard.figures.common import image_figure, probability_figure
from dashboard.figures.paths import (anchor_images_figure, anchors_histogram, margin_figure, outside_histogram,
                                     plane_figure, verdict_message)
from dashboard.jobs import compute
from dashboard.state import current_image, current_model
from dashboard.ui import export_buttons, guarded
from geometry.errors import GeometryError
from geometry.images import gallery_counts, gallery_dataset, gallery_image
from geometry.paths import (DEFAULT_MAX_ANCHORS, DEFAULT_PLANE_RESOLUTION, PROJECTION_OVERSHOOT,
                            adversarial_endpoint, connecting_paths, gallery_pairs, path_plane)
from geometry.tasks import path_walk, predict, verification_mode

WALK_STEPS = 41
PLANE_RESOLUTIONS = [33, 65, 97, 129, 161]
VERIFICATIONS = {
    "auto": "auto",
    "proven (weight-derived Lipschitz bound)": "bound",
    "sampled (local slope estimate, faster)": "local",
}
SAME, ADV = "Another gallery image of the same class", "An image of another class pushed into this class"
PAIR_GROUP = 5  # pairs per cached batch in the many-pairs statistics (progress between batches)


# ------------------------------------------------------------------ computations (in the workers, cached)
def _adversarial(target: int, overshoot: float, x):
    return compute(adversarial_endpoint, x, target, overshoot=overshoot,
                   what="the adversarial end (targeted DeepFool)")[0]


def _path(max_anchors: int, verification: str, overshoot: float, x1, x2):
    return compute(connecting_paths, x1[None], x2[None], max_anchors=max_anchors, verification=verification,
                   overshoot=overshoot, what="the connecting path")[0]


def _walk(path_obj):
    return compute(path_walk, path_obj, WALK_STEPS, what="the walk along the path", quick=True)


def _plane(resolution: int, path_obj):
    return compute(path_plane, path_obj, resolution=resolution, what="the path plane")


def _pairs(n: int, kind: str, seed: int, overshoot: float):
    return compute(gallery_pairs, n, kind=kind, seed=seed, overshoot=overshoot, what=f"{n} {kind} pairs")


def _pair_group(g0: int, max_anchors: int, verification: str, overshoot: float, ps):
    sl = slice(g0, min(g0 + PAIR_GROUP, len(ps.labels)))
    return compute(connecting_paths, ps.x1[sl], ps.x2[sl], label=ps.labels[sl], max_anchors=max_anchors,
                   verification=verification, overshoot=overshoot, what=f"paths {g0 + 1}-{sl.stop}")


# ------------------------------------------------------------------ controls
def _init_state():
    defaults = {"paths_mode": SAME, "paths_max_anchors": DEFAULT_MAX_ANCHORS, "paths_verification": "auto",
                "paths_overshoot": PROJECTION_OVERSHOOT, "paths_resolution": DEFAULT_PLANE_RESOLUTION,
                "paths_walk": 0, "paths_npairs": 10, "paths_kind": "natural", "paths_seed": 0}
    for k, v in defaults.items():
        if k not in st.session_state:
            st.session_state[k] = v


def _second_end(clf, img, label: int, counts: dict):
    """(tensor, description) of the second end, or raises GeometryError with what to do."""
    names = clf.class_names
    if st.session_state.paths_mode == SAME:
        if label not in counts:
            raise GeometryError(f"the gallery has no images of class {names[label]}; choose the adversarial option")
        n = counts[label]
        if "paths_index2" not in st.session_state or st.session_state.get("_paths_index2_class") != label:
            st.session_state._paths_index2_class = label
            same = img.label == label and st.session_state.get("gallery_class") == label
            st.session_state.paths_index2 = (int(st.session_state.get("gallery_index", 0)) + 1) % n if same else 0
        st.session_state.paths_index2 = min(int(st.session_state.paths_index2), n - 1)
        idx = st.number_input(f"Second image: index in the gallery of class {names[label]} (0-{n - 1})", 0, n - 1,
                              key="paths_index2", step=1)
        other = gallery_image(clf, label, int(idx))
        pred = int(compute(predict, other.tensor, what="the second image's prediction", quick=True)[0])
        if pred != label:
            raise GeometryError(f"gallery image {names[label]}#{int(idx)} is predicted as {names[pred]}, not "
                                f"{names[label]}; pick another index")
        return other.tensor, other.source
    classes = [c for c in sorted(counts) if c != label]
    if not classes:
        raise GeometryError("the gallery has no image of another class")
    if st.session_state.get("paths_src_class") not in classes:
        st.session_state.paths_src_class = classes[0]
    c1, c2 = st.columns(2)
    src_class = c1.selectbox("Source image: class", classes, key="paths_src_class")
    n = counts[src_class]
    if st.session_state.get("paths_src_index", 0) >= n:
        st.session_state.paths_src_index = 0
    idx = c2.number_input(f"Source image: index (0-{n - 1})", 0, n - 1, key="paths_src_index", step=1)
    src = gallery_image(clf, src_class, int(idx))
    overshoot = float(st.session_state.paths_overshoot)
    x2 = _adversarial(label, overshoot, src.tensor)
    desc = f"{src.source}, pushed into class {names[label]} by targeted DeepFool"
    return x2, desc


def _stop_text(path, names) -> str:
    s = path.stopped or {}
    where = (f" The first failing segment is number {s['segment'] + 1} of {s['segments']}"
             + (f"; a sample at {100 * s['position']:.1f}% of the partial path is class {names[s['bad_label']]}."
                if s.get("position") is not None and s.get("bad_label") is not None else
                f" (check: {s.get('check')})."))
    return (f"**No verified path found** — {s.get('reason', 'stopped')}: {s.get('detail', '')}.{where} "
            "Nothing below is claimed as a path: the dotted line is where the search stopped. Raise the anchor "
            "budget or try another pair.")


# ------------------------------------------------------------------ page
clf = current_model()
img = current_image()
names = clf.class_names
_init_state()

st.header("Connecting paths inside a classification region")
st.caption("Are two images of one class connected by a path that never leaves the class? The search bisects the "
           "straight chord, moves every midpoint that falls outside back into the region with a minimal targeted "
           "DeepFool step, and checks every segment densely enough that no label change can hide between samples "
           "(Fawzi et al., 2017, found such paths for every pair they tried, nearly straight).")

counts = gallery_counts(gallery_dataset(clf))
label = None
with guarded("classifying the image"):
    label = int(compute(predict, img.tensor, what="the prediction", quick=True)[0])
if label is None:
    st.stop()
st.markdown(f"**First image**: {img.source} (sidebar), predicted **{names[label]}**. The path stays in class "
            f"**{names[label]}**.")
st.radio("Second end", [SAME, ADV], key="paths_mode", horizontal=True)
with st.expander("Search settings", expanded=False):
    s1, s2, s3, s4 = st.columns(4)
    s1.slider("Anchor budget", 1, 64, key="paths_max_anchors",
              help="Most anchor points the search may add; when a path would need more, it says so.")
    s2.selectbox("Segment check", list(VERIFICATIONS), key="paths_verification",
                 format_func=lambda k: k, help="proven: a Lipschitz bound of every logit difference computed from the "
                                               "weights, so no label change can hide between samples (slower near "
                                               "the boundary). sampled: the slope bound is estimated from the "
                                               "samples (safety factor 2): a result reported as sampled, not "
                                               "proven. auto: proven when the model allows it.")
    s3.number_input("DeepFool overshoot", 0.0, 1.0, key="paths_overshoot", step=0.01, format="%.3f")
    s4.select_slider("Plane resolution", PLANE_RESOLUTIONS, key="paths_resolution")

max_anchors = int(st.session_state.paths_max_anchors)
verification = VERIFICATIONS[st.session_state.paths_verification]
overshoot = float(st.session_state.paths_overshoot)
resolution = int(st.session_state.paths_resolution)

path = None
with guarded("finding the path"):
    x2, desc2 = _second_end(clf, img, label, counts)
    st.caption(f"Second end: {desc2}.")
    mode_used = compute(verification_mode, verification, what="the verification mode", quick=True)
    with st.status("Searching for a path…", expanded=True) as status:
        t0 = time.perf_counter()
        path = _path(max_anchors, verification, overshoot, img.tensor.to(clf.dtype), x2.to(clf.dtype).cpu())
        status.update(label=f"Path search done ({time.perf_counter() - t0:.1f} s, {path.evaluations:,} model "
                            f"evaluations; {path.statistics.get('guarantee_text') or path.statistics['guarantee']})", state="complete",
                      expanded=False)

if path is not None:
    st_ = path.statistics
    m = st.columns(7)
    m[0].metric("Connected", "yes" if path.connected else "no",
                ("proven" if path.verified else "sampled, not proven") if path.connected else None, delta_color="off",
                delta_arrow="off")
    m[1].metric("Anchors", path.n_anchors, f"{st_['moved_anchors']} moved", delta_color="off")
    fmt = lambda v, p=3: "—" if v is None else f"{v:.{p}g}"  # noqa: E731
    m[2].metric("Path / chord length", fmt(st_["length_ratio"], 4))
    m[3].metric("Max anchor deviation / chord", fmt(st_["max_chord_deviation"]))
    m[4].metric("Chord outside region", f"{100 * st_['chord_outside_fraction']:.1f}%")
    m[5].metric("Smallest margin on path", fmt(st_["min_margin"]))
    m[6].metric("Model evaluations", f"{path.evaluations:,}")
    if not path.connected:
        st.warning(_stop_text(path, names))
    else:  # "verified" / "certified" only where a proof backs them; sampled checks say so
        kind, text = verdict_message(path, names)
        {"success": st.success, "info": st.info, "warning": st.warning}[kind](text)

    st.subheader("Images along the path")
    with guarded("drawing the anchors"):
        fig_anchors = anchor_images_figure(path, clf.pixel_range)
        st.plotly_chart(fig_anchors, key="paths_anchor_fig")

    pos, pos_ab = None, None
    if path.connected:
        with guarded("walking along the path"):
            s, pts, probs = _walk(path)
            k = st.slider("Walk along the path (step)", 0, WALK_STEPS - 1, key="paths_walk",
                          help="Points evenly spaced in arc length from x1 (0) to x2.")
            pos = float(s[k])
            pred = int(np.argmax(probs[k]))
            w1, w2 = st.columns([1, 2])
            with w1:
                st.plotly_chart(image_figure(pts[k], f"step {k}: {100 * pos:.0f}% of the path", clf.pixel_range),
                                key="paths_walk_image")
            with w2:
                st.plotly_chart(probability_figure(probs[k], names, top=min(5, len(names)),
                                                   title=f"Class probabilities at step {k} (predicted "
                                                         f"{names[pred]})"), key="paths_walk_probs")
    with guarded("drawing the margin"):
        fig_margin = margin_figure(path, names, position=pos)
        st.plotly_chart(fig_margin, key="paths_margin_fig")
        st.caption("Every verification sample of the path is drawn (the check is denser where the margin is small); "
                   "the chord is sampled at "
                   f"{path.parameters['chord_samples']} evenly spaced points. Red: the straight chord has left the "
                   "region.")
        export_buttons(fig_margin, data=path.arrays(), params=path.to_dict(), name="path", key="paths_export_path")

    st.subheader("The path in the plane of the chord and its largest deviation")
    with guarded("evaluating the plane"):
        with st.status("Evaluating the class regions in the plane…", expanded=True) as status:
            plane = _plane(resolution, path)
            status.update(label=f"Plane ready ({plane.section.evaluations:,} model evaluations)", state="complete",
                          expanded=False)
        if pos is not None:
            pl_s = path.arc_positions()
            kk = min(int(np.searchsorted(pl_s, pos, side="right")) - 1, len(pl_s) - 2)
            w = (pos - pl_s[kk]) / max(pl_s[kk + 1] - pl_s[kk], 1e-300)
            pos_ab = plane.path_ab[kk] + w * (plane.path_ab[kk + 1] - plane.path_ab[kk])
        fig_plane = plane_figure(plane, path, pos_ab, title=f"class regions, path and chord ({clf.name})")
        st.plotly_chart(fig_plane, key="paths_plane_fig")
        off = float(plane.offsets.max())
        st.caption(f"u: the chord direction; v: {plane.direction}. Origin: the chord's midpoint. "
                   + (f"Anchors off this plane are drawn at their projection (largest distance {off:.3g}); the "
                      "background is the plane itself, so the drawn path may cross coloured regions the real "
                      "path avoids." if off > 1e-6 else "Every path point lies in this plane."))
        export_buttons(fig_plane, data=plane.arrays(), params=plane.section.summary(), name="path_plane",
                       key="paths_export_plane")

# ------------------------------------------------------------------ many pairs
st.divider()
st.subheader("Many pairs")
st.caption("Pairs drawn from the held-out gallery, classes in turn: two correctly classified images of a class "
           "(natural), or a natural image and an image of another class pushed into its class by targeted DeepFool "
           "(adversarial). Uses the search settings above.")
c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
c1.slider("Number of pairs", 2, 50, key="paths_npairs")
c2.radio("Pairs", ["natural", "adversarial"], key="paths_kind", horizontal=True)
c3.number_input("Seed", 0, 2**31 - 1, key="paths_seed", step=1)
if c4.button("Compute statistics", key="paths_run_stats", type="primary"):
    st.session_state.paths_stats_request = (int(st.session_state.paths_npairs), st.session_state.paths_kind,
                                            int(st.session_state.paths_seed))
req = st.session_state.get("paths_stats_request")
if req is None:
    st.info("Press **Compute statistics** to search paths for many pairs (natural pairs take well under a second "
            "each on a CPU with the proven check; adversarial pairs several seconds).")
else:
    n, kind, seed = req
    with guarded("computing the many-pair statistics"):
        from geometry.paths import PathStatistics

        bar = st.progress(0.0, text="Drawing the pairs…")
        t0 = time.perf_counter()
        ps = _pairs(n, kind, seed, overshoot)
        paths = []
        total = len(ps.labels)
        for g0 in range(0, total, PAIR_GROUP):
            bar.progress(g0 / max(total, 1), text=f"Pairs {g0 + 1}-{min(total, g0 + PAIR_GROUP)} of {total}…")
            paths += _pair_group(g0, max_anchors, verification, overshoot, ps)
        stats = PathStatistics(paths, ps.descriptions, kind, dict(paths[0].parameters) if paths else {},
                               time.perf_counter() - t0)
        bar.progress(1.0, text=f"{total} pairs done in {stats.seconds:.1f} s (including cached results)")
        summ = stats.summary()
        k1, k2, k3, k4 = st.columns(4)
        k1.metric("Pairs connected", f"{summ['connected']} / {summ['pairs']}",
                  f"{summ['verified']} proven, {summ['sampled_only']} sampled only", delta_color="off")
        a = summ["anchors"] or {}
        k2.metric("Anchors (mean, max)", f"{a.get('mean', 0):.2g}, {a.get('max', 0):.0f}" if a else "—")
        k3.metric("Chord leaves the region", f"{100 * summ['chord_leaves_region_fraction']:.0f}% of pairs")
        lr = summ["length_ratio"] or {}
        k4.metric("Path / chord (max)", f"{lr.get('max', float('nan')):.4g}" if lr else "—")
        h1, h2 = st.columns(2)
        with h1:
            fig_h1 = anchors_histogram(stats)
            st.plotly_chart(fig_h1, key="paths_hist_anchors")
        with h2:
            fig_h2 = outside_histogram(stats)
            st.plotly_chart(fig_h2, key="paths_hist_outside")
        st.dataframe(stats.table(), hide_index=True, width="stretch")
        export_buttons(fig_h1, data=stats.arrays(), params={k: v for k, v in summ.items()} | {"parameters":
                                                                                              stats.parameters},
                       name=f"paths_{kind}_{n}", key="paths_export_stats")
