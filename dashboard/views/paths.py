"""Paths: is the region of a class connected? A path between two images of one class, proven where the model allows.

Gathers the choices (the sidebar image, a second gallery image of its class or an image of another
class pushed into it), calls geometry.paths (cached per model, images and settings), and hands the
results to dashboard/figures/paths.py. Many-pair statistics run on request.
"""

import time

import numpy as np
import streamlit as st

from dashboard import links
from dashboard.figures.common import image_figure, probability_figure
from dashboard.figures.paths import (anchor_images_figure, anchors_histogram, margin_figure, outside_histogram,
                                     plane_figure, verdict_message)
from dashboard.glossary import formulas, plain
from dashboard.jobs import compute
from dashboard.state import current_image, current_model
from dashboard.ui import export_buttons, guarded, presentation, show
from geometry.errors import GeometryError
from geometry.images import gallery_counts, gallery_dataset, gallery_image
from geometry.paths import (DEFAULT_MAX_ANCHORS, DEFAULT_PLANE_RESOLUTION, PROJECTION_OVERSHOOT,
                            adversarial_endpoint, connecting_paths, gallery_chord_scan, gallery_class_leaving_pairs,
                            gallery_pairs, path_plane)
from geometry.tasks import path_walk, predict

WALK_STEPS = 41
PLANE_RESOLUTIONS = [33, 65, 97, 129, 161]
VERIFICATIONS = {
    "auto": "auto",
    "proven (weight-derived Lipschitz bound)": "bound",
    "sampled (local slope estimate, faster)": "local",
}
LEAVES = "A pair whose straight line leaves the class (the interesting case)"
EASY = "An easy pair (the straight line stays inside)"
SAME, ADV = "Another gallery image of the same class", "An image of another class pushed into this class"
LEAVING_SHOWN = 5  # pairs offered in the "leaves the class" choice
PAIR_GROUP = 5  # pairs per cached batch in the many-pairs statistics (progress between batches)
PLOT_HEIGHT = 360  # the margin and plane figures side by side fit a 1280x720 window under the header


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


def _partners(label: int, x):
    return compute(gallery_chord_scan, x, label, what="the straight lines to the other gallery images of the class")


def _class_pairs(label: int):
    return compute(gallery_class_leaving_pairs, label, what="pairs of the class whose straight line leaves it")


def _pair_group(g0: int, max_anchors: int, verification: str, overshoot: float, ps):
    sl = slice(g0, min(g0 + PAIR_GROUP, len(ps.labels)))
    return compute(connecting_paths, ps.x1[sl], ps.x2[sl], label=ps.labels[sl], max_anchors=max_anchors,
                   verification=verification, overshoot=overshoot, what=f"paths {g0 + 1}-{sl.stop}")


# ------------------------------------------------------------------ controls
def _init_state(label: int, modes: list[str]):
    links.shared("paths_mode", modes[0], options=modes)
    links.shared("paths_leave_pick", 0, options=list(range(LEAVING_SHOWN)))
    if "_paths_url_seen" not in st.session_state:  # the session's first visit: a shared link's second image
        st.session_state._paths_url_seen = True
        if "paths_index2" in st.query_params:
            st.session_state._paths_index2_class = label
    links.shared("paths_index2", 0, check=lambda v: v >= 0)
    links.shared("paths_max_anchors", DEFAULT_MAX_ANCHORS, options=range(1, 65))
    links.shared("paths_verification", "auto", options=list(VERIFICATIONS))
    links.shared("paths_overshoot", PROJECTION_OVERSHOOT, check=lambda v: 0.0 <= v <= 1.0)
    links.shared("paths_resolution", DEFAULT_PLANE_RESOLUTION, options=PLANE_RESOLUTIONS)
    links.shared("paths_src_class", -1)
    links.shared("paths_src_index", 0, check=lambda v: v >= 0)
    links.shared("paths_npairs", 10, options=range(2, 51))
    links.shared("paths_kind", "natural", options=["natural", "adversarial"])
    links.shared("paths_seed", 0, check=lambda v: 0 <= v < 2**31)
    if "paths_walk" not in st.session_state:
        st.session_state.paths_walk = 0


