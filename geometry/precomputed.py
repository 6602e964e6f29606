"""Saved results of the slow analyses: the ones shipped with the bundled models, and the user's own.

The Vulnerability page needs, for a model, the shared curved subspace S, the detector's
calibration, the two vulnerability experiments and the detector's evaluation against attacks:
minutes of computation on a busy CPU. For the bundled models at the page's default settings
(:data:`PAGE_DEFAULTS`) these results ship in ``assets/precomputed/<model>/`` (written by
``make precompute``, i.e. ``scripts/precompute.py``); every other result, once computed, is
saved in the user's cache folder (``subspace.cache_dir``).

One entry is two files: ``<stem>.json`` (what it is: the code version :data:`CODE_VERSION`, the
kind, the model's fingerprint ``subspace.model_fingerprint``, the settings ``key``, a digest of
the images the computation used, the SHA-256 of the arrays file, the scalar results, and the SHA-256
of all of that, ``record_sha256``) and ``<stem>.npz`` (the arrays). An entry is used only when all of
these match the request and its values are finite and in range (rates in [0, 1], labels among the
model's classes); a
missing, stale (another model, other settings, other images, another code version), damaged or
altered entry is passed over — with the reason logged on the ``geometry.precomputed`` logger —
and the result is computed again. Files are read with ``json`` and ``np.load(allow_pickle=False)``
only: nothing in them runs as code.

The library functions the app and the CLI already call look here first: ``subspace.model_subspace``,
``detection.model_detector``, ``tasks.held_out_vulnerability`` and
``tasks.held_out_detector_evaluation``; ``cache=False`` (the CLI's ``--no-cache``) and
``recompute=True`` skip every saved result.

Imports numpy, torch and geometry; never Streamlit or Plotly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .subspace import CACHE_VERSION, CurvedSubspace, cache_dir, model_fingerprint, settings_key

log = logging.getLogger("geometry.precomputed")

FORMAT_VERSION = 3
"""Bump when what an entry holds, or how any stored result is computed, changes.
2: the record's own digest; DeepFool's in-range refinement (shorter attacks and boundary points).
3: detectors record their score over classes; the page's default detector is the pre-registered variant
(``geometry.detector_variant``), whose S may be of another construction (shipped as ``subspace-<construction>``)."""


def _code_version() -> str:
    from .detection import DETECTOR_VERSION

    return f"{FORMAT_VERSION}.{CACHE_VERSION}.{DETECTOR_VERSION}"


CODE_VERSION = _code_version()
"""Recorded in every entry; an entry of another version is never used."""

ENV = "BOUNDARY_GEOMETRY_PRECOMPUTED"
"""Another folder of shipped results, or ``off`` to ignore them (the user cache still applies)."""

KINDS = ("subspace", "detector", "vulnerability", "evaluation")

PAGE_DEFAULTS = {
    "images": 100,              # training images for S (subspace.DEFAULT_IMAGES)
    "m": 20,                    # dimension of S (subspace.DEFAULT_M)
    "estimator": "auto",
    "experiment_images": 100,   # held-out images for both vulnerability experiments
    "draws": 5,                 # random directions per image and noise norm
    "fpr": 0.05,                # the detector's target false-positive rate
    "calibration_images": 200,  # clean held-out images that calibrate the detector (also the CLI's default)
    "evaluation_images": 100,   # further held-out images attacked for the ROC
    "sizes": (1.0, 1.5, 2.0),   # attack sizes of the ROC (x the median DeepFool norm)
    "directions": "all",
    "detector": "preregistered",  # the detector variant (geometry.detector_variant): the pre-registered choice
}
"""The Vulnerability page's default settings: the results ``make precompute`` ships for each bundled model."""

_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


# ------------------------------------------------------------------ digests
def _sha1(*parts) -> str:
    h = hashlib.sha1()
    for p in parts:
        if isinstance(p, torch.Tensor):
            p = p.detach().cpu().contiguous().numpy()
        if isinstance(p, np.ndarray):
            h.update(repr((p.dtype.str, p.shape)).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True).encode())
    return h.hexdigest()[:16]


