"""Small functions the app runs as jobs in the executor's workers (the web server never runs a model).

Each takes the classifier first, like every analysis, and returns plain data the server can show.
Imports torch and geometry; never Streamlit or Plotly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ModelFacts:
    """What the web server needs to know about a model without running it: the facts of a
    :class:`~geometry.classifier.Classifier`, read in a worker. Duck-types the attributes the
    pages and image conversion use (``input_shape``, ``pixel_range``, ``class_names``, ...)."""

    name: str
    input_shape: tuple
    class_names: list
    pixel_range: tuple
    dataset: str | None
    card: dict
    device: Any
    dtype: Any
    piecewise_linear: bool | None
    parameters: int = 0

    @property
    def dim(self) -> int:
        n = 1
        for s in self.input_shape:
            n *= int(s)
        return n

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def pixel_span(self) -> float:
        return self.pixel_range[1] - self.pixel_range[0]

    def describe(self) -> str:
        return (f"{self.name}: input {self.input_shape}, pixels in [{self.pixel_range[0]:g}, "
                f"{self.pixel_range[1]:g}], {self.num_classes} classes, {self.device.type}, "
                f"{str(self.dtype).replace('torch.', '')}, {self.parameters:,} parameters")


def model_facts(clf) -> ModelFacts:
    """The facts of a loaded classifier (a job: ``Job(model_facts, ref)``)."""
    return ModelFacts(clf.name, tuple(clf.input_shape), list(clf.class_names), tuple(clf.pixel_range), clf.dataset,
                      dict(clf.card), clf.device, clf.dtype, clf.piecewise_linear,
                      sum(p.numel() for p in clf.module.parameters()))


def probabilities(clf, x):
    """Class probabilities of a batch (a job for the app: the server never runs a model)."""
    return clf.probabilities(x).cpu()


def predict(clf, x):
    """Predicted labels of a batch."""
    return clf.predict(x).cpu()


def verification_mode(clf, verification):
    """The segment check ``geometry.paths.connecting_path`` would use: "bound", "local" or a slope."""
    from .paths import resolve_verification

    return resolve_verification(clf, verification)[0]


def path_walk(clf, path, steps: int = 41):
    """Points evenly spaced along a connecting path and the model's probabilities there."""
    s, pts = path.along(steps)
    return s, pts.cpu(), clf.probabilities(pts).cpu().numpy()


def _stored_or_computed(clf, kind: str, key: dict, decode, images: int, run, encode, cache, progress, what: str):
    """A result on the first ``images`` held-out images: shipped or saved (``geometry.precomputed``) when one
    matches the model, ``key`` and those images, else ``run(x, y)``, saved in the cache."""
    from . import precomputed as pre
    from .subspace import dataset_images

    found = pre.find(clf, kind, key, decode, data=lambda: pre.held_out_images_digest(clf, images), cache=cache)
    if found is not None:
        if progress:
            progress(1.0, f"loaded the saved {what}")
        return found
    x, y = dataset_images(clf, images, split="held_out")
    res = run(x, y)
    pre.save_user(clf, kind, key, pre.images_digest(x, y), *encode(res), cache=cache)
    return res


def held_out_vulnerability(clf, S, images: int, draws: int, progress=None, cache=None):
    """Both vulnerability experiments of S on the first ``images`` held-out images.

    A result shipped with a bundled model or saved in the cache (``geometry.precomputed``; ``cache`` as in
    ``subspace.model_subspace``, ``False`` to neither read nor write) is used when it matches the model,
    S, the settings and the images; a new result is saved in the cache."""
    from . import precomputed as pre
    from .vulnerability import vulnerability

    return _stored_or_computed(clf, "vulnerability", pre.vulnerability_key(S, images, draws),
                               lambda e: pre.decode_vulnerability(e, S), images,
                               lambda x, y: vulnerability(clf, S, x, draws=draws, progress=progress),
                               pre.encode_vulnerability, cache, progress, "experiments")


def held_out_detector_evaluation(clf, detector, skip: int, images: int, sizes: tuple, progress=None, cache=None):
    """The detector's ROC on ``images`` held-out images after the first ``skip`` (used to calibrate it).

    Saved and looked up like :func:`held_out_vulnerability` (keyed by the detector itself)."""
    from . import precomputed as pre
    from .detection import evaluate_detector

    return _stored_or_computed(clf, "evaluation", pre.evaluation_key(detector, skip, images, sizes),
                               lambda e: pre.decode_evaluation(e, detector), skip + images,
                               lambda x, y: evaluate_detector(clf, detector, x[skip:], y[skip:], sizes=sizes,
                                                              progress=progress),
                               pre.encode_evaluation, cache, progress, "evaluation")


@dataclass
class DetectorExamples:
    """Held-out gallery images scored clean and after a DeepFool attack, for showing one flagged and one
    missed example. ``cls``/``index``: gallery class and index within it (``gallery:CLS:INDEX``)."""

    cls: list
    index: list
    clean_label: list
    attacked_label: list
    clean_flagged: list
    attacked_flagged: list
    recovered_label: list
    clean_score: list
    attacked_score: list
    threshold: float

    def pick(self, flagged: bool) -> int | None:
        """An image the attack fooled, correct when clean, not flagged clean, whose attacked version is
        (``flagged=True``) or is not (False) flagged; the highest / lowest score of those; None if none."""
        ok = [i for i in range(len(self.cls)) if self.attacked_label[i] != self.clean_label[i]
              and self.clean_label[i] == self.cls[i] and not self.clean_flagged[i]
              and bool(self.attacked_flagged[i]) == flagged]
        if not ok:
            return None
        return (max if flagged else min)(ok, key=lambda i: self.attacked_score[i])


def detector_examples(clf, detector, per_class: int = 3) -> DetectorExamples:
    """Score the first ``per_class`` held-out gallery images of each class, clean and after DeepFool."""
    import torch

    from .detection import attack_batch
    from .images import gallery_batch

    x, y = gallery_batch(clf, per_class=per_class)
    x = x.to(clf.device, clf.dtype)
    y = y.reshape(-1).long()
    seen: dict = {}
    index = []
    for c in y.tolist():
        index.append(seen.get(c, 0))
        seen[c] = index[-1] + 1
    clean = detector.detect(clf, x)
    xa, _ = attack_batch(clf, x, torch.as_tensor(clean.label, device=x.device), "deepfool", 1.0, 0.0)
    att = detector.detect(clf, xa)
    return DetectorExamples([int(c) for c in y.tolist()], index, [int(v) for v in clean.label],
                            [int(v) for v in att.label], [bool(v) for v in clean.flagged],
                            [bool(v) for v in att.flagged], [int(v) for v in att.recovered_label],
                            [float(v) for v in clean.score], [float(v) for v in att.score], float(detector.threshold))


def curvature_asymmetry_summary(clf, points: int, k: int = 10, locations=("boundary", "inside"), estimators=None,
                                seed: int = 0, progress=None) -> dict:
    """``geometry.asymmetry.curvature_asymmetry(...).to_dict()`` on ``points`` held-out images (a job for the
    Curvature page; plain, JSON-ready data)."""
    from .asymmetry import curvature_asymmetry

    return curvature_asymmetry(clf, points=points, k=k, locations=locations, estimators=estimators, seed=seed,
                               progress=progress).to_dict()
