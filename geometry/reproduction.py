"""The reproduction: the paper's experiments on one model, run with one set of recorded settings.

:func:`run_reproduction` runs principal-curvature spectra at the boundary points of several held-out images
(``geometry.curvature``), connectivity statistics (``geometry.paths``, when that module is installed), the shared
curved subspace S in both constructions (``subspace.CONSTRUCTIONS``: ours, "projected", and the authors',
"paper"; the concentration experiment for each), both vulnerability experiments with their baselines, the
curvature-asymmetry detector against DeepFool, FGSM and PGD, and the pre-registered detector evaluation
(``geometry.preregistered``). :func:`write_numbers` writes its JSON-ready numbers as ``numbers.json``;
:func:`verdicts` and :func:`summary_row` state them in plain language and as one table row.

Drawing the report (figures, Markdown, HTML) is not done here: ``dashboard/report.py`` renders a
:class:`Reproduction` with the app's figure builders. Imports torch and numpy; never Streamlit or Plotly.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .classifier import Classifier
from .errors import GeometryError

Progress = Callable[[float, str], None]


def _noop(frac: float, msg: str) -> None:
    pass


@dataclass
class Reproduction:
    """Everything the report shows: ``numbers`` and ``settings`` (JSON-ready, written to numbers.json) and, for
    the figures, ``arrays``: ``curvature_results`` (``curvature.CurvatureResult`` per boundary point),
    ``subspaces`` (construction -> ``images`` (m, *input_shape) or None, ``spectrum``, ``eigenvalues``),
    ``concentration`` (construction -> ``vulnerability.Concentration``), ``detector``
    (``detection.DetectorEvaluation`` of S)."""

    model: str
    numbers: dict
    settings: dict
    arrays: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


REPRODUCE_DEFAULTS = {"subspace_images": 100, "m": 20, "curvature_images": 10, "curvature_k": 10,
                      "images": 200, "draws": 10, "calibration_images": 200, "evaluation_images": 200,
                      "fpr": 0.05, "sizes": (1.0, 1.5, 2.0), "attacks": ("deepfool", "fgsm", "pgd"),
                      "connectivity_pairs": 10, "preregistered": True, "asymmetry_points": 100}


def _connectivity(clf, pairs: int, seed: int, notes: list[str], progress) -> dict | None:
    """Connectivity statistics from ``geometry.paths`` when that module is installed: natural same-class
    pairs and (image, adversarial image pushed into its class) pairs from the held-out gallery."""
    try:
        from .paths import gallery_pairs, path_statistics
    except ImportError:
        notes.append("Connectivity: geometry.paths is not available in this installation, so no paths were "
                     "searched.")
        return None
    out = {}
    for i, kind in enumerate(("natural", "adversarial")):
        try:
            ps = gallery_pairs(clf, pairs, kind=kind, seed=seed)
            st = path_statistics(clf, ps.x1, ps.x2, descriptions=ps.descriptions, kind=kind, label=ps.labels,
                                 progress=lambda f, msg, i=i: progress((i + f) / 2, f"connecting paths: {msg}"))
        except GeometryError as exc:  # report, never hide
            notes.append(f"Connectivity ({kind} pairs): {exc}")
            continue
        out[kind] = st.summary()
    return out or None


def _check_held_out(clf: Classifier, **counts: int) -> None:
    """Fail before any work when a count asks for more held-out images than the model's dataset has."""
    from .data import load_split
    from .images import gallery_dataset

    dataset = gallery_dataset(clf)
    n = len(load_split(dataset)[1].y)
    for name, k in counts.items():
        if k > n:
            what = ("calibration_images + evaluation_images" if name == "detector_images" else name)
            raise GeometryError(f"{what} = {k} exceeds the {n} held-out images of the {dataset} dataset; ask for "
                                "at most that many")


