"""Curvature-asymmetry detection of small adversarial perturbations, with label recovery (docs/science.md section 5).

The score, at the input x itself, along the directions v of the shared curved
subspace S (``subspace.CurvedSubspace``), for the image's label k = k(x) and every
class c:

    rho_c(x) = (1/m) sum_{v in S} v^T Hess(f_c - f_k)(x) v        (rho_k = 0)

Second directional derivatives ``v^T Hess f_l(x) v`` of every logit l come from

- ``"exact"``: nested forward-mode differentiation (``torch.func.jvp`` of ``jvp``),
  vmapped over the directions: one forward-over-forward pass, no Hessian;
- ``"fd"``: central differences of the logits along v,
  ``(f(x + h v) - 2 f(x) + f(x - h v)) / h^2`` for unit v: forward passes only
  (2m + 1 per image), curvature at the scale h (the only choice that sees ReLU bends).

Calibration (our reading of the paper; see :data:`SCORE_DEFINITION`): the sign s is
chosen on clean images so that they score low, the detector score is
``max_{c != k} s * rho_c(x)``, and the threshold tau is the ``1 - fpr`` quantile of
clean held-out scores. An image is flagged when its score exceeds tau; the
recovered label of a flagged image is ``argmax_{c != k} s * rho_c(x)`` (an unflagged
image keeps its label). A variant score (``score="runner-up"``, :data:`SCORES`) looks only
at the runner-up class j(x) (the second-largest logit at x): score ``s * rho_j(x)``, sign
from the mean of rho_j over clean images, recovered label j (:data:`RUNNER_UP_DEFINITION`).
Evaluation against DeepFool, FGSM and PGD uses ROC / AUC from scikit-learn. Imports torch, numpy, scikit-learn; never Streamlit or Plotly.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .classifier import Classifier
from .errors import GeometryError
from .operators import FORWARD_AD_LOCK
from .subspace import (CurvedSubspace, cache_dir, model_fingerprint, resolve_estimator, resolve_step,
                       settings_key)

Progress = Callable[[float, str], None]

SCORE_DEFINITION = (
    "rho_c(x) = (1/m) sum_{v in S} v^T Hess(f_c - f_k)(x) v with k = k(x) (so rho_k = 0), at the input x. "
    "The sign s = +1 or -1 is calibrated on clean images: s = -sign(mean over clean images and classes c != k of "
    "rho_c), so clean images score low. Detector score: max_{c != k} s * rho_c(x). Threshold tau: the (1 - fpr) "
    "quantile of clean held-out scores; flagged when score > tau. Recovered label: argmax_{c != k} s * rho_c(x) "
    "for a flagged image, k(x) otherwise."
)
"""The one statement of the detector's conventions (docs/science.md section 5); tested in tests/test_detection.py."""

RUNNER_UP_DEFINITION = (
    "Variant score 'runner-up': with j = j(x) the runner-up class at x (the second-largest logit), score s * rho_j(x); "
    "s = -sign(mean over clean images of rho_j), so clean images score low; recovered label j for a flagged image. "
    "Everything else as in the definition."
)
SCORES = ("max", "runner-up")
"""The score over classes: ``"max"`` (max over c != k, the definition, default) or ``"runner-up"`` (the runner-up
class only; a variant, see :data:`RUNNER_UP_DEFINITION`)."""
DEFAULT_SCORE = "max"

DEFAULT_FPR = 0.05
DIRECTION_SETS = ("all", "positive", "negative")
"""Which directions the score averages over: S itself (the definition), or the m most positively / negatively
curved directions of the same average operator (``CurvedSubspace.with_signs``; an exploratory variant)."""
ATTACKS = ("deepfool", "fgsm", "pgd")
DEFAULT_SIZES = (1.0, 1.5, 2.0)
DETECTOR_VERSION = 3  # 3: DeepFool refinement (attacks moved)


def _noop(frac: float, msg: str) -> None:
    pass


# ------------------------------------------------------------ second derivatives
def default_rows(clf: Classifier) -> int:
    """Model evaluations per pass: 256 on the CPU (measured fastest per image for the bundled LeNets:
    larger batches fall out of cache), 4096 on a GPU."""
    return 256 if clf.device.type == "cpu" else 4096


def _directions(clf: Classifier, V) -> torch.Tensor:
    """Directions as ``(m, *input_shape)`` on the model's device/dtype from ``(d, m)`` or ``(m, *shape)``."""
    V = torch.as_tensor(V)
    if tuple(V.shape[1:]) != clf.input_shape:
        if V.dim() == 2 and V.shape[0] == clf.dim:
            V = V.T.reshape(-1, *clf.input_shape)
        else:
            raise GeometryError(f"directions must be (d={clf.dim}, m) or (m, {', '.join(map(str, clf.input_shape))}),"
                                f" got {tuple(V.shape)}")
    return V.to(device=clf.device, dtype=clf.dtype)


