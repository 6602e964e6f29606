"""The pre-registered detector evaluation (geometry/preregistered.py) and the "runner-up" score it may choose:
the bootstrap interval on cases with a known AUC, the split (disjoint, stratified), that the choice never sees a
test image, the runner-up score on an analytic classifier, and the ``evaluate-detector`` CLI end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from analytic import DTYPE
from geometry.classifier import Classifier
from geometry.detection import (RUNNER_UP_DEFINITION, asymmetry_scores, calibrate_detector, decide, roc,
                                runner_up_labels)
from geometry.errors import GeometryError
from geometry.preregistered import (PAPER_DEFINITION, Variant, bootstrap_auc, declared_grid, split_dev_test)
from geometry.subspace import CurvedSubspace


# ------------------------------------------------------------------ bootstrap
def test_bootstrap_separated_and_identical_scores():
    neg = np.linspace(0.0, 1.0, 50)
    ci = bootstrap_auc(neg, neg + 2.0, resamples=300, seed=1)
    assert (ci["auc"], ci["low"], ci["high"]) == (1.0, 1.0, 1.0)
    ci = bootstrap_auc(neg + 2.0, neg, resamples=300, seed=1)
    assert (ci["auc"], ci["low"], ci["high"]) == (0.0, 0.0, 0.0)
    same = np.full(40, 0.3)
    ci = bootstrap_auc(same, same[:25], resamples=300)
    assert ci["auc"] == ci["low"] == ci["high"] == 0.5  # every pair is a tie
    assert math.isnan(bootstrap_auc(neg, [])["auc"]) and math.isnan(bootstrap_auc([], neg)["low"])


def test_bootstrap_on_gaussians_with_known_auc():
    """Clean N(0, 1) against attacked N(delta, 1): AUC = Phi(delta / sqrt 2). Same draws, same seed: same
    interval; the point estimate is detection.roc's; the interval covers the truth and is about 4 SE wide."""
    rng = np.random.default_rng(0)
    delta = 1.0
    truth = 0.5 * (1 + math.erf(delta / math.sqrt(2) / math.sqrt(2)))  # Phi(delta / sqrt 2) = 0.760
    neg, pos = rng.normal(0, 1, 400), rng.normal(delta, 1, 300)
    ci = bootstrap_auc(neg, pos, resamples=1000, seed=7)
    assert ci["auc"] == pytest.approx(roc(neg, pos).auc, abs=1e-12)
    assert ci["low"] < truth < ci["high"] and ci["low"] < ci["auc"] < ci["high"]
    # Hanley-McNeil standard error of the AUC for these sizes is about 0.018
    assert 0.012 < ci["se"] < 0.026 and 0.05 < ci["high"] - ci["low"] < 0.10
    assert bootstrap_auc(neg, pos, resamples=1000, seed=7) == ci
    assert bootstrap_auc(neg, pos, resamples=1000, seed=8)["low"] != ci["low"]
    with pytest.raises(GeometryError, match="resamples"):
        bootstrap_auc(neg, pos, resamples=0)


# ------------------------------------------------------------------ split
def test_split_is_disjoint_stratified_and_fixed():
    labels = np.repeat(np.arange(10), 40)  # 400 images, 40 per class
    rng = np.random.default_rng(3)
    labels = labels[rng.permutation(len(labels))]
    dev, test = split_dev_test(labels, 200, 200, seed=5)
    assert len(dev) == len(test) == 200 and not set(dev) & set(test)
    assert set(dev) | set(test) == set(range(400))
    for c in range(10):
        assert (labels[dev] == c).sum() == (labels[test] == c).sum() == 20  # stratified exactly
    again = split_dev_test(labels, 200, 200, seed=5)
    assert np.array_equal(again[0], dev) and np.array_equal(again[1], test)
    assert not np.array_equal(split_dev_test(labels, 200, 200, seed=6)[0], dev)
    # a subset of the images, still balanced
    d, t = split_dev_test(labels, 60, 50, seed=5)
    assert len(d) == 60 and len(t) == 50 and not set(d) & set(t)
    assert np.bincount(labels[d], minlength=10).tolist() == [6] * 10
    assert np.bincount(labels[t], minlength=10).tolist() == [5] * 10
    with pytest.raises(GeometryError, match="available"):
        split_dev_test(labels, 300, 200)
    with pytest.raises(GeometryError, match="one image per class"):
        split_dev_test(labels, 5, 200)


