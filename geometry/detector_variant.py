"""Which detector variant the app and the CLI use by default: the one chosen on the development half.

The pre-registered evaluation (``geometry.preregistered``; ``python -m geometry evaluate-detector``) chooses,
for one model, a detector variant (construction of S x selection of its directions x score over classes) on
a development half of the held-out images and evaluates it once on a test half, beside the paper's
definition. For a **bundled** model that choice is recorded in
``assets/precomputed/<model>/detector_variant.json`` (:data:`VARIANT_FILE`, written by ``make precompute``
from the committed ``reports/<model>/detector_preregistered.json``), together with the model's fingerprint;
it is read with ``json`` only and used only when the file is whole, names this model and these weights, and
names a variant of the declared grid.

Any **other** model (an upload, a bundled model whose weights changed, or one without a pre-registered
evaluation) gets :data:`FALLBACK`: the variant chosen on most bundled models (projected construction,
the m most negatively curved directions, runner-up score; chosen on both normally trained LeNets, whose
test halves gave it mean AUC 0.74 and 0.79 against 0.58 for the paper's definition). It is not the
paper's definition because on every bundled model the development half preferred another variant; it
is not tuned for the unknown model, which is why the CLI and the app name it as a fallback, and
``evaluate-detector`` runs the protocol for any model. An explicit request (``"paper"``, or
``construction/select/score``) is always honoured.

Imports torch and geometry; never Streamlit or Plotly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from .classifier import Classifier
from .detection import DEFAULT_FPR, SCORES, Detector, model_detector
from .errors import GeometryError
from .preregistered import PAPER_DEFINITION, Variant
from .subspace import CONSTRUCTIONS, DEFAULT_IMAGES, DEFAULT_M, SELECTIONS, model_fingerprint, model_subspace

log = logging.getLogger("geometry.precomputed")

VARIANT_FILE = "detector_variant.json"
VARIANT_FORMAT = 1
FALLBACK = Variant("projected", "negative", "runner-up")
"""The variant for a model without a recorded pre-registered choice (see the module docstring)."""
PREREGISTERED = "preregistered"
PAPER = "paper"
REQUESTS = (PREREGISTERED, PAPER)
"""Named requests; any ``construction/select/score`` of the declared grid is accepted too."""


def parse_variant(text: str) -> Variant:
    """``construction/select/score`` -> :class:`Variant` (one-line error naming the allowed values)."""
    parts = [p.strip() for p in str(text).split("/")]
    if len(parts) != 3:
        raise GeometryError(f"a detector variant is {PREREGISTERED}, {PAPER} or construction/select/score "
                            f"(e.g. projected/negative/runner-up), got {text!r}")
    c, s, sc = parts
    for value, allowed, what in ((c, CONSTRUCTIONS, "construction"), (s, SELECTIONS, "selection"),
                                 (sc, SCORES, "score")):
        if value not in allowed:
            raise GeometryError(f"unknown {what} {value!r} in the detector variant {text!r}; choose from "
                                f"{', '.join(allowed)}")
    return Variant(c, s, sc)


def check_request(text: str) -> str:
    """A valid request (:data:`REQUESTS` or a variant key), else a one-line error."""
    if text not in REQUESTS:
        parse_variant(text)
    return text


def _variant_of(d) -> Variant:
    if not isinstance(d, dict):
        raise ValueError("not a variant")
    return parse_variant(f"{d.get('construction')}/{d.get('select')}/{d.get('score')}")


def variant_record(model: str, fingerprint: str, preregistered: dict, source: str) -> dict:
    """The record :data:`VARIANT_FILE` holds, from a pre-registered evaluation's JSON (validated)."""
    if not isinstance(preregistered, dict) or preregistered.get("model") != model:
        raise GeometryError(f"{source} is not a pre-registered evaluation of {model}")
    try:
        chosen = _variant_of(preregistered.get("chosen"))
    except (ValueError, GeometryError) as exc:
        raise GeometryError(f"{source}: its chosen variant is not valid ({exc})") from None
    return {"format": VARIANT_FORMAT, "model": model, "fingerprint": fingerprint, "chosen": chosen.to_dict(),
            "paper_definition": PAPER_DEFINITION.to_dict(), "chosen_is_paper_definition": chosen == PAPER_DEFINITION,
            "source": source, "criterion": (preregistered.get("settings") or {}).get("criterion"),
            "split_seed": (preregistered.get("split") or {}).get("seed")}