def _pair_ends(clf, img, label: int, counts: dict, scan, class_pairs):
    """(x1, x2, description of x1, description of x2, what to look at) for the chosen second end, or raises
    GeometryError with what to do."""
    names = clf.class_names
    mode = st.session_state.paths_mode
    first = f"{img.source} (sidebar)"
    if mode == LEAVES:
        own, pairs = scan.leaving(), class_pairs
        if len(own):
            opts = list(range(min(LEAVING_SHOWN, len(own))))
            fmt = lambda r: (f"{names[label]}#{int(own.second[r])}: {100 * own.outside_fraction[r]:.0f}% of the "  # noqa: E731
                             f"straight line outside (through class {names[int(own.exit_label[r])]})")
            x1, ref = img.tensor, own
        else:
            opts = list(range(min(LEAVING_SHOWN, len(pairs))))
            fmt = lambda r: (f"{names[label]}#{int(pairs.first[r])} → {names[label]}#{int(pairs.second[r])}: "  # noqa: E731
                             f"{100 * pairs.outside_fraction[r]:.0f}% outside (through class "
                             f"{names[int(pairs.exit_label[r])]})")
            ref = pairs
        if int(st.session_state.paths_leave_pick) not in opts:
            st.session_state.paths_leave_pick = 0
        r = st.selectbox("Which pair", opts, key="paths_leave_pick", format_func=fmt)
        second = gallery_image(clf, label, int(ref.second[r]))
        if len(own):
            x1 = img.tensor
        else:
            one = gallery_image(clf, label, int(ref.first[r]))
            x1, first = one.tensor, (f"{one.source}, in place of the sidebar image ({img.source}): its straight lines "
                                     f"to the other {names[label]}s of the gallery all stay in class {names[label]}")
        look = (f"**What to look at:** the straight line between the two images leaves class {names[label]} (red, "
                f"through class {names[int(ref.exit_label[r])]}); the path bends around that region and stays "
                "inside.")
        return x1, second.tensor, first, second.source, look
    if mode == EASY:
        stay = scan.staying()
        if not len(stay):
            raise GeometryError(f"every straight line from this image to another {names[label]} of the gallery "
                                "leaves the class; choose the interesting case")
        second = gallery_image(clf, label, int(stay.second[0]))
        look = (f"**What to look at:** here the straight line itself stays in class {names[label]}: the path needs "
                "no bend and is the straight line.")
        return img.tensor, second.tensor, first, second.source, look
    if mode == SAME:
        if label not in counts:
            raise GeometryError(f"the gallery has no images of class {names[label]}; choose the adversarial option")
        n = counts[label]
        if st.session_state.get("_paths_index2_class") != label:
            st.session_state._paths_index2_class = label
            same = img.label == label and st.session_state.get("gallery_class") == label
            st.session_state.paths_index2 = (int(st.session_state.get("gallery_index", 0)) + 1) % n if same else 0
        st.session_state.paths_index2 = min(max(int(st.session_state.paths_index2), 0), n - 1)
        idx = st.number_input(f"Second image: index in the gallery of class {names[label]} (0-{n - 1})", 0, n - 1,
                              key="paths_index2", step=1)
        other = gallery_image(clf, label, int(idx))
        pred = int(compute(predict, other.tensor, what="the second image's prediction", quick=True)[0])
        if pred != label:
            raise GeometryError(f"gallery image {names[label]}#{int(idx)} is predicted as {names[pred]}, not "
                                f"{names[label]}; pick another index")
        return img.tensor, other.tensor, first, other.source, None
    classes = [c for c in sorted(counts) if c != label]
    if not classes:
        raise GeometryError("the gallery has no image of another class")
    if st.session_state.get("paths_src_class") not in classes:
        st.session_state.paths_src_class = classes[0]
    c1, c2 = st.columns(2)
    src_class = c1.selectbox("Source image: class", classes, key="paths_src_class")
    n = counts[src_class]
    if not 0 <= int(st.session_state.get("paths_src_index", 0)) < n:
        st.session_state.paths_src_index = 0
    idx = c2.number_input(f"Source image: index (0-{n - 1})", 0, n - 1, key="paths_src_index", step=1)
    src = gallery_image(clf, src_class, int(idx))
    overshoot = float(st.session_state.paths_overshoot)
    x2 = _adversarial(label, overshoot, src.tensor)
    look = (f"**What to look at:** the far end is a {names[src_class]} changed just enough to be called "
            f"{names[label]}; the path shows it is connected to the real {names[label]}.")
    return img.tensor, x2, first, f"{src.source}, pushed into class {names[label]} by targeted DeepFool", look