def run_reproduction(clf: Classifier, *, subspace_images: int = 100, m: int = 20, estimator: str = "auto",
                     step: float | None = None, seed: int = 0, curvature_images: int = 10, curvature_k: int = 10,
                     images: int = 200, draws: int = 10, calibration_images: int = 200,
                     evaluation_images: int = 200, fpr: float = 0.05, sizes=(1.0, 1.5, 2.0),
                     attacks=("deepfool", "fgsm", "pgd"), connectivity_pairs: int = 10,
                     construction: str = "projected", select: str | None = None, preregistered: bool = True,
                     asymmetry_points: int = 100, cache: str | Path | None | bool = None, recompute: bool = False,
                     progress: Progress | None = None) -> Reproduction:
    """Run every experiment of the report on ``clf`` (see the module docstring).

    ``construction`` builds the S of the vulnerability experiments and the detector (numbers ``subspace``,
    ``concentration``, ``fooling``, ``detector``); the other construction of :data:`subspace.CONSTRUCTIONS` is
    built from the same training images with the same m and ``select`` and measured on the same DeepFool
    perturbations (numbers ``subspace_<other>``, ``concentration_<other>``). ``preregistered`` runs
    ``preregistered.preregistered_evaluation`` with ``calibration_images`` development and ``evaluation_images``
    test images and this run's ``subspace_images``, ``m``, ``seed`` and cache (number ``preregistered``); its
    protocol fixes the rest (estimator "auto", the grid, target FPR, attacks and sizes, split and bootstrap
    seeds), so ``fpr``, ``sizes`` and ``attacks`` do not change it. ``asymmetry_points`` held-out images give
    the curvature-asymmetry statistics (``asymmetry.curvature_asymmetry`` at its defaults: exact for a smooth
    model, fd at three steps for a piecewise-linear one, at the boundary point and at x + 0.8 r; number
    ``asymmetry``); 0 skips them."""
    from .boundary import deepfool
    from .curvature import principal_curvatures
    from .detection import DIRECTION_SETS, evaluate_detectors, model_detector
    from .subspace import (CONSTRUCTIONS, check_construction, dataset_images, model_subspace, resolve_estimator,
                           resolve_select, resolve_step)
    from .vulnerability import perturbation_concentration, vulnerability

    check_construction(construction)
    select = resolve_select(select, None)
    other = next(c for c in CONSTRUCTIONS if c != construction)

    progress = progress or _noop
    t0 = time.perf_counter()
    _check_held_out(clf, images=images, curvature_images=curvature_images, asymmetry_points=asymmetry_points,
                    detector_images=calibration_images + evaluation_images)
    if 2 * int(curvature_k) > clf.dim - 1:  # else top-k and bottom-k would be the same values (ratio 1.00)
        raise GeometryError(f"curvature_k = {curvature_k} asks for {2 * int(curvature_k)} curvatures but the tangent "
                            f"space has only {clf.dim - 1} directions; use at most {(clf.dim - 1) // 2}")
    if not isinstance(asymmetry_points, int) or isinstance(asymmetry_points, bool) or asymmetry_points < 0:
        raise GeometryError(f"asymmetry_points must be 0 (skip) or a positive integer, got {asymmetry_points!r}")
    est = resolve_estimator(clf, estimator)
    h = resolve_step(clf, est, step)
    notes: list[str] = []
    numbers: dict = {}
    arrays: dict = {}
    timings: dict = {}

    def stage(lo, hi):
        return lambda f, msg: progress(lo + (hi - lo) * f, msg)

    # --- 1. principal-curvature spectra at boundary points of held-out images
    progress(0.0, f"principal curvatures at {curvature_images} boundary points")
    t = time.perf_counter()
    xc, _ = dataset_images(clf, curvature_images, split="held_out", seed=seed + 1)
    from .boundary import boundary_point

    bnd = boundary_point(clf, xc)
    spectra, rows = [], []
    for i in range(len(bnd)):
        if not bool(bnd.converged[i]):
            continue
        try:
            cr = principal_curvatures(clf, xc[i], estimator=est, step=h, k=curvature_k, boundary=bnd[i], seed=seed)
        except GeometryError as exc:
            notes.append(f"Curvature at image {i}: {exc}")
            continue
        spectra.append(cr)
        rows.append({"label": cr.label, "boundary_label": cr.boundary_label, "distance": cr.boundary_distance,
                     "max": float(cr.curvatures.max()), "min": float(cr.curvatures.min()),
                     "converged": bool(cr.converged)})
        if cr.warning and cr.warning not in notes:
            notes.append(f"Curvature: {cr.warning}")
        progress(0.1 * (i + 1) / len(bnd), f"principal curvatures: image {i + 1} of {len(bnd)}")
    timings["curvature"] = time.perf_counter() - t
    if spectra:
        curves = [np.asarray(cr.curvatures, dtype=float) for cr in spectra]
        top = np.array([s[:curvature_k].mean() for s in curves])
        bottom = np.array([s[-curvature_k:].mean() for s in curves])
        numbers["curvature"] = {
            "images": len(spectra), "k_per_end": curvature_k, "estimator": est, "step": h,
            "median_largest": float(np.median([r["max"] for r in rows])),
            "median_most_negative": float(np.median([r["min"] for r in rows])),
            "mean_top_k": float(top.mean()), "mean_bottom_k": float(bottom.mean()),
            "asymmetry_top_over_bottom": float(np.abs(top).mean() / max(np.abs(bottom).mean(), 1e-300)),
            "median_boundary_distance": float(np.median([r["distance"] for r in rows])), "points": rows}
        arrays["curvature_results"] = spectra  # geometry.curvature.CurvatureResult, one per boundary point

    # --- 2. connectivity (only when geometry.paths exists)
    progress(0.1, "connectivity statistics")
    t = time.perf_counter()
    if connectivity_pairs:
        conn = _connectivity(clf, connectivity_pairs, seed, notes, stage(0.1, 0.15))
    else:
        conn = None
        notes.append("Connectivity: skipped (connectivity_pairs = 0).")
    if conn is not None:
        numbers["connectivity"] = conn
    timings["connectivity"] = time.perf_counter() - t

    # --- 3. S, in both constructions (the first one drives the experiments below)
    subspaces = {}
    for i, c in enumerate((construction, other)):
        progress(0.15 + 0.15 * i, f"shared curved subspace S ({c} construction)")
        t = time.perf_counter()
        # the projected construction keeps the resolved estimator and step of the run; the paper's resolves its
        # own ("auto" = finite differences, the authors' central differences)
        kw = dict(estimator=est, step=h) if c == "projected" else dict(estimator=estimator, step=step)
        subspaces[c] = model_subspace(clf, images=subspace_images, m=m, seed=seed, construction=c, select=select,
                                      cache=cache, recompute=recompute, progress=stage(0.15 + 0.15 * i, 0.3 + 0.15 * i),
                                      **kw)
        timings["subspace" if c == construction else f"subspace_{c}"] = time.perf_counter() - t
    S = subspaces[construction]
    arrays["subspaces"] = {}
    for c, Sc in subspaces.items():
        ssum = Sc.summary()
        block = {k: ssum[k] for k in ("m", "d", "eigenvalues", "positive", "negative", "num_points", "hvp_count",
                                      "seconds", "converged", "random_baseline", "construction", "select")}
        block["estimator"] = ssum["settings"].get("estimator")
        block["settings"] = ssum["settings"]
        numbers["subspace" if c == construction else f"subspace_{c}"] = block
        arrays["subspaces"][c] = {"images": Sc.images().numpy() if len(Sc.input_shape) == 3 else None,
                                  "spectrum": np.asarray(Sc.spectrum, dtype=float),
                                  "eigenvalues": np.asarray(Sc.eigenvalues, dtype=float)}

    # --- 4. vulnerability experiments (one DeepFool run; the other construction's S on the same perturbations)
    progress(0.45, "vulnerability experiments")
    t = time.perf_counter()
    xv, _ = dataset_images(clf, images, split="held_out", seed=seed)
    df = deepfool(clf, clf.as_batch(xv))
    vul = vulnerability(clf, S, xv, draws=draws, seed=seed, progress=stage(0.45, 0.6), deepfool_result=df)
    vd = vul.to_dict()
    numbers["concentration"] = vd["concentration"]
    numbers["fooling"] = vd["fooling"]
    conc_other = perturbation_concentration(clf, subspaces[other], xv, seed=seed, deepfool_result=df)
    numbers[f"concentration_{other}"] = conc_other.summary()
    arrays["concentration"] = {construction: vul.concentration, other: conc_other}
    timings["vulnerability"] = time.perf_counter() - t

    # --- 5. detector: S (the definition) and, on the same attacked images, the m most positively and the
    # m most negatively curved directions of the same average operator (exploratory variants, reported as such)
    progress(0.6, f"calibrating the detector on {calibration_images} clean held-out images")
    t = time.perf_counter()
    detectors = {}
    for part in DIRECTION_SETS:
        try:
            detectors[part] = model_detector(clf, S, fpr=fpr, images=calibration_images, seed=seed, cache=cache,
                                             recompute=recompute, directions=part)
        except GeometryError as exc:
            if part == "all":
                raise
            notes.append(f"Detector on the {part}ly curved directions: {exc}")
    xe, ye = dataset_images(clf, calibration_images + evaluation_images, split="held_out", seed=seed)
    xe, ye = xe[calibration_images:], ye[calibration_images:]
    evs = evaluate_detectors(clf, detectors, xe, ye, attacks=attacks, sizes=sizes, seed=seed,
                             progress=stage(0.62, 0.75))
    numbers["detector"] = evs["all"].to_dict()
    numbers["detector_variants"] = {part: ev.to_dict() for part, ev in evs.items() if part != "all"}
    arrays["detector"] = evs["all"]
    timings["detector"] = time.perf_counter() - t

    # --- 6. the pre-registered evaluation (its own split, grid and seeds: geometry/preregistered.py) and
    # 7. curvature asymmetry over many held-out images (docs/science.md, section 3); both optional
    def optional(key: str, label: str, enabled: bool, skipped: str, run) -> None:
        if not enabled:
            notes.append(f"{label}: skipped ({skipped}).")
            return
        t = time.perf_counter()
        try:
            numbers[key] = run().to_dict()
        except GeometryError as exc:  # e.g. too few images per class in a half: reported, never hidden
            notes.append(f"{label}: {exc}")
        timings[key] = time.perf_counter() - t

    def run_preregistered():
        from .preregistered import preregistered_evaluation

        # the protocol's own target FPR, attacks and sizes (declared in advance), whatever this run's are
        return preregistered_evaluation(clf, dev_images=calibration_images, test_images=evaluation_images,
                                        subspace_images=subspace_images, m=m, seed=seed, cache=cache,
                                        recompute=recompute, progress=stage(0.75, 0.88))

    def run_asymmetry():
        from .asymmetry import curvature_asymmetry

        progress(0.88, f"curvature asymmetry over {asymmetry_points} held-out images")
        late = stage(0.88, 0.99)
        return curvature_asymmetry(clf, points=asymmetry_points, seed=seed,
                                   progress=lambda f, msg: late(f, f"curvature asymmetry: {msg}"))

    optional("preregistered", "Pre-registered evaluation", preregistered, "preregistered = False", run_preregistered)
    optional("asymmetry", "Curvature asymmetry", bool(asymmetry_points), "asymmetry_points = 0", run_asymmetry)

    card = getattr(clf, "card", {}) or {}
    settings = {"model": clf.name, "architecture": card.get("architecture"), "activation": card.get("activation"),
                "held_out_accuracy": card.get("held_out_accuracy"), "d": clf.dim, "device": clf.device.type,
                "dtype": str(clf.dtype).replace("torch.", ""), "estimator": est, "step": h, "seed": seed,
                "subspace_images": subspace_images, "m": m, "signs": "both" if select == "most" else select,
                "construction": construction, "select": select, "constructions": [construction, other],
                "preregistered": bool(preregistered), "asymmetry_points": int(asymmetry_points),
                "curvature_images": curvature_images, "curvature_k": curvature_k, "experiment_images": images, "draws": draws,
                "calibration_images": calibration_images, "evaluation_images": evaluation_images, "fpr": fpr,
                "sizes": list(sizes), "attacks": list(attacks), "attack_norm": "l2",
                "torch": torch.__version__, "python": platform.python_version(), "timings_s": timings}
    progress(1.0, "done")
    return Reproduction(clf.name, numbers, settings, arrays, notes, time.perf_counter() - t0)