def test_declared_grid_order_and_checks():
    grid = declared_grid()
    assert len(grid) == 16 and grid[0] == Variant("projected", "most", "max") and PAPER_DEFINITION in grid
    assert grid.index(Variant("projected", "most", "runner-up")) == 1  # score varies fastest
    assert declared_grid(["paper"], ["negative"], ["runner-up"]) == [Variant("paper", "negative", "runner-up")]
    for bad in (dict(constructions=["curly"]), dict(selections=[]), dict(scores=["max", "max"])):
        with pytest.raises(GeometryError):
            declared_grid(**bad)


# ------------------------------------------------------------------ the runner-up score, analytic
class _QuadraticLogits(nn.Module):
    """f_c(x) = w_c . x + q_c |x|^2 / 2: Hess(f_c - f_k) = (q_c - q_k) I, so rho_c = q_c - q_k along any unit
    directions (both estimators: the logits are quadratic)."""

    def __init__(self, W, q):
        super().__init__()
        self.register_buffer("W", torch.as_tensor(W, dtype=DTYPE))
        self.register_buffer("q", torch.as_tensor(q, dtype=DTYPE))

    def forward(self, x):
        x = x.reshape(x.shape[0], -1)
        return x @ self.W.T + 0.5 * (x * x).sum(1, keepdim=True) * self.q


def test_runner_up_score_on_quadratic_logits():
    d = 4
    W = torch.zeros(3, d, dtype=DTYPE)
    W[0, 0], W[1, 1], W[2, 2] = 3.0, 2.0, 1.0
    q = [0.0, 0.5, -1.0]
    clf = Classifier(_QuadraticLogits(W, q), (d,), ["a", "b", "c"], (-100.0, 100.0), name="quadratic")
    # small |x| so the linear part decides the order: x = e0 -> logits (3, 0.25, -0.5): k = 0, runner-up 1;
    # x = e1 -> (0, 2.25, -0.5): k = 1, runner-up 0; x = e2 + 0.5 e1 -> (0, 1.3125, 0.375): k = 1, runner-up 2
    x = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0.5, 1.0, 0]], dtype=DTYPE)
    V = torch.linalg.qr(torch.randn(d, 2, generator=torch.Generator().manual_seed(0), dtype=DTYPE))[0]
    for est, step in (("exact", None), ("fd", 0.3)):
        rho, labels = asymmetry_scores(clf, x, V, estimator=est, step=step)
        assert labels.tolist() == [0, 1, 1]
        qq = np.array(q)
        expected = qq[None, :] - qq[labels.numpy()][:, None]
        np.testing.assert_allclose(rho.numpy(), expected, atol=1e-9)
    ru = runner_up_labels(clf, x).numpy()
    assert ru.tolist() == [1, 0, 2]
    r = decide(rho.numpy(), labels.numpy(), sign=1, threshold=0.0, runner_up=ru)
    # runner-up only: s * rho_j = (q_j - q_k) = 0.5, -0.5, -1.5; the max over c would give 0.5, -0.5, -0.5
    assert r.score.tolist() == pytest.approx([0.5, -0.5, -1.5])
    assert decide(rho.numpy(), labels.numpy(), sign=1, threshold=0.0).score.tolist() == pytest.approx([0.5, -0.5,
                                                                                                       -0.5])
    assert r.flagged.tolist() == [True, False, False]
    assert r.recovered_label.tolist() == [1, 1, 1]  # the runner-up class when flagged, else k
    assert decide(rho.numpy(), labels.numpy(), sign=-1, threshold=0.0, runner_up=ru).recovered_label.tolist() \
        == [0, 0, 2]
    # calibration: the mean clean rho_j is (0.5 - 0.5 - 1.5) / 3 < 0, so s = +1 (clean images score low)
    S = CurvedSubspace(V, np.zeros(2), np.zeros(2), (d,), clf.name, "", {"estimator": "exact", "step": None},
                       0, 0, 0.0, True)
    det = calibrate_detector(clf, S, x, fpr=0.4, score="runner-up")
    assert det.sign == 1 and det.score == "runner-up" and "runner-up" in RUNNER_UP_DEFINITION
    np.testing.assert_allclose(det.calibration_scores, [0.5, -0.5, -1.5], atol=1e-9)
    assert det.variant == {"construction": "projected", "select": "most", "score": "runner-up"}
    assert det.detect(clf, x).runner_up.tolist() == [1, 0, 2]
    assert calibrate_detector(clf, S, x, fpr=0.4).score == "max"  # the default is unchanged
    with pytest.raises(GeometryError, match="score"):
        calibrate_detector(clf, S, x, score="min")


