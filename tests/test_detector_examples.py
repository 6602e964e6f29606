"""detector_examples (the lesson's caught and missed attacks) agrees with scoring the images directly."""

from __future__ import annotations

import torch
from conftest import zoo

from geometry.detection import attack_batch, model_detector
from geometry.images import gallery_image
from geometry.subspace import DEFAULT_IMAGES, DEFAULT_M, model_subspace
from geometry.tasks import detector_examples


def test_caught_and_missed_examples_match_direct_scores():
    clf = zoo("mnist_lenet_gelu")
    det = model_detector(clf, model_subspace(clf, images=DEFAULT_IMAGES, m=DEFAULT_M, estimator="auto"))
    ex = detector_examples(clf, det, per_class=2)
    assert len(ex.cls) == 20 and sorted(set(ex.cls)) == list(range(10))
    for flagged in (True, False):
        i = ex.pick(flagged)
        assert i is not None
        x = gallery_image(clf, ex.cls[i], ex.index[i]).tensor.unsqueeze(0)
        clean = det.detect(clf, x)
        xa, _ = attack_batch(clf, x, torch.as_tensor(clean.label), "deepfool", 1.0, 0.0)
        att = det.detect(clf, xa)
        assert int(att.label[0]) == ex.attacked_label[i] != ex.cls[i] == int(clean.label[0])
        assert bool(att.flagged[0]) is flagged and not bool(clean.flagged[0])
        assert (float(att.score[0]) > det.threshold) is flagged
        assert abs(float(att.score[0]) - ex.attacked_score[i]) < 1e-4 * max(1.0, abs(ex.attacked_score[i]))