def _d2_exact(clf: Classifier, x: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """Nested forward mode: ``(b, m, L)`` second directional derivatives of the logits (thread-safe: runs
    under :data:`geometry.operators.FORWARD_AD_LOCK`)."""
    f = clf.module

    def along(u):
        ub = u.expand_as(x)

        def df(y):
            return torch.func.jvp(f, (y,), (ub,))[1]

        return torch.func.jvp(df, (x,), (ub,))[1]

    # forward-AD levels are process-wide, so two threads in forward mode at once fail: hold the library's
    # forward-mode lock (geometry.operators.FORWARD_AD_LOCK). Nested forward mode reaches torch internals that
    # warn about torch.jit.script's deprecation; the warning is torch's, not the user's, so keep it off their
    # terminal (catch_warnings swaps process-wide filters, one more reason to run this under the lock).
    with FORWARD_AD_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
        return torch.func.vmap(along)(U).transpose(0, 1)


def _d2_fd(clf: Classifier, x: torch.Tensor, U: torch.Tensor, h: float) -> torch.Tensor:
    """Central differences of the logits along unit directions, scaled by ``|u|^2``: ``(b, m, L)``."""
    b, m = x.shape[0], U.shape[0]
    flat = U.reshape(m, -1)
    norms = flat.norm(dim=1)
    unit = (flat / norms.clamp_min(torch.finfo(flat.dtype).tiny)[:, None]).reshape(U.shape)
    pts = torch.cat([x[:, None] + h * unit[None], x[:, None] - h * unit[None]], dim=1)  # (b, 2m, *shape)
    with torch.no_grad():
        f0 = clf.module(x)
        fp = clf.module(pts.reshape(b * 2 * m, *x.shape[1:])).reshape(b, 2, m, -1)
    d2 = (fp[:, 0] + fp[:, 1] - 2 * f0[:, None]) / (h * h)
    return d2 * (norms ** 2)[None, :, None]


def second_derivatives(clf: Classifier, x, V, *, estimator: str = "fd", step: float | None = None,
                       batch_size: int | None = None) -> torch.Tensor:
    """``v^T Hess f_l(x) v`` for every image, direction and logit: ``(B, m, L)``.

    x ``(B, *shape)`` (or one image); V ``(d, m)`` or ``(m, *shape)``. ``estimator``
    ``"exact"`` (nested forward mode) or ``"fd"`` (central differences with step h in
    pixels along unit directions, default ``operators.default_step``; ``"auto"`` resolves
    as in ``subspace.resolve_estimator``). ``batch_size`` bounds images x directions per pass (default
    :func:`default_rows`)."""
    x = clf.as_batch(x).detach()
    U = _directions(clf, V)
    est = resolve_estimator(clf, estimator)
    h = resolve_step(clf, est, step)
    m = U.shape[0]
    rows = default_rows(clf) if batch_size is None else int(batch_size)
    per = max(1, rows // max(1, (2 * m + 1) if est == "fd" else m))
    # chunks of ``per`` images, here or on Ray workers (geometry.distributed): the same chunks either way
    from .distributed import map_chunks

    outs = map_chunks(_d2_chunk, clf, [(s, min(s + per, x.shape[0])) for s in range(0, x.shape[0], per)], x, U, est,
                      h, what="second derivatives")
    if not outs:
        return torch.empty(0, m, clf.num_classes, dtype=clf.dtype, device=clf.device)
    return torch.cat(outs)


def _d2_chunk(clf: Classifier, bounds: tuple[int, int], x: torch.Tensor, U: torch.Tensor, est: str,
              h: float | None) -> torch.Tensor:
    """:func:`second_derivatives` of the images ``bounds[0]:bounds[1]`` (one chunk)."""
    xb, U = x[bounds[0]:bounds[1]].to(clf.device), U.to(clf.device)
    if est == "exact":
        try:
            return _d2_exact(clf, xb, U).detach()
        except RuntimeError as exc:
            raise GeometryError(f"this model does not support forward-mode differentiation "
                                f"({str(exc).splitlines()[0][:160]}); use estimator='fd'") from None
    return _d2_fd(clf, xb, U, h)


def asymmetry_scores(clf: Classifier, x, V, *, estimator: str = "fd", step: float | None = None,
                     batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rho, labels)``: rho ``(B, L)`` with ``rho[b, c] = (1/m) sum_v v^T Hess(f_c - f_k)(x_b) v``
    (``k = labels[b] = k(x_b)``, so ``rho[b, k] = 0``), from :func:`second_derivatives`."""
    x = clf.as_batch(x).detach()
    labels = clf.predict(x)
    d2 = second_derivatives(clf, x, V, estimator=estimator, step=step, batch_size=batch_size)
    mean = d2.mean(dim=1)  # (B, L): (1/m) sum_v v^T Hess f_l v
    rho = mean - mean.gather(1, labels[:, None])
    rho.scatter_(1, labels[:, None], 0.0)
    return rho, labels


def runner_up_labels(clf: Classifier, x) -> torch.Tensor:
    """The runner-up class of each image: the index of the second-largest logit ``(B,)`` (for one class, the
    label itself)."""
    x = clf.as_batch(x).detach()
    with torch.no_grad():
        logits = clf.logits(x)
    if logits.shape[1] < 2:
        return logits.argmax(dim=1)
    return logits.topk(2, dim=1).indices[:, 1]


def check_score(score: str) -> str:
    if score not in SCORES:
        raise GeometryError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
    return score


# ------------------------------------------------------------ detector
@dataclass
class DetectionResult:
    """Per-image detector output (every array has the batch as its first axis)."""

    label: np.ndarray
    rho: np.ndarray
    signed: np.ndarray
    score: np.ndarray
    threshold: float
    flagged: np.ndarray
    recovered_label: np.ndarray
    runner_up: np.ndarray | None = None  # the runner-up class per image, for the "runner-up" score only

    def __len__(self):
        return len(self.label)

    def item(self, i: int = 0) -> dict:
        """JSON-ready dict for image i: label, score, threshold, flagged, recovered_label, rho."""
        return {"label": int(self.label[i]), "score": float(self.score[i]), "threshold": float(self.threshold),
                "flagged": bool(self.flagged[i]), "recovered_label": int(self.recovered_label[i]),
                "rho": [float(v) for v in self.rho[i]]}


@dataclass
class Detector:
    """A calibrated curvature-asymmetry detector (see :data:`SCORE_DEFINITION`).

    ``basis`` ``(d, m)`` is S; ``sign`` is s; ``threshold`` is tau for the target ``fpr``;
    ``calibration`` holds the clean calibration scores' statistics."""

    basis: torch.Tensor
    sign: int
    threshold: float
    fpr: float
    estimator: str
    step: float | None
    calibration: dict = field(default_factory=dict)
    model: str = "model"
    fingerprint: str = ""
    subspace: dict = field(default_factory=dict)
    path: str | None = None
    calibration_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    directions: str = "all"
    score: str = DEFAULT_SCORE

    @property
    def m(self) -> int:
        return int(self.basis.shape[1])

    def detect(self, clf: Classifier, x, batch_size: int | None = None) -> DetectionResult:
        """Score, flag and recover labels for a batch (or one image)."""
        if self.basis.shape[0] != clf.dim:
            raise GeometryError(f"this detector was calibrated for d = {self.basis.shape[0]} inputs; the model has "
                                f"d = {clf.dim}")
        rho, labels = asymmetry_scores(clf, x, self.basis, estimator=self.estimator, step=self.step,
                                       batch_size=batch_size)
        runner_up = runner_up_labels(clf, x).cpu().numpy() if self.score == "runner-up" else None
        return decide(rho.detach().cpu().double().numpy(), labels.cpu().numpy(), self.sign, self.threshold,
                      runner_up=runner_up)

    @property
    def variant(self) -> dict:
        """Which detector this is: the construction and selection of its directions and the score over classes."""
        from .subspace import DEFAULT_CONSTRUCTION, resolve_select

        sub = self.subspace or {}
        if self.directions != "all":
            select = self.directions
        else:  # "select" is recorded only where "signs" cannot say it (both-ends records signs "both" too)
            select = sub.get("select") or resolve_select(None, sub.get("signs"))
        return {"construction": str(sub.get("construction", DEFAULT_CONSTRUCTION)), "select": select,
                "score": self.score}

    def summary(self) -> dict:
        return {"model": self.model, "m": self.m, "directions": self.directions, "score": self.score,
                "sign": int(self.sign),
                "threshold": float(self.threshold),
                "fpr": float(self.fpr), "estimator": self.estimator, "step": self.step,
                "calibration": dict(self.calibration), "definition": SCORE_DEFINITION}

    def save(self, path: str | Path) -> str:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"version": DETECTOR_VERSION, "sign": int(self.sign), "threshold": float(self.threshold),
                "fpr": float(self.fpr), "estimator": self.estimator, "step": self.step,
                "calibration": self.calibration, "model": self.model, "fingerprint": self.fingerprint,
                "subspace": self.subspace, "directions": self.directions, "score": self.score}
        tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
        np.savez_compressed(tmp, basis=self.basis.detach().cpu().double().numpy(), meta=np.array(json.dumps(meta)),
                            calibration_scores=np.asarray(self.calibration_scores, dtype=np.float64))
        os.replace(tmp, path)
        self.path = str(path)
        return str(path)

    @classmethod
    def load(cls, path: str | Path) -> "Detector":
        try:
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(str(f["meta"]))
                basis = torch.from_numpy(f["basis"].copy())
                scores = f["calibration_scores"].copy()
        except (OSError, KeyError, ValueError) as exc:
            raise GeometryError(f"{path} is not a saved detector ({type(exc).__name__}); delete it and calibrate "
                                "again") from None
        if meta.get("version") != DETECTOR_VERSION:
            raise GeometryError(f"{path} was saved by another version; delete it and calibrate again")
        return cls(basis, int(meta["sign"]), float(meta["threshold"]), float(meta["fpr"]), meta["estimator"],
                   meta["step"], meta["calibration"], meta["model"], meta["fingerprint"], meta["subspace"], str(path),
                   scores, meta.get("directions", "all"), meta.get("score", DEFAULT_SCORE))


def decide(rho: np.ndarray, labels: np.ndarray, sign: int, threshold: float,
           runner_up: np.ndarray | None = None) -> DetectionResult:
    """Apply the sign, the max over c != k, the threshold and the label recovery to raw ``rho`` ``(B, L)``.

    With ``runner_up`` ``(B,)`` (the runner-up class of each image, :func:`runner_up_labels`) the score is
    ``s * rho_j`` for that class j alone and the recovered label of a flagged image is j (the ``"runner-up"``
    score, :data:`RUNNER_UP_DEFINITION`)."""
    rho = np.asarray(rho, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    signed = sign * rho
    rows = np.arange(len(labels))
    if runner_up is not None:
        best = np.asarray(runner_up, dtype=np.int64).reshape(-1)
        if best.shape != labels.shape:
            raise GeometryError(f"runner_up must hold one class per image ({len(labels)}), got {best.shape}")
        score = signed[rows, best] if signed.shape[1] > 1 else np.full(len(labels), -np.inf)
        score = np.where(best == labels, -np.inf, score)  # a one-class model has no runner-up
    else:
        masked = signed.copy()
        masked[rows, labels] = -np.inf
        score = masked.max(axis=1) if masked.shape[1] > 1 else np.full(len(labels), -np.inf)
        best = masked.argmax(axis=1)
    flagged = score > threshold
    recovered = np.where(flagged, best, labels)
    return DetectionResult(labels, rho, signed, score, float(threshold), flagged, recovered,
                           None if runner_up is None else best)


def calibrate_scores(rho: np.ndarray, labels: np.ndarray, *, fpr: float = DEFAULT_FPR,
                     runner_up: np.ndarray | None = None) -> tuple[int, float, dict, np.ndarray]:
    """Sign, threshold, calibration statistics and clean scores from the raw ``rho`` ``(n, L)`` of clean images
    (what :func:`calibrate_detector` does once rho is known). The sign makes the mean of the rho entries the score
    looks at negative for clean images (all c != k for the max score; the runner-up class with ``runner_up``);
    the threshold is the smallest clean score with at most ``fpr`` of clean scores above it."""
    if not 0 < fpr < 1:
        raise GeometryError(f"the target false-positive rate must be in (0, 1), got {fpr}")
    rho = np.asarray(rho, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n, L = rho.shape
    if n < 2:
        raise GeometryError("calibration needs at least 2 clean images")
    off = rho[np.arange(L)[None, :] != labels[:, None]].reshape(n, L - 1)
    if runner_up is None:
        mean_rho = float(off.mean())
    else:
        mean_rho = float(rho[np.arange(n), np.asarray(runner_up, dtype=np.int64)].mean())
    sign = -1 if mean_rho > 0 else 1
    scores = decide(rho, labels, sign, np.inf, runner_up=runner_up).score
    # the smallest observed score with at most fpr of clean scores above it
    threshold = float(np.quantile(scores, 1 - fpr, method="higher"))
    calibration = {"images": int(n), "mean_rho": mean_rho, "fraction_positive_rho": float((off > 0).mean()),
                   "score_mean": float(scores.mean()), "score_std": float(scores.std()),
                   "achieved_fpr": float((scores > threshold).mean())}
    return sign, threshold, calibration, scores


def calibrate_detector(clf: Classifier, S: CurvedSubspace, x_clean, *, fpr: float = DEFAULT_FPR,
                       estimator: str | None = None, step: float | None = None, directions: str = "all",
                       batch_size: int | None = None, score: str = DEFAULT_SCORE) -> Detector:
    """Sign and threshold from clean images ``x_clean`` (held-out, not used for S).

    ``estimator``/``step`` default to S's own (so curvature is measured the same way);
    ``directions`` picks S or its positively / negatively curved variant (:data:`DIRECTION_SETS`);
    ``score`` the score over classes (:data:`SCORES`: ``"max"``, the definition, or ``"runner-up"``)."""
    check_score(score)
    if not 0 < fpr < 1:
        raise GeometryError(f"the target false-positive rate must be in (0, 1), got {fpr}")
    if directions not in DIRECTION_SETS:
        raise GeometryError(f"directions must be one of {', '.join(DIRECTION_SETS)}, got {directions!r}")
    settings = dict(S.settings)
    if directions != "all":
        S = S.with_signs(directions)
    est = resolve_estimator(clf, estimator or S.settings.get("estimator", "auto"))
    if step is None and est == S.settings.get("estimator"):
        step = S.settings.get("step")
    h = resolve_step(clf, est, step)
    basis = S.for_model(clf)
    rho, labels = asymmetry_scores(clf, x_clean, basis, estimator=est, step=h, batch_size=batch_size)
    rho = rho.detach().cpu().double().numpy()
    labels = labels.cpu().numpy()
    runner_up = runner_up_labels(clf, x_clean).cpu().numpy() if score == "runner-up" else None
    sign, threshold, calibration, scores = calibrate_scores(rho, labels, fpr=fpr, runner_up=runner_up)
    return Detector(basis.detach().cpu().double(), sign, threshold, float(fpr), est, h, calibration, clf.name,
                    model_fingerprint(clf), settings, None, scores, directions, score)


def detector_key(S: CurvedSubspace, *, fpr: float = DEFAULT_FPR, images: int = 200, seed: int = 0,
                 estimator: str | None = None, step: float | None = None, directions: str = "all",
                 score: str = DEFAULT_SCORE) -> dict:
    """What identifies a saved detector for S (the arguments of :func:`model_detector`)."""
    return {"subspace": settings_key(S.settings), "fpr": float(fpr), "images": int(images), "seed": int(seed),
            "estimator": estimator, "step": step, "directions": directions, "score": check_score(score)}


def model_detector(clf: Classifier, S: CurvedSubspace, *, fpr: float = DEFAULT_FPR, images: int = 200,
                   seed: int = 0, estimator: str | None = None, step: float | None = None, directions: str = "all",
                   cache: str | Path | None | bool = None, recompute: bool = False,
                   score: str = DEFAULT_SCORE) -> Detector:
    """A detector calibrated on ``images`` clean held-out images (the first ``images`` of a stratified
    order, seed ``seed``), cached next to S (``cache`` as in ``subspace.model_subspace``). A detector shipped
    with a bundled model for the same S and settings (``geometry.precomputed``) is used first. ``score``: the
    score over classes (:data:`SCORES`)."""
    from .subspace import dataset_images

    key = detector_key(S, fpr=fpr, images=images, seed=seed, estimator=estimator, step=step, directions=directions,
                       score=score)
    path = None
    if cache is not False and not recompute:
        from .precomputed import shipped_detector

        det = shipped_detector(clf, S, key, images, seed)
        if det is not None:
            return det
    if cache is not False:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in clf.name)[:40] or "model"
        path = cache_dir(cache) / "detector" / f"{safe}-{model_fingerprint(clf)}-{settings_key(key)}.npz"
        if path.exists() and not recompute:
            try:
                det = Detector.load(path)
            except GeometryError:  # another version or a damaged file: calibrate again and overwrite it
                det = None
            if det is not None and det.fingerprint == model_fingerprint(clf):
                return det
    x, _ = dataset_images(clf, images, split="held_out", seed=seed)
    det = calibrate_detector(clf, S, x, fpr=fpr, estimator=estimator, step=step, directions=directions, score=score)
    det.calibration.update(split="held_out", seed=int(seed))
    if path is not None:
        try:
            det.save(path)
        except OSError:
            pass
    return det


# ------------------------------------------------------------ ROC
@dataclass
class Roc:
    """ROC of perturbed (positive) against clean (negative) scores; higher score = more suspicious."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float


def roc(clean_scores, perturbed_scores) -> Roc:
    """ROC curve and AUC (scikit-learn) with perturbed images as the positive class.

    AUC is the probability that a perturbed image outscores a clean one (ties count half);
    NaN when either set is empty."""
    from sklearn.metrics import roc_auc_score, roc_curve

    neg = np.asarray(clean_scores, dtype=np.float64).reshape(-1)
    pos = np.asarray(perturbed_scores, dtype=np.float64).reshape(-1)
    if len(neg) == 0 or len(pos) == 0:
        return Roc(np.array([0.0, 1.0]), np.array([0.0, 1.0]), np.array([np.inf, -np.inf]), float("nan"))
    y = np.concatenate([np.zeros(len(neg)), np.ones(len(pos))])
    s = np.concatenate([neg, pos])
    # -inf scores (a model with one class) would break sklearn: map them below every finite score
    finite = s[np.isfinite(s)]
    if not np.all(np.isfinite(s)):
        lo = (finite.min() - 1.0) if len(finite) else 0.0
        hi = (finite.max() + 1.0) if len(finite) else 0.0
        s = np.where(np.isneginf(s), lo, np.where(np.isposinf(s), hi, s))
        s = np.nan_to_num(s, nan=lo)
    fpr, tpr, thr = roc_curve(y, s)
    return Roc(fpr, tpr, thr, float(roc_auc_score(y, s)))


# ------------------------------------------------------------ evaluation
@dataclass
class AttackRow:
    """The detector against one attack at one size."""

    attack: str
    size: float
    eps: float | None
    attacked: int
    succeeded: int
    mean_norm: float
    scores: np.ndarray
    auc: float
    roc_fpr: np.ndarray
    roc_tpr: np.ndarray
    detection_rate: float
    detected: int
    recovery_detected: float
    recovery_all: float
    rho_true: float = float("nan")
    rho_others: float = float("nan")

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.attacked if self.attacked else float("nan")

    @property
    def name(self) -> str:
        return f"{self.attack} x{self.size:g}"

    def to_dict(self, curves: bool = False) -> dict:
        out = {"attack": self.attack, "size": self.size, "eps": self.eps, "attacked": self.attacked,
               "succeeded": self.succeeded, "success_rate": _f(self.success_rate), "mean_norm": _f(self.mean_norm),
               "auc": _f(self.auc), "detection_rate": _f(self.detection_rate), "detected": self.detected,
               "recovery_detected": _f(self.recovery_detected), "recovery_all": _f(self.recovery_all),
               "rho_true": _f(self.rho_true), "rho_others": _f(self.rho_others)}
        if curves:
            out.update(roc_fpr=self.roc_fpr.tolist(), roc_tpr=self.roc_tpr.tolist())
        return out


def _f(v) -> float | None:
    """A number for JSON: None for None or NaN."""
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


@dataclass
class DetectorEvaluation:
    """Clean evaluation scores, the achieved false-positive rate and one :class:`AttackRow` per attack and size."""

    detector: Detector
    clean_scores: np.ndarray
    clean_fpr: float
    reference_norm: float
    rows: list[AttackRow]
    settings: dict
    seconds: float
    clean_rho: float = float("nan")

    def to_dict(self, curves: bool = False) -> dict:
        return {"detector": self.detector.summary(), "clean_images": int(len(self.clean_scores)),
                "clean_rho": _f(self.clean_rho),
                "clean_fpr": _f(self.clean_fpr), "reference_norm": _f(self.reference_norm),
                "rows": [r.to_dict(curves) for r in self.rows], "settings": dict(self.settings),
                "seconds": float(self.seconds)}


def attack_batch(clf: Classifier, x: torch.Tensor, y: torch.Tensor, attack: str, size: float, reference_norm: float,
                 *, norm: str = "l2", pgd_steps: int = 10, seed: int = 0) -> tuple[torch.Tensor, float | None]:
    """Perturb ``x`` with ``attack`` at ``size``; returns (images, eps).

    DeepFool: the iterate ``x + size * r`` (``size = 1 + overshoot``, at least the attack default 1.02),
    ``eps`` None. FGSM / PGD: ``eps = size * reference_norm`` (in the attack's norm)."""
    from .attacks import fgsm, pgd
    from .boundary import ATTACK_OVERSHOOT, deepfool

    if attack not in ATTACKS:
        raise GeometryError(f"attack must be one of {', '.join(ATTACKS)}, got {attack!r}")
    if not size > 0:
        raise GeometryError(f"attack size must be positive, got {size}")
    if attack == "deepfool":
        return deepfool(clf, x, overshoot=max(size - 1.0, ATTACK_OVERSHOOT)).point.detach(), None
    eps = float(size * reference_norm)
    if attack == "fgsm":
        return fgsm(clf, x, y, eps, norm=norm, pixel_range=clf.pixel_range), eps
    gen = torch.Generator().manual_seed(seed)
    return pgd(clf, x, y, eps, norm=norm, steps=pgd_steps, pixel_range=clf.pixel_range, generator=gen), eps


def evaluate_detector(clf: Classifier, detector: Detector, x, y, *, attacks=ATTACKS, sizes=DEFAULT_SIZES,
                      norm: str = "l2", pgd_steps: int = 10, seed: int = 0,
                      progress: Progress | None = None) -> DetectorEvaluation:
    """ROC / AUC, detection rate at the detector's threshold and label-recovery accuracy per attack and size.

    ``x``, ``y``: held-out images and true labels *not* used for calibration. Only images
    the model classifies correctly are used; clean ones are the negatives, and
    successfully attacked ones (label changed) the positives. FGSM/PGD sizes are
    multiples of ``reference_norm``, the median L2 DeepFool norm on these images."""
    return evaluate_detectors(clf, {"": detector}, x, y, attacks=attacks, sizes=sizes, norm=norm,
                              pgd_steps=pgd_steps, seed=seed, progress=progress)[""]


def _row(detector: Detector, clean: DetectionResult, res: DetectionResult | None, truth: np.ndarray, attack: str,
         size: float, eps, attacked: int, mean_norm: float) -> AttackRow:
    if res is None:
        r = roc(clean.score, np.zeros(0))
        return AttackRow(attack, size, eps, attacked, 0, float("nan"), np.zeros(0), r.auc, r.fpr, r.tpr,
                         float("nan"), 0, float("nan"), float("nan"))
    flagged = res.flagged
    rec_all = decide(res.rho, res.label, detector.sign, -np.inf, runner_up=res.runner_up).recovered_label
    r = roc(clean.score, res.score)
    rec_det = float((res.recovered_label[flagged] == truth[flagged]).mean()) if flagged.any() else float("nan")
    rows = np.arange(len(res))
    return AttackRow(attack, size, eps, attacked, len(res), mean_norm, res.score, r.auc, r.fpr, r.tpr,
                     float(flagged.mean()), int(flagged.sum()), rec_det, float((rec_all == truth).mean()),
                     float(res.rho[rows, truth].mean()), _mean_other_rho(res))


def _mean_other_rho(res: DetectionResult) -> float:
    """Mean of the unsigned rho_c over images and classes c != k(x)."""
    n, L = res.rho.shape
    if n == 0 or L < 2:
        return float("nan")
    return float(res.rho[np.arange(L)[None, :] != res.label[:, None]].mean())


def evaluate_detectors(clf: Classifier, detectors: dict[str, Detector], x, y, *, attacks=ATTACKS,
                       sizes=DEFAULT_SIZES, norm: str = "l2", pgd_steps: int = 10, seed: int = 0,
                       progress: Progress | None = None) -> dict[str, DetectorEvaluation]:
    """:func:`evaluate_detector` for several detectors on the *same* attacked images (attacks run once)."""
    from .boundary import deepfool

    progress = progress or _noop
    t0 = time.perf_counter()
    x = clf.as_batch(x)
    y = torch.as_tensor(y, device=x.device).long().reshape(-1)
    if y.numel() != x.shape[0]:
        raise GeometryError(f"y must hold one label per image ({x.shape[0]}), got {y.numel()}")
    keep = clf.predict(x) == y
    x, y = x[keep], y[keep]
    if x.shape[0] < 2:
        raise GeometryError("fewer than 2 evaluation images are classified correctly; use more images")
    sizes = tuple(float(s) for s in sizes)
    for a in attacks:
        if a not in ATTACKS:
            raise GeometryError(f"attack must be one of {', '.join(ATTACKS)}, got {a!r}")
    progress(0.02, f"scoring {x.shape[0]} clean images")
    clean = {name: det.detect(clf, x) for name, det in detectors.items()}
    progress(0.1, "DeepFool norms (the reference size)")
    df = deepfool(clf, x)
    ok = df.converged
    reference = float(np.median(df.norms()[ok].cpu().numpy())) if bool(ok.any()) else float("nan")
    if not math.isfinite(reference) and any(a != "deepfool" for a in attacks):
        raise GeometryError("DeepFool did not converge on any evaluation image, so there is no reference size for "
                            "FGSM/PGD; use other images")
    rows: dict[str, list[AttackRow]] = {name: [] for name in detectors}
    configs = [(a, s) for a in attacks for s in sizes]
    truth_all = y.cpu().numpy()
    # one attack configuration per chunk, here or on Ray workers (geometry.distributed); rows are built here
    from .distributed import map_chunks

    progress(0.15, f"{len(configs)} attacks: attacking and scoring")
    done = map_chunks(_attack_config, clf, list(enumerate(configs)), x, y, reference, detectors, norm, pgd_steps, seed,
                      progress=lambda f, msg: progress(0.15 + 0.85 * f, msg), what="attacks")
    for (attack, size), (eps, success, mean_norm, results) in zip(configs, done):
        for name, det in detectors.items():
            rows[name].append(_row(det, clean[name], results[name], truth_all[success], attack, size, eps,
                                   int(x.shape[0]), mean_norm))
    progress(1.0, "done")
    settings = {"attacks": list(attacks), "sizes": list(sizes), "norm": norm, "pgd_steps": pgd_steps, "seed": seed,
                "images": int(x.shape[0]), "size_meaning": "DeepFool: x + size * r (overshoot size - 1, at least "
                "0.02); FGSM/PGD: eps = size * median DeepFool L2 norm of the evaluation images"}
    seconds = time.perf_counter() - t0
    return {name: DetectorEvaluation(det, clean[name].score, float(clean[name].flagged.mean()), reference,
                                     rows[name], settings, seconds, _mean_other_rho(clean[name]))
            for name, det in detectors.items()}


def _attack_config(clf: Classifier, config, x, y, reference: float, detectors: dict, norm: str, pgd_steps: int,
                   seed: int):
    """One configuration ``(i, (attack, size))`` of :func:`evaluate_detectors`: attack the images, keep the successes,
    score them with every detector. Returns ``(eps, success, mean_norm, {name: DetectionResult | None})``."""
    i, (attack, size) = config
    x, y = x.to(clf.device), y.to(clf.device)
    xa, eps = attack_batch(clf, x, y, attack, size, reference, norm=norm, pgd_steps=pgd_steps, seed=seed + i)
    success = (clf.predict(xa) != y).cpu().numpy()
    norms = (xa - x).reshape(x.shape[0], -1).norm(dim=1).cpu().numpy()
    mean_norm = float(norms[success].mean()) if success.any() else float("nan")
    xs = xa[torch.as_tensor(success, device=x.device)]
    return eps, success, mean_norm, {name: det.detect(clf, xs) if success.any() else None
                                     for name, det in detectors.items()}


# ------------------------------------------------------------ one image, growing perturbation
@dataclass
class Sweep:
    """The detector on one image perturbed by ``attack`` at each of ``sizes`` (size 0 = the clean image).

    ``images`` ``(S, *shape)``; ``norms`` the L2 norm of each applied perturbation;
    ``reference_norm`` the image's DeepFool norm |r|; ``result`` the detector's output per size."""

    attack: str
    sizes: np.ndarray
    images: torch.Tensor
    norms: np.ndarray
    reference_norm: float
    clean_label: int
    result: DetectionResult


def perturbation_sweep(clf: Classifier, detector: Detector, x, attack: str, sizes, *, norm: str = "l2",
                       pgd_steps: int = 10, seed: int = 0) -> Sweep:
    """Perturb one image more and more and score every version (all sizes in one batch).

    Sizes are in units of the image's minimal (DeepFool, no overshoot) perturbation r:
    DeepFool gives ``x + size * r`` (clipped to the pixel range), FGSM/PGD use
    ``eps = size * |r|`` against the image's current label."""
    from .attacks import fgsm, pgd
    from .boundary import deepfool

    if attack not in ATTACKS:
        raise GeometryError(f"attack must be one of {', '.join(ATTACKS)}, got {attack!r}")
    x = clf.as_batch(x)
    if x.shape[0] != 1:
        raise GeometryError(f"a sweep perturbs one image; got a batch of {x.shape[0]}")
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1)
    if len(sizes) == 0 or np.any(~np.isfinite(sizes)) or np.any(sizes < 0):
        raise GeometryError(f"sizes must be non-negative numbers, got {sizes.tolist()}")
    label = int(clf.predict(x)[0])
    df = deepfool(clf, x, overshoot=0.0)
    if not bool(df.converged[0]):
        raise GeometryError("DeepFool found no adversarial perturbation for this image, so there is no size to "
                            "scale the attacks by; pick another image")
    r = df.perturbation
    ref = float(r.norm())
    y = torch.tensor([label], device=x.device)
    out = []
    for i, s in enumerate(sizes):
        if s == 0:
            out.append(x)
        elif attack == "deepfool":
            out.append(clf.clip(x + float(s) * r))
        elif attack == "fgsm":
            out.append(fgsm(clf, x, y, float(s) * ref, norm=norm, pixel_range=clf.pixel_range))
        else:
            gen = torch.Generator().manual_seed(seed + i)
            out.append(pgd(clf, x, y, float(s) * ref, norm=norm, steps=pgd_steps, pixel_range=clf.pixel_range,
                           generator=gen))
    imgs = torch.cat(out).detach()
    res = detector.detect(clf, imgs)
    norms = (imgs - x).reshape(len(sizes), -1).norm(dim=1).cpu().double().numpy()
    return Sweep(attack, sizes, imgs.cpu(), norms, ref, label, res)