def subspace_digest(S: CurvedSubspace) -> str:
    """Identifies S's directions (in float32, the precision results are shipped in)."""
    return _sha1(S.basis.detach().cpu().to(torch.float32))


def detector_digest(det) -> str:
    """Identifies a calibrated detector: its directions, sign, threshold, estimator and step."""
    return _sha1(det.basis.detach().cpu().to(torch.float32),
                 [int(det.sign), float(det.threshold), float(det.fpr), det.estimator, det.step, det.directions,
                  det.score])


def images_digest(x, y=None) -> str:
    """Identifies the images (and labels) a computation used."""
    return _sha1(torch.as_tensor(x).to(torch.float32), *(() if y is None else (torch.as_tensor(y).long(),)))


def _normal(obj):
    """``obj`` as JSON would return it (tuples become lists), for comparing keys."""
    return json.loads(json.dumps(obj, sort_keys=True))


# ------------------------------------------------------------------ folders
def precomputed_dir() -> Path | None:
    """The folder of shipped results (``assets/precomputed``, or ``$BOUNDARY_GEOMETRY_PRECOMPUTED``);
    None when that variable is ``off``."""
    env = os.environ.get(ENV)
    if env is not None and env.strip().lower() in ("off", "0", "no", "false", "none"):
        return None
    if env:
        return Path(env).expanduser()
    from .zoo import ASSETS

    return ASSETS / "precomputed"


def shipped_folder(model: str) -> Path | None:
    """``<precomputed_dir>/<model>`` (None when shipped results are off or the name is not a plain one)."""
    root = precomputed_dir()
    if root is None or not _SAFE.match(model or "") or model.startswith("."):
        return None
    return root / model


def _user_stem(clf, kind: str, key: dict, cache) -> tuple[Path, str]:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in clf.name)[:40] or "model"
    return cache_dir(cache) / kind, f"{safe}-{model_fingerprint(clf)}-{settings_key(_normal(key))}"


# ------------------------------------------------------------------ one entry on disk
@dataclass
class Entry:
    """A stored result: its JSON record (``meta`` holds the scalar results) and its arrays."""

    record: dict
    arrays: dict
    path: Path  # the .npz

    @property
    def meta(self) -> dict:
        return self.record["meta"]