def _stop_text(path, names) -> str:
    s = path.stopped or {}
    where = (f" The first failing segment is number {s['segment'] + 1} of {s['segments']}"
             + (f"; a sample at {100 * s['position']:.1f}% of the partial path is class {names[s['bad_label']]}."
                if s.get("position") is not None and s.get("bad_label") is not None else
                f" (check: {s.get('check')})."))
    return (f"**No verified path found** — {s.get('reason', 'stopped')}: {s.get('detail', '')}.{where} "
            "Nothing below is claimed as a path: the dotted line is where the search stopped. Raise the anchor "
            "budget or try another pair.")


def _settings():
    with st.expander("Search settings", expanded=False):
        s1, s2, s3, s4 = st.columns(4)
        s1.slider("Anchor budget", 1, 64, key="paths_max_anchors",
                  help="Most anchor points the search may add; when a path would need more, it says so.")
        s2.selectbox("Segment check", list(VERIFICATIONS), key="paths_verification",
                     help="proven: a Lipschitz bound of every logit difference computed from the weights, so no "
                          "label change can hide between samples (slower near the boundary). sampled: the slope "
                          "bound is estimated from the samples (safety factor 2): a result reported as sampled, not "
                          "proven. auto: proven when the model allows it.")
        s3.number_input("DeepFool overshoot", 0.0, 1.0, key="paths_overshoot", step=0.01, format="%.3f")
        s4.select_slider("Plane resolution", PLANE_RESOLUTIONS, key="paths_resolution")


# ------------------------------------------------------------------ page
clf = current_model()
img = current_image()
names = clf.class_names

st.header("Connecting paths inside a classification region")
plain("Can two images the model calls the same class be joined by a [[path]] that never leaves that "
      "[[region|class]]? Even when the [[chord]] between them leaves it, the search finds a path that bends around.")

counts = gallery_counts(gallery_dataset(clf))
label = None
with guarded("classifying the image"):
    label = int(compute(predict, img.tensor, what="the prediction", quick=True)[0])
if label is None:
    st.stop()

scan, class_pairs = None, None   # chords from the image to the other gallery images of its class; class pairs
with guarded("looking for pairs whose straight line leaves the class"):
    if label in counts:
        scan = _partners(label, img.tensor)
        if not len(scan.leaving()):
            class_pairs = _class_pairs(label)
modes = [SAME, ADV]
if scan is not None:
    leaves = len(scan.leaving()) or (class_pairs is not None and len(class_pairs))
    modes = ([LEAVES] if leaves else []) + ([EASY] if len(scan.staying()) else []) + modes
_init_state(label, modes)

c_mode, c_pick = st.columns([3, 2])
c_mode.radio("Second end", modes, key="paths_mode", horizontal=False,
             help=f"The first end is the sidebar image, predicted {names[label]}; the path stays in class "
                  f"{names[label]}.")
if LEAVES not in modes and scan is not None:
    c_pick.caption(f"No pair of class {names[label]} whose straight line leaves it was found in the quick scan "
                   f"({scan.candidates} lines from this image, {class_pairs.candidates if class_pairs else 0} of the "
                   "longest between gallery images); choose another image or class for the interesting case.")

max_anchors = int(st.session_state.paths_max_anchors)
verification = VERIFICATIONS[st.session_state.paths_verification]
overshoot = float(st.session_state.paths_overshoot)
resolution = int(st.session_state.paths_resolution)

path, look = None, None
with guarded("finding the path"):
    with c_pick:
        x1, x2, desc1, desc2, look = _pair_ends(clf, img, label, counts, scan, class_pairs)
        st.caption(f"First end: {desc1}. Second end: {desc2}.")
    if look:
        c_mode.markdown(look)
    with c_pick, st.status("Searching for a path…", expanded=False) as status:
        t0 = time.perf_counter()
        path = _path(max_anchors, verification, overshoot, x1.to(clf.dtype), x2.to(clf.dtype).cpu())
        status.update(label=f"Path search done ({time.perf_counter() - t0:.1f} s, {path.evaluations:,} model "
                            "evaluations)",
                      state="complete", expanded=False)

