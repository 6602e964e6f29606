"""The curvature-asymmetry detector: second derivatives against dense Hessians, both estimators against
each other, the score's definition and sign on a sphere, calibration, ROC/AUC against scikit-learn and
the exact pair count, the evaluation loop, and the ``detect`` CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from analytic import DTYPE, sphere_classifier, tiny_cnn
from geometry.detection import (SCORE_DEFINITION, Detector, asymmetry_scores, calibrate_detector, decide,
                                evaluate_detector, roc, second_derivatives)
from geometry.errors import GeometryError
from geometry.subspace import CurvedSubspace


def _subspace(basis: torch.Tensor, clf, settings=None) -> CurvedSubspace:
    m = basis.shape[1]
    return CurvedSubspace(basis, np.zeros(m), np.zeros(m), clf.input_shape, clf.name, "", settings or
                          {"estimator": "exact", "step": None}, 0, 0, 0.0, True)


def _orthonormal(d, m, seed=0):
    q, _ = torch.linalg.qr(torch.randn(d, m, generator=torch.Generator().manual_seed(seed), dtype=DTYPE))
    return q


@pytest.fixture(scope="module")
def smooth():
    return tiny_cnn("softplus", side=5, num_classes=4, seed=3)


def test_second_derivatives_match_dense_hessian(smooth):
    clf = smooth
    x = torch.rand(3, *clf.input_shape, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    V = _orthonormal(clf.dim, 4, seed=2)
    exact = second_derivatives(clf, x, V, estimator="exact")
    assert exact.shape == (3, 4, clf.num_classes)
    for b in range(3):
        H = torch.func.hessian(lambda z: clf.module(z.reshape(1, *clf.input_shape))[0])(x[b].reshape(-1))  # (L,d,d)
        truth = torch.einsum("dm,ldk,km->ml", V, H, V)
        assert torch.allclose(exact[b], truth, atol=1e-10, rtol=1e-8)
    # central differences of logits (forward passes only) converge to the exact value as h -> 0
    fd = second_derivatives(clf, x, V, estimator="fd", step=1e-3)
    assert torch.allclose(fd, exact, atol=1e-5, rtol=1e-4)
    # (m, *shape) directions and (d, m) columns are the same directions; scale enters as |v|^2
    assert torch.allclose(second_derivatives(clf, x, V.T.reshape(4, *clf.input_shape), estimator="exact"), exact)
    assert torch.allclose(second_derivatives(clf, x, 2 * V, estimator="fd", step=1e-3), 4 * fd)


def test_scores_match_the_definition(smooth):
    clf = smooth
    x = torch.rand(5, *clf.input_shape, generator=torch.Generator().manual_seed(4), dtype=DTYPE)
    V = _orthonormal(clf.dim, 3, seed=5)
    rho, labels = asymmetry_scores(clf, x, V, estimator="exact")
    assert torch.equal(labels, clf.predict(x))
    for b in range(5):
        k = int(labels[b])
        for c in range(clf.num_classes):
            def F(z, c=c, k=k):
                out = clf.module(z.reshape(1, *clf.input_shape))[0]
                return out[c] - out[k]

            H = torch.func.hessian(F)(x[b].reshape(-1))
            truth = float(sum(V[:, i] @ H @ V[:, i] for i in range(3)) / 3)
            assert float(rho[b, c]) == pytest.approx(truth, abs=1e-10)
        assert float(rho[b, k]) == 0.0
    rho_fd, _ = asymmetry_scores(clf, x, V, estimator="fd", step=1e-3)
    assert torch.allclose(rho_fd, rho, atol=1e-5)


def test_sign_on_a_sphere():
    """Inside a ball of radius R (class 1), f_0 - f_1 = (|x|^2 - R^2) / 2R has Hessian I/R: rho_0 = +1/R.
    Outside (class 0), rho_1 = -1/R. Both estimators, any unit directions, any step (quadratic logits)."""
    R, d = 2.0, 6
    clf = sphere_classifier(R=R, dim=d)
    x = torch.tensor([[0.3] * d, [1.5] * d], dtype=DTYPE)  # |x| = 0.73 (inside), 3.67 (outside)
    V = _orthonormal(d, 3)
    for est, step in (("exact", None), ("fd", 0.7)):
        rho, labels = asymmetry_scores(clf, x, V, estimator=est, step=step)
        assert labels.tolist() == [1, 0]
        assert rho[0].tolist() == pytest.approx([1 / R, 0.0], abs=1e-9)
        assert rho[1].tolist() == pytest.approx([0.0, -1 / R], abs=1e-9)


def test_decide_pins_flag_and_recovery():
    rho = np.array([[0.0, -2.0, 1.0], [3.0, 0.0, -1.0], [0.5, 0.2, 0.0]])
    labels = np.array([0, 1, 2])
    r = decide(rho, labels, sign=-1, threshold=0.9)
    # signed = -rho; the label's own entry never counts
    assert r.score.tolist() == [2.0, 1.0, -0.2]
    assert r.flagged.tolist() == [True, True, False]
    assert r.recovered_label.tolist() == [1, 2, 2]  # argmax over c != k when flagged, else k
    assert decide(rho, labels, sign=1, threshold=0.9).recovered_label.tolist() == [2, 0, 2]
    assert "max_{c != k} s * rho_c" in SCORE_DEFINITION


def test_calibration_sign_threshold_and_fpr(smooth):
    clf = smooth
    g = torch.Generator().manual_seed(6)
    x = torch.rand(60, *clf.input_shape, generator=g, dtype=DTYPE)
    S = _subspace(_orthonormal(clf.dim, 4, seed=7), clf)
    det = calibrate_detector(clf, S, x, fpr=0.1)
    rho, labels = asymmetry_scores(clf, x, S.basis, estimator="exact")
    off = rho.numpy()[np.arange(4)[None] != labels.numpy()[:, None]]
    assert det.sign == (-1 if off.mean() > 0 else 1)
    res = det.detect(clf, x)
    assert res.flagged.mean() <= 0.1 and det.calibration["achieved_fpr"] == pytest.approx(res.flagged.mean())
    assert np.isclose(res.score, det.threshold).any()  # the threshold is an observed clean score
    assert (res.score > det.threshold).sum() == res.flagged.sum()
    with pytest.raises(GeometryError, match="false-positive rate"):
        calibrate_detector(clf, S, x, fpr=1.5)


def test_calibration_on_one_sign_of_S(smooth):
    clf = smooth
    x = torch.rand(30, *clf.input_shape, generator=torch.Generator().manual_seed(10), dtype=DTYPE)
    basis = _orthonormal(clf.dim, 4, seed=11)
    S = CurvedSubspace(basis, np.array([0.3, -0.2, 0.1, -0.05]), np.zeros(4), clf.input_shape, clf.name, "",
                       {"estimator": "exact", "step": None}, 0, 0, 0.0, True)
    det = calibrate_detector(clf, S, x, fpr=0.1, directions="negative")
    assert det.m == 2 and det.directions == "negative"
    assert torch.allclose(det.basis, basis[:, [1, 3]])
    rho, _ = asymmetry_scores(clf, x, basis[:, [1, 3]], estimator="exact")
    np.testing.assert_allclose(det.detect(clf, x).rho, rho.numpy())
    with pytest.raises(GeometryError, match="directions"):
        calibrate_detector(clf, S, x, directions="up")


def test_detector_save_load(smooth, tmp_path):
    clf = smooth
    x = torch.rand(20, *clf.input_shape, generator=torch.Generator().manual_seed(8), dtype=DTYPE)
    det = calibrate_detector(clf, _subspace(_orthonormal(clf.dim, 2), clf), x, fpr=0.2)
    det.save(tmp_path / "d.npz")
    back = Detector.load(tmp_path / "d.npz")
    assert back.sign == det.sign and back.threshold == det.threshold and back.estimator == det.estimator
    np.testing.assert_allclose(back.calibration_scores, det.calibration_scores)
    np.testing.assert_allclose(back.detect(clf, x).score, det.detect(clf, x).score)


def test_roc_matches_sklearn_and_pair_count():
    # hand-made: pairs (pos > neg) = 2 + 3 of 6 -> 5/6
    r = roc([0.0, 1.0, 2.0], [1.5, 3.0])
    assert r.auc == pytest.approx(5 / 6)
    # ties count one half
    assert roc([1.0, 2.0], [1.0, 2.0]).auc == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    neg = np.round(rng.normal(0, 1, 300), 1)  # rounding makes ties
    pos = np.round(rng.normal(0.8, 1, 200), 1)
    r = roc(neg, pos)
    pairs = (pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean()
    assert r.auc == pytest.approx(pairs, abs=1e-12)
    y = np.r_[np.zeros(300), np.ones(200)]
    assert r.auc == pytest.approx(roc_auc_score(y, np.r_[neg, pos]))
    fpr, tpr, _ = roc_curve(y, np.r_[neg, pos])
    np.testing.assert_allclose(r.fpr, fpr)
    np.testing.assert_allclose(r.tpr, tpr)
    assert np.isnan(roc([0.1], []).auc)
    # -inf scores (single-class models) do not break the curve
    assert roc([-np.inf, 0.0], [1.0]).auc == pytest.approx(1.0)


def test_evaluation_rows_are_consistent(smooth):
    clf = smooth
    g = torch.Generator().manual_seed(9)
    x = torch.rand(40, *clf.input_shape, generator=g, dtype=DTYPE)
    y = clf.predict(x)
    det = calibrate_detector(clf, _subspace(_orthonormal(clf.dim, 3, seed=1), clf), x[:20], fpr=0.1)
    ev = evaluate_detector(clf, det, x[20:], y[20:], sizes=(1.0, 2.0), pgd_steps=3)
    assert [(r.attack, r.size) for r in ev.rows] == [(a, s) for a in ("deepfool", "fgsm", "pgd") for s in (1.0, 2.0)]
    assert len(ev.clean_scores) == 20 and 0 <= ev.clean_fpr <= 1 and ev.reference_norm > 0
    rho, labels = asymmetry_scores(clf, x[20:], det.basis, estimator="exact")
    others = rho.numpy()[np.arange(4)[None] != labels.numpy()[:, None]]
    assert ev.clean_rho == pytest.approx(others.mean())
    for r in ev.rows:
        assert 0 <= r.succeeded <= r.attacked == 20 and len(r.scores) == r.succeeded
        if r.succeeded:
            assert r.auc == pytest.approx(roc(ev.clean_scores, r.scores).auc)
            assert r.detection_rate == pytest.approx((r.scores > det.threshold).mean())
            assert r.detected == int((r.scores > det.threshold).sum())
            assert np.isfinite(r.rho_true) and np.isfinite(r.rho_others)
        if r.attack != "deepfool":
            assert r.eps == pytest.approx(r.size * ev.reference_norm)
    assert sum(r.succeeded for r in ev.rows) >= 20
    d = ev.to_dict()
    assert d["rows"][0]["attack"] == "deepfool" and "auc" in d["rows"][0] and d["detector"]["sign"] in (-1, 1)


def test_detect_cli_json(tmp_path, capsys):
    from geometry.cli import main

    common = ["--model", "digits_mlp", "--subspace-images", "12", "--m", "4", "--calibration-images", "30",
              "--cache-dir", str(tmp_path), "--json"]
    assert main(["detect", "--image", "gallery:2:0", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    types = {"label": int, "score": float, "threshold": float, "flagged": bool, "recovered_label": int}
    for key, t in types.items():
        assert isinstance(out[key], t), (key, out[key])
    assert out["flagged"] == (out["score"] > out["threshold"])
    assert out["recovered_label"] == out["label"] or out["flagged"]
    assert len(out["rho"]) == 10 and out["rho"][out["label"]] == 0.0 and out["attack"] == "none"
    assert main(["detect", "--image", "gallery:2:0", "--attack", "pgd", "--size", "2", *common]) == 0
    att = json.loads(capsys.readouterr().out)
    assert att["attack"] == "pgd" and att["perturbation_norm"] > 0 and att["threshold"] == out["threshold"]
    assert main(["detect", "--image", "gallery:2:0", "--fpr", "2", *common]) == 2
    assert "false-positive rate" in capsys.readouterr().err