def write_entry(folder: str | Path, stem: str, *, kind: str, fingerprint: str, key: dict, data: str,
                meta: dict, arrays: dict) -> Path:
    """Write ``<folder>/<stem>.npz`` then ``<stem>.json`` (each atomically); returns the JSON's path."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    npz, js = folder / f"{stem}.npz", folder / f"{stem}.json"
    tmp = folder / f".{stem}.tmp{os.getpid()}.npz"
    np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    os.replace(tmp, npz)
    record = {"version": CODE_VERSION, "kind": kind, "fingerprint": fingerprint, "key": _normal(key), "data": data,
              "npz": npz.name, "npz_sha256": digest, "meta": _normal(meta)}
    record["record_sha256"] = record_digest(record)
    tmp = folder / f".{stem}.tmp{os.getpid()}.json"
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, js)
    return js


def record_digest(record: dict) -> str:
    """SHA-256 of a record's canonical JSON without its own digest: any edit of a scalar result shows."""
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_entry(folder: str | Path | None, stem: str, *, kind: str, fingerprint: str, key: dict,
               data: Callable[[], str] | None = None, where: str = "saved") -> Entry | None:
    """The entry ``<folder>/<stem>`` if it is whole and matches the request, else None (reason logged).

    ``data`` gives the digest of the images the request would use; it is called only once everything
    else matches (it may load a dataset)."""
    if folder is None:
        return None
    js = Path(folder) / f"{stem}.json"
    if not js.exists():
        return None
    try:
        record = json.loads(js.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("meta"), dict):
            raise ValueError("not a record")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        log.warning("ignoring the %s result %s: it is not a readable record (%s); it will be computed again",
                    where, js, type(exc).__name__)
        return None
    if record.get("version") != CODE_VERSION:
        log.warning("ignoring the %s result %s: written by code version %r, this is %r%s", where, js,
                    record.get("version"), CODE_VERSION, "; run `make precompute`" if where == "shipped" else "")
        return None
    if record.get("record_sha256") != record_digest(record):
        log.warning("ignoring the %s result %s: the record was altered (its SHA-256 differs)", where, js)
        return None
    if record.get("kind") != kind:
        log.warning("ignoring the %s result %s: it holds %r, not %r", where, js, record.get("kind"), kind)
        return None
    if record.get("fingerprint") != fingerprint:
        log.warning("ignoring the %s result %s: it is for other weights (model fingerprint %s, this model %s)%s",
                    where, js, record.get("fingerprint"), fingerprint,
                    "; run `make precompute`" if where == "shipped" else "")
        return None
    if record.get("key") != _normal(key):
        log.info("not using the %s result %s: it was computed with other settings", where, js)
        return None
    if data is not None:
        want = data()
        if record.get("data") != want:
            log.warning("ignoring the %s result %s: it was computed on other images (digest %s, now %s)", where, js,
                        record.get("data"), want)
            return None
    npz = Path(folder) / f"{stem}.npz"
    try:
        raw = npz.read_bytes()
    except OSError as exc:
        log.warning("ignoring the %s result %s: its arrays %s cannot be read (%s)", where, js, npz.name,
                    type(exc).__name__)
        return None
    if hashlib.sha256(raw).hexdigest() != record.get("npz_sha256"):
        log.warning("ignoring the %s result %s: %s was altered or damaged (SHA-256 differs from the record)", where,
                    js, npz.name)
        return None
    try:
        with np.load(npz, allow_pickle=False) as f:
            arrays = {k: f[k].copy() for k in f.files}
    except Exception as exc:  # noqa: BLE001 - any damage: compute again
        log.warning("ignoring the %s result %s: %s is not a readable array file (%s)", where, js, npz.name,
                    type(exc).__name__)
        return None
    return Entry(record, arrays, npz)


def _decode(entry: Entry | None, build: Callable[[Entry], object], where: str):
    """``build(entry)``, or None (reason logged) when the entry's contents do not fit together."""
    if entry is None:
        return None
    try:
        return build(entry)
    except Exception as exc:  # noqa: BLE001 - a file that passed its checksum but does not fit: compute again
        log.warning("ignoring the %s result %s: its contents do not fit (%s: %s)", where, entry.path,
                    type(exc).__name__, str(exc)[:200])
        return None


def shipped_stems(folder: Path | None, kind: str) -> list[str]:
    """The shipped entries of one kind: ``<kind>`` (the page's default) then ``<kind>-<name>`` (others the
    page's defaults need, e.g. S of another construction for the default detector), in name order."""
    if folder is None or not folder.is_dir():
        return []
    extra = sorted(p.stem for p in folder.glob(f"{kind}-*.json") if _SAFE.match(p.stem))
    return [kind] + extra


def find(clf, kind: str, key: dict, build: Callable[[Entry], object], *, data: Callable[[], str] | None = None,
         cache=None, shipped: bool = True):
    """The first usable stored result: shipped with the model, then in the user cache ``cache``
    (a folder, None for ``subspace.cache_dir()``, False for none)."""
    if cache is False:
        return None
    fp = model_fingerprint(clf)
    once: dict = {}

    def data_once():
        if "d" not in once:
            once["d"] = data()
        return once["d"]

    d = data_once if data is not None else None
    if shipped:
        folder = shipped_folder(clf.name)
        for stem in shipped_stems(folder, kind):
            out = _decode(read_entry(folder, stem, kind=kind, fingerprint=fp, key=key, data=d, where="shipped"),
                          build, "shipped")
            if out is not None:
                return out
    if kind in ("vulnerability", "evaluation"):  # S and detectors keep their own user-cache files
        folder, stem = _user_stem(clf, kind, key, cache)
        return _decode(read_entry(folder, stem, kind=kind, fingerprint=fp, key=key, data=d), build, "saved")
    return None