def verdicts(numbers: dict) -> dict:
    """Plain-language findings computed from the numbers (what works and what does not)."""
    out = {}

    def concentration(c: dict | None, where: str) -> str | None:
        if not c or c.get("mean") is None or c.get("gain") is None:
            return None
        gain = c["gain"]
        how = "concentrate" if gain >= 2 else "concentrate only weakly" if gain > 1.2 else "do not concentrate"
        return (f"DeepFool perturbations {how}"
                f" in {where}: mean |P_S r|/|r| = {c['mean']:.3f} against {c['random_mean']:.3f} for random "
                f"{c['m']}-dimensional subspaces (sqrt(m/d) = {c['expected']:.3f}), {gain:.1f} times the baseline.")

    if concentration(numbers.get("concentration"), "S"):
        out["concentration"] = concentration(numbers.get("concentration"), "S")
    for key in [k for k in numbers if k.startswith("concentration_")]:
        c = key[len("concentration_"):]
        text = concentration(numbers[key], f"S of the {c} construction (same perturbations)")
        if text:
            out[key] = text
    f = numbers.get("fooling")
    if f:
        es, ew = f.get("eps_50_subspace"), f.get("eps_50_whole")
        ref = f.get("reference_norm") or float("nan")
        if es is not None and ew is not None:
            out["fooling"] = (f"Random noise in S fools half of the draws at norm {es:.3g} ({es / ref:.1f} times the "
                              f"median DeepFool norm {ref:.3g}); noise in the whole space needs norm {ew:.3g}, "
                              f"{ew / es:.1f} times larger (50% crossings interpolated in log eps).")
        elif es is not None:
            out["fooling"] = (f"Random noise in S fools half of the draws at norm {es:.3g}; noise in the whole space "
                              f"never reaches 50% within the tested norms (up to {max(f['eps']):.3g}, fooling rate "
                              f"{f['whole'][-1]:.2f}).")
        else:
            out["fooling"] = (f"Neither noise in S nor in the whole space fools half of the draws within the tested "
                              f"norms (largest: {max(f['eps']):.3g}; rates {f['subspace'][-1]:.2f} in S, "
                              f"{f['whole'][-1]:.2f} in R^d).")
    d = numbers.get("detector")
    if d:
        rows = [r for r in d["rows"] if r["auc"] is not None]
        if rows:
            best = max(rows, key=lambda r: r["auc"])
            worst = min(rows, key=lambda r: r["auc"])
            mean_auc = float(np.mean([r["auc"] for r in rows]))
            quality = "works well" if mean_auc >= 0.9 else "works partly" if mean_auc >= 0.7 else \
                "barely works" if mean_auc > 0.55 else "does not work"
            rec = [r["recovery_detected"] for r in rows if r["recovery_detected"] is not None]
            out["detector"] = (f"The detector {quality} here: mean AUC {mean_auc:.2f} over {len(rows)} attack settings "
                               f"(best {best['attack']} x{best['size']:g}: {best['auc']:.2f}; worst "
                               f"{worst['attack']} x{worst['size']:g}: {worst['auc']:.2f}); clean false-positive rate "
                               f"{d['clean_fpr']:.3f} for a target of {d['detector']['fpr']:g}; label recovery on "
                               f"detected images {np.mean(rec):.2f} on average." if rec else
                               f"The detector {quality} here: mean AUC {mean_auc:.2f}; no attacked image was detected.")
    parts = numbers.get("detector_variants") or {}
    if parts and d:
        bits = []
        for part, pd in parts.items():
            aucs = [r["auc"] for r in pd["rows"] if r["auc"] is not None]
            if aucs:
                bits.append(f"S{'+' if part == 'positive' else '-'} ({pd['detector']['m']} directions): mean AUC "
                            f"{np.mean(aucs):.2f}")
        if bits:
            out["detector_variants"] = ("Exploratory variant, the same score on the m most positively (S+) or "
                                        "negatively (S-) curved directions: " + "; ".join(bits) + ".")
    cv = numbers.get("curvature")
    if cv:
        out["curvature"] = (f"Principal curvatures at {cv['images']} boundary points ({cv['estimator']}): "
                            "median largest "
                            f"{cv['median_largest']:.3g}, median most negative {cv['median_most_negative']:.3g}; mean "
                            f"|top {cv['k_per_end']}| / |bottom {cv['k_per_end']}| = "
                            f"{cv['asymmetry_top_over_bottom']:.2f} (above 1: more strongly positive, the paper's "
                            "asymmetry).")
    asym = numbers.get("asymmetry")
    if asym:
        bits = []
        for e in asym["results"]:
            if e["asymmetry_ratio"] is None:
                continue
            est = "exact" if e["estimator"] == "exact" else f"fd h = {e['step']:.3g}"
            where = "at the boundary" if e["location"] == "boundary" else "at x + 0.8 r"
            band = e.get("asymmetry_ratio_band") or [None, None]
            ci = f" (95% band {band[0]:.2f}-{band[1]:.2f})" if band[0] is not None else ""
            bits.append(f"{est} {where}: {e['asymmetry_ratio']:.2f}{ci}, {e['mostly_positive']:.0%} of "
                        f"{e['points_used']} points mostly positive")
        if bits:
            out["asymmetry"] = ("Curvature asymmetry over held-out images, mean top-k over mean |bottom-k| of the "
                                "sorted spectrum (above 1: more strongly positive, the paper's asymmetry): "
                                + "; ".join(bits) + ".")
    pre = numbers.get("preregistered")
    if pre:
        ch, test = pre["chosen"], pre["test"]

        def mean_auc(block):
            aucs = [r["auc"] for r in block["rows"] if r["auc"] is not None]
            return (float(np.mean(aucs)), len(aucs)) if aucs else (None, 0)

        a, n = mean_auc(test["chosen"])
        p, _ = mean_auc(test["paper_definition"])
        key = f"{ch['construction']}/{ch['select']}/{ch['score']}"
        if a is None:
            out["preregistered"] = (f"Pre-registered evaluation: the variant chosen on the development half ({key}) "
                                    "could not be scored on the test half (no attack succeeded).")
        else:
            first = test["chosen"]["rows"][0]
            ci = (f" ({first['attack']} x{first['size']:g}: {first['auc']:.2f}, 95% interval "
                  f"{first['auc_low']:.2f}-{first['auc_high']:.2f})" if first["auc"] is not None else "")
            out["preregistered"] = (
                f"Pre-registered evaluation, variant chosen on the development half: {key}"
                + (" (the paper's definition)" if pre["chosen_is_paper_definition"] else "")
                + f"; on the test half ({pre['split']['test_correct']} correctly classified images) its mean AUC is "
                f"{a:.2f} over {n} attack settings{ci}"
                + ("" if pre["chosen_is_paper_definition"] or p is None else
                   f"; the paper's definition scores {p:.2f} on the same images") + ".")
    return out