# ------------------------------------------------------------------ the protocol never shows test images to the choice
def test_choice_sees_only_development_images(digits_model, tmp_path, monkeypatch):
    import geometry.preregistered as pr
    from geometry.subspace import dataset_images

    clf = digits_model
    seen: dict[str, list] = {"choose": [], "calibrate": [], "evaluate": []}
    real_choose, real_cal, real_eval = pr.choose_variant, pr.calibrate_detector, pr.evaluate_detectors

    def choose(clf_, subspaces, x_dev, y_dev, grid, **kw):
        seen["choose"].append(torch.as_tensor(x_dev).clone())
        return real_choose(clf_, subspaces, x_dev, y_dev, grid, **kw)

    def cal(clf_, S, x, **kw):
        seen["calibrate"].append(torch.as_tensor(x).clone())
        return real_cal(clf_, S, x, **kw)

    def ev(clf_, dets, x, y, **kw):
        seen["evaluate"].append(torch.as_tensor(x).clone())
        return real_eval(clf_, dets, x, y, **kw)

    monkeypatch.setattr(pr, "choose_variant", choose)
    monkeypatch.setattr(pr, "calibrate_detector", cal)
    monkeypatch.setattr(pr, "evaluate_detectors", ev)
    grid = declared_grid(["projected", "paper"], ["most", "negative"], ["max", "runner-up"])
    res = pr.preregistered_evaluation(clf, dev_images=30, test_images=30, grid=grid, subspace_images=12, m=4,
                                      sizes=(1.0,), resamples=50, cache=tmp_path)
    x, y = dataset_images(clf, 60, split="held_out", seed=pr.SPLIT_SEED)
    dev, test = split_dev_test(y.numpy(), 30, 30, seed=pr.SPLIT_SEED)
    key = lambda t: t.reshape(-1).numpy().round(6).tobytes()  # noqa: E731
    dev_set, test_set = {key(t) for t in x[dev]}, {key(t) for t in x[test]}
    assert not dev_set & test_set
    assert len(seen["choose"]) == 1 and len(seen["evaluate"]) == 1 and len(seen["calibrate"]) >= 1
    for name in ("choose", "calibrate"):
        for batch in seen[name]:
            assert {key(t) for t in batch} <= dev_set, name
    assert {key(t) for t in seen["evaluate"][0]} <= test_set
    d = res.to_dict()
    assert d["split"]["dev_images"] == d["split"]["test_images"] == 30
    crit = [r["criterion"] for r in d["development"]["grid"]]
    best = max(c for c in crit if c is not None)
    chosen = next(r for r in d["development"]["grid"] if r["criterion"] == best)
    assert d["chosen"] == {k: chosen[k] for k in ("construction", "select", "score")}
    json.dumps(d)