def save_user(clf, kind: str, key: dict, data: str, meta: dict, arrays: dict, cache=None) -> str | None:
    """Save a result in the user cache; returns the path, or None when the folder is not writable."""
    if cache is False:
        return None
    folder, stem = _user_stem(clf, kind, key, cache)
    try:
        write_entry(folder, stem, kind=kind, fingerprint=model_fingerprint(clf), key=key, data=data, meta=meta,
                    arrays=arrays)
    except OSError as exc:  # a read-only home must not break the analysis
        log.warning("could not save the %s result in %s: %s", kind, folder, exc)
        return None
    return str(folder / f"{stem}.npz")


def is_shipped(path: str | Path | None) -> bool:
    """Whether ``path`` is a file shipped with the bundled models."""
    root = precomputed_dir()
    if not path or root is None:
        return False
    try:
        Path(path).resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


# ------------------------------------------------------------------ S
def subspace_key(settings: dict) -> dict:
    return {"settings": settings}


def subspace_images_digest(clf, settings: dict) -> str:
    from .subspace import dataset_images

    return images_digest(*dataset_images(clf, settings["images"], split=settings["split"], seed=settings["seed"]))


def encode_subspace(S: CurvedSubspace) -> tuple[dict, dict]:
    meta = {"input_shape": list(S.input_shape), "model": S.model, "settings": S.settings, "num_points": S.num_points,
            "hvp_count": int(S.hvp_count), "seconds": float(S.seconds), "converged": bool(S.converged)}
    arrays = {"basis": S.basis.detach().cpu().to(torch.float32).numpy(),
              "eigenvalues": np.asarray(S.eigenvalues, np.float64), "spectrum": np.asarray(S.spectrum, np.float64),
              "labels": np.asarray(S.labels, np.int64), "boundary_labels": np.asarray(S.boundary_labels, np.int64),
              "ritz_vectors": (S.ritz_vectors.detach().cpu().to(torch.float32).numpy() if S.ritz_vectors is not None
                               else np.zeros((S.dim, 0), np.float32)),
              "ritz_values": (np.asarray(S.ritz_values, np.float64) if S.ritz_values is not None else np.zeros(0))}
    return meta, arrays


def decode_subspace(entry: Entry, clf) -> CurvedSubspace:
    a, meta = entry.arrays, entry.meta
    d, m = clf.dim, int(meta["settings"]["m"])
    basis = a["basis"]
    if basis.shape != (d, m) or tuple(meta["input_shape"]) != tuple(clf.input_shape):
        raise ValueError(f"basis {basis.shape} does not fit a model with d = {d} and m = {m}")
    if len(a["eigenvalues"]) != m or a["ritz_vectors"].shape[0] != d \
            or a["ritz_vectors"].shape[1] != len(a["ritz_values"]):
        raise ValueError("eigenvalues / Ritz pairs do not match the basis")
    if not all(np.isfinite(a[k]).all() for k in ("basis", "eigenvalues", "spectrum", "ritz_vectors", "ritz_values")):
        raise ValueError("non-finite numbers")
    ritz = a["ritz_vectors"]
    return CurvedSubspace(torch.from_numpy(basis.astype(np.float64)), a["eigenvalues"], a["spectrum"],
                          tuple(meta["input_shape"]), meta["model"], entry.record["fingerprint"],
                          dict(meta["settings"]),
                          int(meta["num_points"]), int(meta["hvp_count"]), float(meta["seconds"]),
                          bool(meta["converged"]), a["labels"], a["boundary_labels"], str(entry.path),
                          torch.from_numpy(ritz.astype(np.float64)) if ritz.shape[1] else None,
                          a["ritz_values"] if len(a["ritz_values"]) else None)


def shipped_subspace(clf, settings: dict) -> CurvedSubspace | None:
    """The S shipped with the model for these settings (``subspace.subspace_settings``), if any matches."""
    return find(clf, "subspace", subspace_key(settings), lambda e: decode_subspace(e, clf),
                data=lambda: subspace_images_digest(clf, settings))


# ------------------------------------------------------------------ detector
def detector_key(S: CurvedSubspace, key: dict) -> dict:
    """``detection.model_detector``'s own key plus S's digest."""
    return dict(key, basis=subspace_digest(S))