def summary_row(numbers: dict, settings: dict) -> dict:
    """One README row per model: the headline numbers."""
    c, f, d = numbers.get("concentration", {}), numbers.get("fooling", {}), numbers.get("detector", {})
    aucs = {f"{r['attack']} x{r['size']:g}": r["auc"] for r in d.get("rows", [])}
    recs = [r["recovery_detected"] for r in d.get("rows", []) if r["recovery_detected"] is not None]
    part_auc = {}
    for part, pd in (numbers.get("detector_variants") or {}).items():
        vals = [r["auc"] for r in pd["rows"] if r["auc"] is not None]
        part_auc[part] = float(np.mean(vals)) if vals else None
    all_aucs = [r["auc"] for r in d.get("rows", []) if r["auc"] is not None]
    return {"model": settings["model"], "estimator": settings["estimator"], "m": settings["m"], "d": settings["d"],
            "auc_mean": float(np.mean(all_aucs)) if all_aucs else None, "auc_mean_parts": part_auc,
            "ratio_mean": c.get("mean"), "random_mean": c.get("random_mean"), "sqrt_m_d": c.get("expected"),
            "eps50_S": f.get("eps_50_subspace"), "eps50_whole": f.get("eps_50_whole"),
            "eps50_ratio": f.get("eps_50_ratio"), "reference_norm": f.get("reference_norm"),
            "auc": aucs, "recovery_detected_mean": float(np.mean(recs)) if recs else None,
            "clean_fpr": d.get("clean_fpr"),
            "ratio_mean_constructions": {k[len("concentration_"):]: v.get("mean") for k, v in numbers.items()
                                         if k.startswith("concentration_")},
            "preregistered": _preregistered_row(numbers.get("preregistered")),
            "asymmetry": _asymmetry_rows(numbers.get("asymmetry"))}


