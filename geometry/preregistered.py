"""A pre-registered evaluation of the curvature-asymmetry detector (docs/science.md section 5; issue 11 item 2).

Which detector variant works best was first seen on the same images it was then scored on, so those numbers
are optimistic. This module fixes the protocol *before* looking at the answer (:data:`PROTOCOL`):

1. **Split.** ``dev_images + test_images`` held-out images of the model's dataset (``subspace.dataset_images``,
   stratified, seed :data:`SPLIT_SEED`) are split into a development half and a test half, stratified by class
   (scikit-learn's ``train_test_split``, ``random_state`` = :data:`SPLIT_SEED`), disjoint.
2. **Choose, on the development half only.** Every variant of a small grid declared in advance
   (:func:`declared_grid`: construction of S x selection of its directions x score over classes) is
   calibrated on the clean development images (sign and threshold at :data:`DEFAULT_FPR` false positives,
   ``detection.calibrate_scores``) and scored by the criterion: the mean ROC AUC over DeepFool, FGSM and PGD
   at size 1 on the development images. The variant with the highest criterion is chosen (ties: the first in
   grid order). Variants whose S cannot be built (e.g. no negatively curved direction) are recorded and skipped.
3. **Evaluate once, on the test half.** The chosen detector (calibrated on the clean development images, as in
   step 2) and, beside it, the paper's definition (:data:`PAPER_DEFINITION`: the authors' construction, the m
   directions of largest |curvature|, the max over classes; calibrated the same way) are run by
   ``detection.evaluate_detectors`` on the test images against DeepFool, FGSM and PGD at sizes 1, 1.5 and 2
   (FGSM/PGD: multiples of the median DeepFool norm of the test images): ROC AUC with a 95% bootstrap interval
   (:func:`bootstrap_auc`: clean and attacked scores resampled separately, :data:`DEFAULT_RESAMPLES` resamples,
   seed :data:`BOOTSTRAP_SEED`, percentile interval), the detection rate at the development threshold, the
   false-positive rate that threshold gives on clean test images, and label recovery.

Only images the model classifies correctly take part (as in ``detection.evaluate_detectors``). S itself comes
from the *training* split, so neither half is used to build it. The test images reach exactly one function,
``detection.evaluate_detectors``, called once after the choice is made.

Imports torch, numpy, scikit-learn; never Streamlit or Plotly.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .classifier import Classifier
from .detection import (ATTACKS, DEFAULT_FPR, DEFAULT_SIZES, SCORES, Detector, asymmetry_scores, attack_batch,
                        _f, calibrate_detector, calibrate_scores, decide, evaluate_detectors, roc,
                        runner_up_labels)
from .errors import GeometryError
from .subspace import (CONSTRUCTIONS, DEFAULT_IMAGES, DEFAULT_M, SELECTIONS, CurvedSubspace, dataset_images,
                       model_subspace, resolve_estimator, resolve_step)

Progress = Callable[[float, str], None]

SPLIT_SEED = 1705
"""Seed of the development/test split (and of the stratified order the held-out images are drawn in)."""
BOOTSTRAP_SEED = 9552
"""Seed of the bootstrap resamples."""
DEFAULT_DEV_IMAGES = 200
DEFAULT_TEST_IMAGES = 200
DEFAULT_RESAMPLES = 1000
CONFIDENCE = 0.95
CRITERION_ATTACKS = ATTACKS
CRITERION_SIZE = 1.0
GRID_CONSTRUCTIONS = CONSTRUCTIONS          # ("projected", "paper")
GRID_SELECTIONS = ("most", "positive", "negative", "both-ends")
GRID_SCORES = SCORES                        # ("max", "runner-up")

PROTOCOL = (
    "Pre-registered before any test image was scored. Split: the held-out images are drawn in a stratified "
    f"order (seed {SPLIT_SEED}) and split into a development and a test half, stratified by class "
    f"(sklearn train_test_split, random_state {SPLIT_SEED}); only correctly classified images take part. "
    "Grid: construction of S (projected, paper) x selection of its m directions (most, positive, negative, "
    "both-ends) x score over classes (max over c != k; runner-up class only). Each variant's sign and threshold "
    "are calibrated on the clean development images (sign: clean images score low; threshold: 5% false "
    "positives). Criterion: mean ROC AUC over DeepFool, FGSM and PGD at size 1 (FGSM/PGD L2 eps = the median "
    "DeepFool norm) on the development images; the highest wins, ties go to the first in grid order. Test: the "
    "chosen detector and the paper's definition (paper construction, most, max), both calibrated on the clean "
    "development images, evaluated once on the test images against DeepFool, FGSM and PGD at sizes 1, 1.5, 2: "
    f"ROC AUC with a {CONFIDENCE:.0%} percentile bootstrap interval (clean and attacked scores resampled "
    f"separately, {DEFAULT_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}), detection rate at the development "
    "threshold, the false-positive rate it gives on clean test images, and label recovery."
)
"""The protocol in one paragraph (written into every result)."""


def _noop(frac: float, msg: str) -> None:
    pass


# ------------------------------------------------------------------ variants
@dataclass(frozen=True)
class Variant:
    """One detector variant: how S is built, which of its directions are used, and the score over classes."""

    construction: str
    select: str
    score: str

    @property
    def key(self) -> str:
        return f"{self.construction}/{self.select}/{self.score}"

    def to_dict(self) -> dict:
        return {"construction": self.construction, "select": self.select, "score": self.score}


PAPER_DEFINITION = Variant("paper", "most", "max")
"""The paper's definition: the authors' construction of S, the m directions of largest |curvature|, max over c."""


def declared_grid(constructions=GRID_CONSTRUCTIONS, selections=GRID_SELECTIONS, scores=GRID_SCORES) -> list[Variant]:
    """The grid of variants in its declared order (construction, then selection, then score)."""
    def check(values, allowed, what):
        values = tuple(values)
        if not values:
            raise GeometryError(f"the grid needs at least one {what}")
        bad = [v for v in values if v not in allowed]
        if bad:
            raise GeometryError(f"unknown {what} {bad[0]!r}; choose from {', '.join(allowed)}")
        if len(set(values)) != len(values):
            raise GeometryError(f"a {what} is listed twice: {', '.join(values)}")
        return values

    constructions = check(constructions, CONSTRUCTIONS, "construction")
    selections = check(selections, SELECTIONS, "selection")
    scores = check(scores, SCORES, "score")
    return [Variant(c, s, sc) for c in constructions for s in selections for sc in scores]


# ------------------------------------------------------------------ split
def split_dev_test(labels, dev: int, test: int, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint index sets (sorted) of ``dev`` and ``test`` images, stratified by ``labels`` (scikit-learn's
    ``train_test_split`` with ``random_state=seed``)."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels).reshape(-1)
    n = len(labels)
    for name, v in (("development", dev), ("test", test)):
        if not isinstance(v, (int, np.integer)) or v < 2:
            raise GeometryError(f"the {name} half needs at least 2 images, got {v!r}")
    if dev + test > n:
        raise GeometryError(f"{dev} development + {test} test images requested but only {n} are available")
    classes = len(np.unique(labels))
    if min(dev, test) < classes:
        raise GeometryError(f"each half needs at least one image per class ({classes} classes); got {dev} "
                            f"development and {test} test images")
    idx = np.arange(n)
    rest = idx
    if dev + test < n:  # keep only dev + test images, still stratified
        rest, _ = train_test_split(idx, train_size=dev + test, stratify=labels, random_state=seed)
    try:
        d, t = train_test_split(rest, train_size=dev, test_size=test, stratify=labels[rest], random_state=seed)
    except ValueError as exc:
        raise GeometryError(f"cannot split these images by class: {exc}") from None
    return np.sort(d), np.sort(t)


# ------------------------------------------------------------------ bootstrap
def bootstrap_auc(clean_scores, perturbed_scores, *, resamples: int = DEFAULT_RESAMPLES,
                  seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> dict:
    """ROC AUC (attacked = positive, as ``detection.roc``) with a percentile bootstrap interval.

    Clean and attacked scores are resampled separately (a stratified bootstrap: each resample keeps both
    group sizes), ``resamples`` times with ``numpy.random.default_rng(seed)``. Ties count one half. Returns
    ``{"auc", "low", "high", "se", "resamples", "seed", "confidence"}``; NaN values when a group is empty."""
    neg = np.asarray(clean_scores, dtype=np.float64).reshape(-1)
    pos = np.asarray(perturbed_scores, dtype=np.float64).reshape(-1)
    if not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise GeometryError(f"resamples must be a positive integer, got {resamples!r}")
    if not 0 < confidence < 1:
        raise GeometryError(f"confidence must lie in (0, 1), got {confidence}")
    out = {"resamples": int(resamples), "seed": int(seed), "confidence": float(confidence)}
    if len(neg) == 0 or len(pos) == 0:
        return dict(out, auc=float("nan"), low=float("nan"), high=float("nan"), se=float("nan"))
    # pair matrix: 1 when the attacked image outscores the clean one, 1/2 on ties (infinite scores compare fine)
    C = (pos[:, None] > neg[None, :]).astype(np.float64) + 0.5 * (pos[:, None] == neg[None, :])
    auc = float(C.mean())
    rng = np.random.default_rng(seed)
    n_pos, n_neg = len(pos), len(neg)
    aucs = np.empty(resamples)
    chunk = max(1, 2_000_000 // max(1, n_pos * 8 + n_neg * 8))
    for s in range(0, resamples, chunk):
        b = min(chunk, resamples - s)
        wp = rng.multinomial(n_pos, np.full(n_pos, 1.0 / n_pos), size=b).astype(np.float64)  # (b, n_pos)
        wn = rng.multinomial(n_neg, np.full(n_neg, 1.0 / n_neg), size=b).astype(np.float64)  # (b, n_neg)
        aucs[s:s + b] = np.einsum("bp,pn,bn->b", wp, C, wn) / (n_pos * n_neg)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(aucs, [alpha, 1 - alpha])
    # a resampled mean of values in {0, 1/2, 1} can round a hair outside [0, 1] or off a constant
    low, high = float(np.clip(low, 0.0, 1.0)), float(np.clip(high, 0.0, 1.0))
    return dict(out, auc=auc, low=low, high=high, se=float(aucs.std(ddof=1)) if resamples > 1 else float("nan"))


# ------------------------------------------------------------------ development half
@dataclass
class GridRow:
    """One variant on the development half."""

    variant: Variant
    m: int | None = None
    sign: int | None = None
    threshold: float | None = None
    aucs: dict = field(default_factory=dict)
    criterion: float = float("nan")
    error: str | None = None

    def to_dict(self) -> dict:
        return {**self.variant.to_dict(), "m": self.m, "sign": self.sign, "threshold": _f(self.threshold),
                "dev_auc": {a: _f(v) for a, v in self.aucs.items()}, "criterion": _f(self.criterion),
                "error": self.error}


@dataclass
class Development:
    """The grid's development scores and the chosen variant."""

    rows: list[GridRow]
    chosen: Variant
    images: int
    reference_norm: float
    succeeded: dict
    seconds: float

    def row(self, variant: Variant) -> GridRow:
        return next(r for r in self.rows if r.variant == variant)

    def to_dict(self) -> dict:
        return {"chosen": self.chosen.to_dict(), "images": self.images, "reference_norm": _f(self.reference_norm),
                "attacked_succeeded": dict(self.succeeded), "grid": [r.to_dict() for r in self.rows],
                "seconds": float(self.seconds)}