def encode_detector(det) -> tuple[dict, dict]:
    meta = {"sign": int(det.sign), "threshold": float(det.threshold), "fpr": float(det.fpr),
            "estimator": det.estimator, "step": det.step, "calibration": det.calibration, "model": det.model,
            "subspace": det.subspace, "directions": det.directions, "score": det.score}
    arrays = {"basis": det.basis.detach().cpu().to(torch.float32).numpy(),
              "calibration_scores": np.asarray(det.calibration_scores, np.float64)}
    return meta, arrays


def _finite(arrays: dict, names) -> None:
    for n in names:
        if not np.isfinite(np.asarray(arrays[n], dtype=np.float64)).all():
            raise ValueError(f"{n} holds values that are not finite")


def _rates(*values) -> None:
    """Rates and fractions must lie in [0, 1]."""
    for v in values:
        v = np.asarray(v, dtype=np.float64)
        if v.size and not ((v >= 0) & (v <= 1)).all():
            raise ValueError("a rate or fraction lies outside [0, 1]")


def decode_detector(entry: Entry, clf):
    from .detection import Detector

    a, meta = entry.arrays, entry.meta
    _finite(a, ("calibration_scores",))
    if not np.isfinite(float(meta["threshold"])) or not 0 < float(meta["fpr"]) < 1:
        raise ValueError("threshold or false-positive rate out of range")
    if a["basis"].ndim != 2 or a["basis"].shape[0] != clf.dim or not np.isfinite(a["basis"]).all():
        raise ValueError(f"basis {a['basis'].shape} does not fit a model with d = {clf.dim}")
    if int(meta["sign"]) not in (-1, 1):
        raise ValueError("sign must be +1 or -1")
    from .detection import SCORES

    if meta.get("score") not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}")
    return Detector(torch.from_numpy(a["basis"].astype(np.float64)), int(meta["sign"]), float(meta["threshold"]),
                    float(meta["fpr"]), meta["estimator"], meta["step"], dict(meta["calibration"]), meta["model"],
                    entry.record["fingerprint"], dict(meta["subspace"]), str(entry.path), a["calibration_scores"],
                    meta["directions"], meta["score"])


def detector_images_digest(clf, images: int, seed: int) -> str:
    from .subspace import dataset_images

    return images_digest(*dataset_images(clf, images, split="held_out", seed=seed))


def shipped_detector(clf, S: CurvedSubspace, key: dict, images: int, seed: int):
    """The detector shipped with the model for S and ``detection.model_detector``'s key, if any matches."""
    return find(clf, "detector", detector_key(S, key), lambda e: decode_detector(e, clf),
                data=lambda: detector_images_digest(clf, images, seed))


# ------------------------------------------------------------------ vulnerability experiments
def vulnerability_key(S: CurvedSubspace, images: int, draws: int) -> dict:
    return {"basis": subspace_digest(S), "images": int(images), "draws": int(draws), "split": "held_out",
            "seed": 0, "eps": "default", "clip": False}


def encode_vulnerability(res) -> tuple[dict, dict]:
    c, f = res.concentration, res.fooling
    meta = {"m": c.m, "d": c.d, "concentration_settings": c.settings, "draws": f.draws, "images": f.images,
            "clip": f.clip, "reference_norm": f.reference_norm, "fooling_settings": f.settings,
            "seconds": float(res.seconds)}
    arrays = {"ratios": c.ratios, "random": c.random, "norms": c.norms, "labels": c.labels,
              "adversarial_labels": c.adversarial_labels, "eps": f.eps, "subspace": f.subspace, "whole": f.whole}
    return meta, arrays