def _asymmetry_rows(asym: dict | None) -> list | None:
    """The asymmetry statistics in short rows: estimator, step, location, ratio with band, sign fractions."""
    if not asym:
        return None
    return [{"estimator": e["estimator"], "step": e["step"], "location": e["location"], "points": e["points_used"],
             "ratio": e["asymmetry_ratio"], "ratio_band": e["asymmetry_ratio_band"],
             "mostly_positive": e["mostly_positive"], "mostly_negative": e["mostly_negative"],
             "positive_values": e["positive_values"]} for e in asym["results"]]


def _preregistered_row(pre: dict | None) -> dict | None:
    """The pre-registered evaluation in one row: chosen variant and its mean test AUC, the paper's beside it."""
    if not pre:
        return None

    def mean(block):
        vals = [r["auc"] for r in block["rows"] if r["auc"] is not None]
        return float(np.mean(vals)) if vals else None

    ch = pre["chosen"]
    return {"chosen": f"{ch['construction']}/{ch['select']}/{ch['score']}",
            "chosen_is_paper_definition": pre["chosen_is_paper_definition"],
            "auc_mean_test": mean(pre["test"]["chosen"]), "paper_auc_mean_test": mean(pre["test"]["paper_definition"]),
            "auc_test": {f"{r['attack']} x{r['size']:g}": [r["auc"], r["auc_low"], r["auc_high"]]
                         for r in pre["test"]["chosen"]["rows"]}}


def write_numbers(rep: Reproduction, out_dir: str | Path) -> str:
    """Write ``numbers.json`` (numbers, settings, notes, verdicts, summary row, seconds) into ``out_dir``;
    returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    numbers = {"model": rep.model, "numbers": rep.numbers, "settings": rep.settings, "notes": rep.notes,
               "verdicts": verdicts(rep.numbers), "summary": summary_row(rep.numbers, rep.settings),
               "seconds": rep.seconds}
    path = out / "numbers.json"
    from .serialization import jsonable

    # strict JSON (no NaN / Infinity): non-finite floats become null
    path.write_text(json.dumps(jsonable(numbers), indent=1, default=_json_default, allow_nan=False))
    return str(path)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