def _correct(clf: Classifier, x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x = clf.as_batch(x)
    y = torch.as_tensor(y, device=x.device).long().reshape(-1)
    keep = clf.predict(x) == y
    return x[keep], y[keep]


def variant_subspace(subspaces: dict, variant: Variant) -> CurvedSubspace:
    """S of the variant's construction, re-selected by its rule (same solver run)."""
    if variant.construction not in subspaces:
        raise GeometryError(f"no S of construction {variant.construction!r} was given")
    return subspaces[variant.construction].with_select(variant.select)


def _rho(clf: Classifier, S: CurvedSubspace, x) -> tuple[np.ndarray, np.ndarray]:
    est = resolve_estimator(clf, S.settings.get("estimator", "auto"))
    h = resolve_step(clf, est, S.settings.get("step") if est == S.settings.get("estimator") else None)
    rho, labels = asymmetry_scores(clf, x, S.for_model(clf), estimator=est, step=h)
    return rho.detach().cpu().double().numpy(), labels.cpu().numpy()


def choose_variant(clf: Classifier, subspaces: dict, x_dev, y_dev, grid: list[Variant], *, fpr: float = DEFAULT_FPR,
                   attacks=CRITERION_ATTACKS, size: float = CRITERION_SIZE, seed: int = 0, pgd_steps: int = 10,
                   progress: Progress | None = None) -> Development:
    """Score every variant of ``grid`` on the development images ``x_dev``, ``y_dev`` (only these) and choose one.

    Each variant is calibrated on the clean development images (``detection.calibrate_scores``: sign, threshold
    at ``fpr``); the criterion is the mean ROC AUC over ``attacks`` at ``size`` (DeepFool ``x + size r``,
    FGSM/PGD L2 eps ``size`` x the median DeepFool norm of these images), computed on the same images. The
    attacks run once and every variant scores the same attacked images; rho is computed once per S."""
    from .boundary import deepfool

    progress = progress or _noop
    t0 = time.perf_counter()
    if not grid:
        raise GeometryError("the grid of variants is empty")
    x, y = _correct(clf, x_dev, y_dev)
    if x.shape[0] < 2:
        raise GeometryError("fewer than 2 development images are classified correctly; use more images")
    progress(0.0, f"DeepFool norms of {x.shape[0]} development images")
    df = deepfool(clf, x)
    ok = df.converged
    reference = float(np.median(df.norms()[ok].cpu().numpy())) if bool(ok.any()) else float("nan")
    if not math.isfinite(reference) and any(a != "deepfool" for a in attacks):
        raise GeometryError("DeepFool did not converge on any development image, so there is no reference size")
    attacked, succeeded = {}, {}
    for i, a in enumerate(attacks):
        progress(0.05 + 0.1 * i / len(attacks), f"{a} at size {size:g} on the development images")
        xa, _ = attack_batch(clf, x, y, a, size, reference, pgd_steps=pgd_steps, seed=seed + i)
        success = clf.predict(xa) != y
        attacked[a] = xa[success]
        succeeded[a] = int(success.sum())
    rows = []
    bases = sorted({(v.construction, v.select) for v in grid}, key=lambda cs: [(v.construction, v.select)
                                                                                 for v in grid].index(cs))
    done = 0
    for construction, select in bases:
        variants = [v for v in grid if (v.construction, v.select) == (construction, select)]
        progress(0.15 + 0.85 * done / len(bases), f"development scores: S {construction}/{select}")
        done += 1
        try:
            S = variant_subspace(subspaces, variants[0])
        except GeometryError as exc:
            rows.extend(GridRow(v, error=str(exc)) for v in variants)
            continue
        rho_clean, lab_clean = _rho(clf, S, x)
        ru_clean = runner_up_labels(clf, x).cpu().numpy()
        rho_att = {}
        for a, xa in attacked.items():
            if xa.shape[0]:
                r, lab = _rho(clf, S, xa)
                rho_att[a] = (r, lab, runner_up_labels(clf, xa).cpu().numpy())
        for v in variants:
            runner = v.score == "runner-up"
            sign, thr, _, clean_scores = calibrate_scores(rho_clean, lab_clean, fpr=fpr,
                                                          runner_up=ru_clean if runner else None)
            aucs = {}
            for a in attacks:
                if a in rho_att:
                    r, lab, ru = rho_att[a]
                    scores = decide(r, lab, sign, thr, runner_up=ru if runner else None).score
                    aucs[a] = roc(clean_scores, scores).auc
                else:
                    aucs[a] = float("nan")
            vals = np.array(list(aucs.values()), dtype=np.float64)
            crit = float(vals.mean()) if len(vals) and np.all(np.isfinite(vals)) else float("nan")
            rows.append(GridRow(v, S.m, int(sign), float(thr), aucs, crit))
    rows.sort(key=lambda r: grid.index(r.variant))
    crits = np.array([r.criterion for r in rows], dtype=np.float64)
    if not np.any(np.isfinite(crits)):
        raise GeometryError("no variant of the grid could be scored on the development images (no attack "
                            "succeeded, or no S could be built)")
    best = int(np.nanargmax(crits))  # the first of equal maxima: ties go to grid order
    progress(1.0, f"chosen on the development half: {rows[best].variant.key}")
    return Development(rows, rows[best].variant, int(x.shape[0]), reference, succeeded, time.perf_counter() - t0)


def variant_detector(clf: Classifier, subspaces: dict, variant: Variant, x_dev, y_dev, *,
                     fpr: float = DEFAULT_FPR) -> Detector:
    """The detector of ``variant``, calibrated (``detection.calibrate_detector``) on the correctly classified
    clean development images: the same sign and threshold the grid used."""
    x, _ = _correct(clf, x_dev, y_dev)
    return calibrate_detector(clf, variant_subspace(subspaces, variant), x, fpr=fpr, score=variant.score)


# ------------------------------------------------------------------ the whole protocol
@dataclass
class PreregisteredResult:
    model: str
    development: Development
    test: dict            # name -> {"variant", "detector", "clean_images", "clean_fpr", "reference_norm", "rows"}
    split: dict
    settings: dict
    subspaces: dict
    seconds: dict

    @property
    def chosen(self) -> Variant:
        return self.development.chosen

    def to_dict(self) -> dict:
        return {"model": self.model, "protocol": PROTOCOL, "chosen": self.chosen.to_dict(),
                "paper_definition": PAPER_DEFINITION.to_dict(),
                "chosen_is_paper_definition": self.chosen == PAPER_DEFINITION,
                "split": dict(self.split), "development": self.development.to_dict(), "test": self.test,
                "subspaces": self.subspaces, "settings": dict(self.settings), "seconds": dict(self.seconds)}


def _test_block(variant: Variant, ev, resamples: int, bootstrap_seed: int) -> dict:
    rows = []
    for i, r in enumerate(ev.rows):
        ci = bootstrap_auc(ev.clean_scores, r.scores, resamples=resamples, seed=bootstrap_seed + i)
        d = r.to_dict()
        d.update(auc_low=_f(ci["low"]), auc_high=_f(ci["high"]), auc_se=_f(ci["se"]),
                 auc_bootstrap_seed=bootstrap_seed + i)
        rows.append(d)
    det = ev.detector
    return {"variant": variant.to_dict(), "detector": det.summary(), "clean_images": int(len(ev.clean_scores)),
            "clean_fpr": _f(ev.clean_fpr), "reference_norm": _f(ev.reference_norm), "rows": rows,
            "seconds": float(ev.seconds)}


def preregistered_evaluation(clf: Classifier, *, dev_images: int = DEFAULT_DEV_IMAGES,
                             test_images: int = DEFAULT_TEST_IMAGES, split_seed: int = SPLIT_SEED,
                             grid: list[Variant] | None = None, subspace_images: int = DEFAULT_IMAGES,
                             m: int = DEFAULT_M, seed: int = 0, fpr: float = DEFAULT_FPR, attacks=ATTACKS,
                             sizes=DEFAULT_SIZES, pgd_steps: int = 10, resamples: int = DEFAULT_RESAMPLES,
                             bootstrap_seed: int = BOOTSTRAP_SEED, cache=None, recompute: bool = False,
                             progress: Progress | None = None) -> PreregisteredResult:
    """Run :data:`PROTOCOL` on ``clf``: split, choose on the development half, evaluate once on the test half.

    ``grid`` defaults to :func:`declared_grid`; ``subspace_images``, ``m``, ``seed`` build S from the training
    split (``subspace.model_subspace``, cached / shipped like everywhere else; ``seed`` also seeds the attacks);
    ``cache``, ``recompute`` as there."""
    progress = progress or _noop
    t_all = time.perf_counter()
    grid = list(grid) if grid is not None else declared_grid()
    if not grid:
        raise GeometryError("the grid of variants is empty")
    if not 0 < fpr < 1:
        raise GeometryError(f"the target false-positive rate must be in (0, 1), got {fpr}")
    sizes = tuple(float(s) for s in sizes)
    if not sizes or any(not (math.isfinite(s) and s > 0) for s in sizes):
        raise GeometryError(f"attack sizes must be positive numbers, got {list(sizes)}")
    seconds: dict = {}

    # 1. split
    t = time.perf_counter()
    x, y = dataset_images(clf, dev_images + test_images, split="held_out", seed=split_seed)
    dev_idx, test_idx = split_dev_test(y.numpy(), dev_images, test_images, seed=split_seed)
    x_dev, y_dev = x[dev_idx], y[dev_idx]
    x_test, y_test = x[test_idx], y[test_idx]
    del x, y  # from here on the two halves travel separately
    seconds["split"] = time.perf_counter() - t

    # 2. S per construction (training split), selections from the same solver run
    t = time.perf_counter()
    subspaces: dict[str, CurvedSubspace] = {}
    needed = list(dict.fromkeys([v.construction for v in grid] + [PAPER_DEFINITION.construction]))
    for i, c in enumerate(needed):
        progress(0.02 + 0.2 * i / len(needed), f"S ({c} construction) from {subspace_images} training images")
        subspaces[c] = model_subspace(clf, images=subspace_images, m=m, seed=seed, construction=c, select="most",
                                      cache=cache, recompute=recompute)
    seconds["subspaces"] = time.perf_counter() - t

    # 3. choose on the development half
    t = time.perf_counter()
    dev = choose_variant(clf, subspaces, x_dev, y_dev, grid, fpr=fpr, seed=seed, pgd_steps=pgd_steps,
                         progress=lambda f, msg: progress(0.22 + 0.38 * f, msg))
    detectors = {"chosen": variant_detector(clf, subspaces, dev.chosen, x_dev, y_dev, fpr=fpr)}
    if dev.chosen != PAPER_DEFINITION:
        detectors["paper_definition"] = variant_detector(clf, subspaces, PAPER_DEFINITION, x_dev, y_dev, fpr=fpr)
    seconds["development"] = time.perf_counter() - t

    # 4. evaluate once on the test half
    t = time.perf_counter()
    evs = evaluate_detectors(clf, detectors, x_test, y_test, attacks=attacks, sizes=sizes, pgd_steps=pgd_steps,
                             seed=seed, progress=lambda f, msg: progress(0.6 + 0.38 * f, f"test half: {msg}"))
    seconds["test"] = time.perf_counter() - t
    t = time.perf_counter()
    test = {"chosen": _test_block(dev.chosen, evs["chosen"], resamples, bootstrap_seed)}
    test["paper_definition"] = (_test_block(PAPER_DEFINITION, evs["paper_definition"], resamples, bootstrap_seed)
                                if "paper_definition" in evs else test["chosen"])
    seconds["bootstrap"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t_all
    progress(1.0, "done")

    counts = lambda lab: {int(c): int((lab == c).sum()) for c in np.unique(lab)}  # noqa: E731
    split = {"seed": int(split_seed), "method": "dataset_images(held_out, stratified order, seed) then sklearn "
             "train_test_split(stratify=labels, random_state=seed)", "dev_images": int(len(dev_idx)),
             "test_images": int(len(test_idx)), "dev_correct": dev.images,
             "test_correct": int(next(iter(evs.values())).settings["images"]),
             "dev_per_class": counts(y_dev.numpy()), "test_per_class": counts(y_test.numpy())}
    settings = {"fpr": float(fpr), "attacks": list(attacks), "sizes": list(sizes), "pgd_steps": int(pgd_steps),
                "attack_norm": "l2", "seed": int(seed), "subspace_images": int(subspace_images), "m": int(m),
                "criterion": f"mean dev AUC over {', '.join(CRITERION_ATTACKS)} at size {CRITERION_SIZE:g}",
                "grid_size": len(grid), "bootstrap_resamples": int(resamples), "bootstrap_seed": int(bootstrap_seed),
                "confidence": CONFIDENCE, "device": clf.device.type, "dtype": str(clf.dtype).replace("torch.", ""),
                "torch": torch.__version__}
    subs = {c: {k: v for k, v in S.summary().items() if k not in ("eigenvalues", "cache_path")}
            for c, S in subspaces.items()}
    return PreregisteredResult(clf.name, dev, test, split, settings, subs, seconds)


# ------------------------------------------------------------------ Markdown
def _fmt(v, spec=".3f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def markdown(result: dict) -> str:
    """A short Markdown summary of :meth:`PreregisteredResult.to_dict`'s output."""
    ch, dev, sp, sec = result["chosen"], result["development"], result["split"], result["seconds"]
    same = result["chosen_is_paper_definition"]
    L = [f"# Pre-registered detector evaluation: {result['model']}", "",
         f"Development half {sp['dev_images']} images ({sp['dev_correct']} classified correctly), test half "
         f"{sp['test_images']} ({sp['test_correct']}), split seed {sp['seed']}; bootstrap "
         f"{result['settings']['bootstrap_resamples']} resamples, seed {result['settings']['bootstrap_seed']}; "
         f"{sec['total']:.0f} s in all.", "",
         f"**Chosen on the development half:** construction `{ch['construction']}`, selection `{ch['select']}`, "
         f"score `{ch['score']}`" + (" (this is the paper's definition)." if same else "."), "",
         "## Test half (evaluated once)", ""]

    def table(block):
        out = ["| attack | size | attacked / succeeded | AUC [95% CI] | detected at dev threshold | "
               "recovery (detected) | recovery (all) |", "|---|---|---|---|---|---|---|"]
        for r in block["rows"]:
            out.append(f"| {r['attack']} | {r['size']:g} | {r['attacked']} / {r['succeeded']} | "
                       f"{_fmt(r['auc'])} [{_fmt(r['auc_low'])}, {_fmt(r['auc_high'])}] | "
                       f"{_fmt(r['detection_rate'], '.2f')} | {_fmt(r['recovery_detected'], '.2f')} | "
                       f"{_fmt(r['recovery_all'], '.2f')} |")
        return out

    t = result["test"]
    L += [f"Chosen variant ({ch['construction']}/{ch['select']}/{ch['score']}, m = {t['chosen']['detector']['m']}); "
          f"false-positive rate of the development threshold on clean test images: "
          f"{_fmt(t['chosen']['clean_fpr'])} (target {result['settings']['fpr']:g}).", "", *table(t["chosen"]), ""]
    if not same:
        pd = t["paper_definition"]
        L += [f"Paper's definition (paper/most/max, m = {pd['detector']['m']}), same test images; false-positive "
              f"rate on clean test images {_fmt(pd['clean_fpr'])}.", "", *table(pd), ""]
    crits = sorted((r["criterion"] for r in dev["grid"] if r["criterion"] is not None), reverse=True)
    notes = []
    if len(crits) > 1:
        notes.append(f"On the development half the chosen variant's criterion ({crits[0]:.3f}) led the next best "
                     f"({crits[1]:.3f}) by {crits[0] - crits[1]:.3f}. With about {dev['images']} clean development "
                     "images one AUC has a standard error of roughly 0.03-0.04; variants are compared on the same "
                     "images, so their difference is less noisy than that, but no paired test was made and a lead "
                     "this size is " + ("small" if crits[0] - crits[1] < 0.04 else "not small")
                     + " next to it: the choice may not be the best variant, which is what the test half checks.")
    if ch["score"] == "runner-up":
        notes.append("Label recovery with the runner-up score returns the runner-up class of the logits, which after "
                     "a small attack is usually the original class whatever the curvature says: its 'recovery "
                     "(all)' column is exactly that logit baseline, so the recovery numbers of this variant measure "
                     "the logits, not the curvature. Its AUC and detection rate are the curvature's.")
    if notes:
        L += ["## Reading these numbers", "", *[f"- {n}" for n in notes], ""]
    L += ["## Development half: the grid", "",
          "Criterion: " + result["settings"]["criterion"] + " (ties: first in grid order).", "",
          "| construction | select | score | m | sign | " + " | ".join(f"AUC {a}" for a in CRITERION_ATTACKS)
          + " | criterion |", "|---|---|---|---|---|" + "---|" * len(CRITERION_ATTACKS) + "---|"]
    for r in dev["grid"]:
        mark = " **(chosen)**" if {k: r[k] for k in ("construction", "select", "score")} == ch else ""
        if r["error"]:
            L.append(f"| {r['construction']} | {r['select']} | {r['score']} | - | - | "
                     + " | ".join("-" for _ in CRITERION_ATTACKS) + f" | not available: {r['error']} |")
            continue
        L.append(f"| {r['construction']} | {r['select']} | {r['score']} | {r['m']} | {r['sign']:+d} | "
                 + " | ".join(_fmt(r["dev_auc"].get(a)) for a in CRITERION_ATTACKS)
                 + f" | {_fmt(r['criterion'])}{mark} |")
    L += ["", "## Protocol", "", result["protocol"], "",
          "Seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in sec.items()) + ".", ""]
    return "\n".join(L)