if path is not None:
    pos, pos_ab, plane, fig_plane = None, None, None, None
    left, right = st.columns(2)
    with left:
        with guarded("drawing the margin"):
            fig_margin = margin_figure(path, names, position=None, height=PLOT_HEIGHT)
            show(fig_margin, key="paths_margin_fig")
    with right:
        with guarded("evaluating the plane"):
            plane = _plane(resolution, path)
            fig_plane = plane_figure(plane, path, None, title=f"class regions, path and chord ({clf.name})",
                                     height=PLOT_HEIGHT + 120)
            # half the page wide: the legend goes under the plot instead of over it
            fig_plane.update_layout(legend=dict(orientation="h", x=0, y=-0.25, xanchor="left", yanchor="top"))
            show(fig_plane, key="paths_plane_fig")

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
    st.caption(f"Segment check: {path.statistics.get('guarantee_text') or path.statistics['guarantee']}.")
    if not path.connected:
        st.warning(_stop_text(path, names))
    else:  # "verified" / "certified" only where a proof backs them; sampled checks say so
        kind, text = verdict_message(path, names)
        {"success": st.success, "info": st.info, "warning": st.warning}[kind](text)
    if not presentation():
        st.caption("Left: the margin (the path's class score minus the best other) along the path and along the "
                   f"straight chord ({path.parameters['chord_samples']} evenly spaced points; red where the chord "
                   "has left the region). Every verification sample of the path is drawn (denser where the margin "
                   "is small). Right: the class regions in the plane of the chord and the path's largest deviation.")

    st.subheader("Images along the path")
    with guarded("drawing the anchors"):
        fig_anchors = anchor_images_figure(path, clf.pixel_range)
        show(fig_anchors, key="paths_anchor_fig")

    if path.connected and plane is not None:
        with guarded("walking along the path"):
            s, pts, probs = _walk(path)
            k = st.slider("Walk along the path (step)", 0, WALK_STEPS - 1, key="paths_walk",
                          help="Points evenly spaced in arc length from x1 (0) to x2.")
            pos = float(s[k])
            pred = int(np.argmax(probs[k]))
            w1, w2, w3 = st.columns([1, 2, 2])
            with w1:
                show(image_figure(pts[k], f"step {k}: {100 * pos:.0f}% of the path", clf.pixel_range),
                     key="paths_walk_image")
            with w2:
                show(probability_figure(probs[k], names, top=min(5, len(names)),
                                        title=f"Class probabilities at step {k} (predicted {names[pred]})"),
                     key="paths_walk_probs")
            with w3:
                with guarded("marking the walk on the plane"):
                    pl_s = path.arc_positions()
                    kk = min(int(np.searchsorted(pl_s, pos, side="right")) - 1, len(pl_s) - 2)
                    w = (pos - pl_s[kk]) / max(pl_s[kk + 1] - pl_s[kk], 1e-300)
                    pos_ab = plane.path_ab[kk] + w * (plane.path_ab[kk + 1] - plane.path_ab[kk])
                    show(plane_figure(plane, path, pos_ab, title=f"step {k} on the plane", height=320),
                         key="paths_walk_plane")
    formulas("The search bisects the straight chord, moves every midpoint that falls outside back into the region "
             "with a minimal targeted DeepFool step, and checks every segment densely enough that no label change "
             "can hide between samples: between two samples a distance $D$ apart, $g_j = f_i - f_j$ cannot reach "
             "zero when $g_j(s) + g_j(s') > L_j D$, with $L_j$ a Lipschitz bound of $g_j$ derived from the weights "
             "(proven) or estimated from the samples (sampled, not proven). Fawzi et al. (CVPR 2018) found such "
             "paths for every pair they tried, nearly straight. The pairs whose straight line leaves the class are "
             "found by a quick scan: each candidate chord is sampled at a few dozen evenly spaced points.")
    with guarded("exporting"):
        export_buttons(fig_margin, data=path.arrays(), params=path.to_dict(), name="path", key="paths_export_path")
    if plane is not None:
        off = float(plane.offsets.max())
        if not presentation():
            st.caption(f"Plane: u the chord direction; v {plane.direction}. "
                       + (f"Anchors off this plane are drawn at their projection (largest distance {off:.3g}); the "
                          "background is the plane itself, so the drawn path may cross coloured regions the real "
                          "path avoids." if off > 1e-6 else "Every path point lies in this plane."))
        export_buttons(fig_plane, data=plane.arrays(), params=plane.section.summary(), name="path_plane",
                       key="paths_export_plane")
_settings()

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
            show(fig_h1, key="paths_hist_anchors")
        with h2:
            fig_h2 = outside_histogram(stats)
            show(fig_h2, key="paths_hist_outside")
        st.dataframe(stats.table(), hide_index=True, width="stretch")
        export_buttons(fig_h1, data=stats.arrays(), params={k: v for k, v in summ.items()} | {"parameters":
                                                                                              stats.parameters},
                       name=f"paths_{kind}_{n}", key="paths_export_stats")