def write_variant_record(folder: str | Path, record: dict) -> Path:
    path = Path(folder) / VARIANT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


def recorded_variant(clf: Classifier) -> tuple[Variant, str] | None:
    """The pre-registered choice shipped with this model (variant, file), or None (reason logged)."""
    from .precomputed import shipped_folder

    folder = shipped_folder(clf.name)
    if folder is None:
        return None
    path = folder / VARIANT_FILE
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
        if not isinstance(rec, dict) or rec.get("format") != VARIANT_FORMAT:
            raise ValueError("not a variant record of this format")
        variant = _variant_of(rec.get("chosen"))
    except (OSError, ValueError, UnicodeDecodeError, GeometryError) as exc:
        log.warning("ignoring %s: %s", path, str(exc)[:200])
        return None
    if rec.get("model") != clf.name or rec.get("fingerprint") != model_fingerprint(clf):
        log.warning("ignoring %s: it is for other weights or another model; run `make precompute`", path)
        return None
    return variant, str(path)


@dataclass(frozen=True)
class VariantChoice:
    """The variant a request resolved to, and why."""

    variant: Variant
    requested: str
    source: str        # "preregistered" | "fallback" | "requested"
    file: str | None = None

    def to_dict(self) -> dict:
        return {"requested": self.requested, "source": self.source, "key": self.variant.key, "file": self.file,
                "is_paper_definition": self.variant == PAPER_DEFINITION,
                "paper_definition": PAPER_DEFINITION.to_dict(), "fallback": FALLBACK.to_dict()}

    def describe(self) -> str:
        if self.source == PREREGISTERED:
            return f"{self.variant.key}, chosen on the development half of this model's pre-registered evaluation"
        if self.source == "fallback":
            return (f"{self.variant.key}, the fallback for models without a pre-registered evaluation (chosen on "
                    "most bundled models)")
        return f"{self.variant.key}, as requested" + (" (the paper's definition)" if self.variant == PAPER_DEFINITION
                                                     else "")


def resolve_variant(clf: Classifier, requested: str = PREREGISTERED) -> VariantChoice:
    """:data:`PREREGISTERED` -> the recorded choice, else :data:`FALLBACK`; :data:`PAPER` -> the paper's
    definition; ``construction/select/score`` -> that variant."""
    check_request(requested)
    if requested == PREREGISTERED:
        found = recorded_variant(clf)
        if found is not None:
            return VariantChoice(found[0], requested, PREREGISTERED, found[1])
        return VariantChoice(FALLBACK, requested, "fallback")
    if requested == PAPER:
        return VariantChoice(PAPER_DEFINITION, requested, "requested")
    return VariantChoice(parse_variant(requested), requested, "requested")


def variant_detector(clf: Classifier, variant: Variant | str = PREREGISTERED, *, images: int = DEFAULT_IMAGES,
                     m: int = DEFAULT_M, estimator: str = "auto", step: float | None = None, seed: int = 0,
                     fpr: float = DEFAULT_FPR, calibration_images: int = 200, cache=None, recompute: bool = False,
                     progress=None, with_subspace: bool = False):
    """The detector of ``variant`` (a :class:`Variant` or a request for :func:`resolve_variant`): S of its
    construction from ``images`` training images (the m largest |curvature|, then re-selected by its rule from
    the same solver run, as the pre-registered evaluation does), calibrated on ``calibration_images`` clean
    held-out images with its score. Shipped, cached and computed like ``model_subspace`` / ``model_detector``.
    Returns the :class:`Detector`, or ``(S, detector)`` with ``with_subspace=True``."""
    if not isinstance(variant, Variant):
        variant = resolve_variant(clf, variant).variant
    S = model_subspace(clf, images=images, m=m, estimator=estimator, step=step, seed=seed,
                       construction=variant.construction, select="most", cache=cache, recompute=recompute,
                       progress=progress)
    if variant.select != S.select:
        S = S.with_select(variant.select)
    det = model_detector(clf, S, fpr=fpr, images=calibration_images, seed=seed, score=variant.score, cache=cache,
                         recompute=recompute)
    return (S, det) if with_subspace else det