def decode_vulnerability(entry: Entry, S: CurvedSubspace):
    from .vulnerability import Concentration, FoolingRates, VulnerabilityResult

    a, meta = entry.arrays, entry.meta
    n = len(a["ratios"])
    if not (len(a["random"]) == len(a["norms"]) == len(a["labels"]) == len(a["adversarial_labels"]) == n):
        raise ValueError("the concentration arrays differ in length")
    if not (len(a["eps"]) == len(a["subspace"]) == len(a["whole"]) > 0):
        raise ValueError("the fooling-rate arrays differ in length")
    if int(meta["m"]) != S.m or int(meta["d"]) != S.dim:
        raise ValueError("m or d differ from S")
    _finite(a, ("ratios", "random", "eps", "subspace", "whole"))
    _rates(a["subspace"], a["whole"], a["ratios"], a["random"])
    conc = Concentration(a["ratios"], a["random"], a["norms"], a["labels"], a["adversarial_labels"], int(meta["m"]),
                         int(meta["d"]), dict(meta["concentration_settings"]))
    fool = FoolingRates(a["eps"], a["subspace"], a["whole"], int(meta["draws"]), int(meta["images"]),
                        bool(meta["clip"]), meta["reference_norm"], dict(meta["fooling_settings"]))
    summary = S.summary()
    summary.pop("eigenvalues", None)
    return VulnerabilityResult(conc, fool, summary, float(meta["seconds"]))


def held_out_images_digest(clf, n: int) -> str:
    from .subspace import dataset_images

    return images_digest(*dataset_images(clf, n, split="held_out"))


# ------------------------------------------------------------------ detector evaluation
ROW_SCALARS = ("attack", "size", "eps", "attacked", "succeeded", "mean_norm", "auc", "detection_rate", "detected",
               "recovery_detected", "recovery_all", "rho_true", "rho_others")


def evaluation_key(det, skip: int, images: int, sizes) -> dict:
    return {"detector": detector_digest(det), "skip": int(skip), "images": int(images),
            "sizes": [float(s) for s in sizes], "split": "held_out", "attacks": ["deepfool", "fgsm", "pgd"],
            "norm": "l2", "pgd_steps": 10, "seed": 0}


def encode_evaluation(ev) -> tuple[dict, dict]:
    rows = [{k: getattr(r, k) for k in ROW_SCALARS} for r in ev.rows]
    meta = {"clean_fpr": float(ev.clean_fpr), "reference_norm": float(ev.reference_norm), "settings": ev.settings,
            "seconds": float(ev.seconds), "clean_rho": float(ev.clean_rho), "rows": rows}
    arrays = {"clean_scores": np.asarray(ev.clean_scores, np.float64)}
    for i, r in enumerate(ev.rows):
        arrays[f"row{i}_scores"] = np.asarray(r.scores, np.float64)
        arrays[f"row{i}_roc_fpr"] = np.asarray(r.roc_fpr, np.float64)
        arrays[f"row{i}_roc_tpr"] = np.asarray(r.roc_tpr, np.float64)
    return meta, arrays


def decode_evaluation(entry: Entry, det):
    from .detection import AttackRow, DetectorEvaluation

    a, meta = entry.arrays, entry.meta
    rows = []
    for i, r in enumerate(meta["rows"]):
        fpr_, tpr_ = a[f"row{i}_roc_fpr"], a[f"row{i}_roc_tpr"]
        if len(fpr_) != len(tpr_) or len(a[f"row{i}_scores"]) != int(r["succeeded"]):
            raise ValueError(f"row {i}: arrays do not match its counts")
        nan = float("nan")
        rows.append(AttackRow(r["attack"], float(r["size"]), r["eps"], int(r["attacked"]), int(r["succeeded"]),
                              nan if r["mean_norm"] is None else float(r["mean_norm"]), a[f"row{i}_scores"],
                              float(r["auc"]), fpr_, tpr_, float(r["detection_rate"]), int(r["detected"]),
                              float(r["recovery_detected"]), float(r["recovery_all"]), float(r["rho_true"]),
                              float(r["rho_others"])))
    _rates(*([float(meta["clean_fpr"])] + [r.detection_rate for r in rows if r.detection_rate == r.detection_rate]
             + [r.auc for r in rows if r.auc == r.auc]))
    _finite(a, ("clean_scores",))
    return DetectorEvaluation(det, a["clean_scores"], float(meta["clean_fpr"]), float(meta["reference_norm"]), rows,
                              dict(meta["settings"]), float(meta["seconds"]), float(meta["clean_rho"]))