# ------------------------------------------------------------------ CLI
def test_evaluate_detector_cli_end_to_end(tmp_path, capsys):
    from geometry.cli import main

    out = tmp_path / "reports" / "digits" / "detector_preregistered.json"
    args = ["evaluate-detector", "--model", "digits_mlp", "--dev-images", "40", "--test-images", "40",
            "--subspace-images", "12", "--m", "4", "--selections", "most,negative", "--bootstrap", "100",
            "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    assert main([*args, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["written"] == [str(out), str(out.with_suffix(".md"))]
    assert json.loads(out.read_text())["chosen"] == r["chosen"]
    md = out.with_suffix(".md").read_text()
    assert "Pre-registered detector evaluation: digits_mlp" in md and "Chosen on the development half" in md
    assert len(r["development"]["grid"]) == 8 and r["split"]["seed"] == 1705
    assert set(r["seconds"]) >= {"subspaces", "development", "test", "bootstrap", "total"}
    for name in ("chosen", "paper_definition"):
        block = r["test"][name]
        assert [(row["attack"], row["size"]) for row in block["rows"]] == \
            [(a, s) for a in ("deepfool", "fgsm", "pgd") for s in (1.0, 1.5, 2.0)]
        for row in block["rows"]:
            if row["auc"] is not None:
                assert row["auc_low"] - 1e-12 <= row["auc"] <= row["auc_high"] + 1e-12
    assert r["test"]["paper_definition"]["variant"] == {"construction": "paper", "select": "most", "score": "max"}
    assert r["test"]["chosen"]["variant"] == r["chosen"]
    # the text output (S is cached now)
    assert main(args) == 0
    assert "chosen on the development half" in capsys.readouterr().out


@pytest.mark.parametrize("bad, message", [
    (["--dev-images", "1"], "--dev-images"),
    (["--fpr", "0"], "--fpr"),
    (["--scores", "max,median"], "median"),
    (["--constructions", ""], "construction"),
    (["--sizes", "1,-2"], "--sizes"),
    (["--out", "result.txt"], ".json"),
    (["--bootstrap", "0"], "--bootstrap"),
    (["--dev-images", "many"], "invalid int"),
])
def test_evaluate_detector_bad_options(bad, message, capsys, tmp_path):
    from geometry.cli import main

    try:
        code = main(["evaluate-detector", "--model", "digits_mlp", "--cache-dir", str(tmp_path), *bad])
    except SystemExit as exc:  # argparse's own errors exit from the parser
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and message in err, err


def test_evaluate_detector_out_folder_is_a_file(capsys, tmp_path):
    from geometry.cli import main

    (tmp_path / "f").write_text("x")
    assert main(["evaluate-detector", "--model", "digits_mlp", "--out", str(tmp_path / "f" / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1


def test_detect_json_names_its_variant(tmp_path, capsys):
    from geometry.cli import main

    common = ["--model", "digits_mlp", "--subspace-images", "12", "--m", "4", "--calibration-images", "30",
              "--cache-dir", str(tmp_path), "--json"]
    assert main(["detect", "--image", "gallery:2:0", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    # digits_mlp has no pre-registered evaluation: the default is the documented fallback
    assert out["variant"] == {"construction": "projected", "select": "negative", "score": "runner-up"}
    assert out["variant_choice"]["source"] == "fallback"
    assert out["directions"] == "all" and "threshold" in out and "rho" in out  # the old fields stay
    assert main(["detect", "--image", "gallery:2:0", "--construction", "projected", *common]) == 0
    out = json.loads(capsys.readouterr().out)  # the piece-by-piece options keep their old meaning
    assert out["variant"] == {"construction": "projected", "select": "most", "score": "max"}
    assert main(["detect", "--image", "gallery:2:0", "--directions", "negative", "--construction", "paper",
                 *common]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["variant"] == {"construction": "paper", "select": "negative", "score": "max"}
