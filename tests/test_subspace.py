"""The shared curved subspace S: the average operator against dense Hessians, recovery of a known
curved subspace (principal angles), the choice of signs, the cache, and the ``subspace`` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles

from analytic import DTYPE, dense_projected_hessian, quadratic_classifier, sphere_classifier, tiny_cnn
from geometry.boundary import boundary_point
from geometry.errors import GeometryError
from geometry.subspace import (AverageCurvatureOperator, CurvedSubspace, curved_subspace, model_fingerprint,
                               model_subspace, resolve_estimator, subspace_path, subspace_settings)

D = 12


def _known_quadratic(a=(2.0, -1.5, 0.05), seed=0):
    """Class 1 where q(x) = w.x + c + sum_i a_i (u_i.x)^2 / 2 > 0, with w a unit vector orthogonal to the u_i.

    For images with u_i.x = 0 the DeepFool step is along w, so every boundary point has
    normal w and the tangent-projected Hessian is exactly A = sum a_i u_i u_i^T: the
    average curvature operator is A / |w| = A. S for m = 2 (both signs) is span(u_1, u_2)."""
    rng = np.random.default_rng(seed)
    R, _ = np.linalg.qr(rng.standard_normal((D, D)))
    w, U = R[:, 0], R[:, 1:1 + len(a)]
    A = U @ np.diag(a) @ U.T
    clf = quadratic_classifier(A, w, 0.5)
    return clf, w, U, R


def _images(R, n, k_used, rng, spread=0.0):
    """n images of class 1: along w (t > 0) plus components orthogonal to w and the curved directions."""
    rest = R[:, 1 + k_used:]
    x = (rng.uniform(0.2, 1.0, n)[:, None] * R[:, 0][None] + rng.standard_normal((n, rest.shape[1])) @ rest.T)
    if spread:
        x = x + spread * rng.standard_normal((n, k_used)) @ R[:, 1:1 + k_used].T
    return torch.tensor(x, dtype=DTYPE)


def test_average_operator_matches_dense_hessians():
    clf = tiny_cnn("softplus", side=5, num_classes=3, seed=1)
    x = torch.rand(4, *clf.input_shape, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    b = boundary_point(clf, x, clip=False)  # the geometry, not the pixel box, is under test
    assert bool(b.converged.all())
    op = AverageCurvatureOperator(clf, b.point, b.side_label, b.boundary_label, "exact", batch_size=3)
    dense = op.dense()
    truth = sum(dense_projected_hessian(clf, b.point[i], int(b.side_label[i]), int(b.boundary_label[i]))[0]
                for i in range(4)) / 4
    assert torch.allclose(dense, truth, atol=1e-9, rtol=1e-7)
    assert op.hvp_count == 4 * clf.dim
    # finite differences approach the same operator as h -> 0 (the step is in pixels)
    op_fd = AverageCurvatureOperator(clf, b.point, b.side_label, b.boundary_label, "fd", step=1e-4)
    assert torch.allclose(op_fd.dense(), truth, atol=1e-5)


def test_known_curved_subspace_is_recovered():
    clf, w, U, R = _known_quadratic()
    rng = np.random.default_rng(1)
    x = _images(R, 6, 3, rng)
    S = curved_subspace(clf, x, m=2, estimator="exact", lanczos_tol=1e-10)
    angles = subspace_angles(S.basis.numpy(), U[:, :2])
    assert np.max(angles) < 1e-6
    # eigenvalues in |.| order with their docs/science.md signs (images of class 1: F = f_1 - f_0 = q)
    assert np.allclose(S.eigenvalues, [2.0, -1.5], atol=1e-6)
    assert S.settings["estimator"] == "exact" and S.num_points == 6 and S.settings["dropped"] == 0
    assert torch.allclose(S.basis.T @ S.basis, torch.eye(2, dtype=S.basis.dtype), atol=1e-10)
    # signs="positive" / "negative" keep one end only
    Sp = curved_subspace(clf, x, m=1, signs="positive", estimator="exact", lanczos_tol=1e-10)
    Sn = curved_subspace(clf, x, m=1, signs="negative", estimator="exact", lanczos_tol=1e-10)
    assert np.max(subspace_angles(Sp.basis.numpy(), U[:, :1])) < 1e-6 and Sp.eigenvalues[0] == pytest.approx(2.0)
    assert np.max(subspace_angles(Sn.basis.numpy(), U[:, 1:2])) < 1e-6 and Sn.eigenvalues[0] == pytest.approx(-1.5)
    # the DeepFool perturbation of these images is along w, orthogonal to S
    r = torch.tensor(np.stack([w, U[:, 0] + U[:, 1]]), dtype=DTYPE)
    assert S.concentration(r).numpy() == pytest.approx([0.0, 1.0], abs=1e-6)


def test_recovery_with_tilted_normals():
    """Images with components along the curved directions: normals tilt, S is still found closely."""
    clf, w, U, R = _known_quadratic(a=(1.0, -0.8, 0.02))
    x = _images(R, 20, 3, np.random.default_rng(2), spread=0.05)
    S = curved_subspace(clf, x, m=2, estimator="exact")
    assert np.max(subspace_angles(S.basis.numpy(), U[:, :2])) < 0.05


def test_fd_estimator_recovers_quadratic_subspace():
    clf, w, U, R = _known_quadratic()
    x = _images(R, 5, 3, np.random.default_rng(3))
    S = curved_subspace(clf, x, m=2, estimator="fd", step=0.1)
    # central differences are exact on a quadratic
    assert np.max(subspace_angles(S.basis.numpy(), U[:, :2])) < 1e-5
    assert S.settings["step"] == 0.1


def test_estimator_resolution_and_validation(relu_model, gelu_model):
    assert resolve_estimator(relu_model, "auto") == "fd"
    assert resolve_estimator(gelu_model, "auto") == "exact"
    with pytest.raises(GeometryError, match="estimator"):
        resolve_estimator(gelu_model, "hessian")
    clf, *_ = _known_quadratic()
    with pytest.raises(GeometryError, match="m \\(the dimension of S\\)"):
        curved_subspace(clf, torch.zeros(1, D, dtype=DTYPE), m=D)
    with pytest.raises(GeometryError, match="signs"):
        curved_subspace(clf, torch.zeros(1, D, dtype=DTYPE), m=2, signs="up")


def test_cache_roundtrip_and_keys(tmp_path, monkeypatch):
    clf = tiny_cnn("softplus", side=8, num_classes=10, seed=0)
    clf.dataset = "digits"  # images for S come from the 8x8 digits training split
    calls = []
    import geometry.subspace as sub

    real = sub.curved_subspace
    monkeypatch.setattr(sub, "curved_subspace", lambda *a, **k: calls.append(1) or real(*a, **k))
    S1 = model_subspace(clf, images=8, m=3, cache=tmp_path)
    S2 = model_subspace(clf, images=8, m=3, cache=tmp_path)
    assert len(calls) == 1 and S1.path == S2.path and S2.path.startswith(str(tmp_path))
    assert torch.allclose(S1.basis, S2.basis) and np.allclose(S1.eigenvalues, S2.eigenvalues)
    assert S2.fingerprint == model_fingerprint(clf) and S2.input_shape == clf.input_shape
    # other settings -> another file; recompute -> computed again
    p_other = subspace_path(clf, subspace_settings(clf, images=8, m=4), tmp_path)
    assert str(p_other) != S1.path
    model_subspace(clf, images=8, m=3, cache=tmp_path, recompute=True)
    assert len(calls) == 2
    # another model (other weights) never reuses this S
    other = tiny_cnn("softplus", side=8, num_classes=10, seed=5)
    assert model_fingerprint(other) != model_fingerprint(clf)
    # a corrupt file is reported, not unpickled
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(GeometryError, match="not a saved curved subspace"):
        CurvedSubspace.load(bad)


def test_subspace_cli_json(tmp_path, capsys):
    from geometry.cli import main

    rc = main(["subspace", "--model", "digits_mlp", "--subspace-images", "12", "--m", "4", "--cache-dir",
               str(tmp_path), "--save", str(tmp_path / "s.npz"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "digits_mlp" and out["m"] == 4 and out["d"] == 64
    assert isinstance(out["eigenvalues"], list) and len(out["eigenvalues"]) == 4
    assert all(isinstance(v, float) for v in out["eigenvalues"])
    assert isinstance(out["hvp_count"], int) and out["hvp_count"] > 0 and isinstance(out["converged"], bool)
    assert out["random_baseline"] == pytest.approx((4 / 64) ** 0.5)
    assert out["cache_path"].startswith(str(tmp_path))
    with np.load(tmp_path / "s.npz") as f:
        assert f["basis"].shape == (64, 4) and f["images"].shape == (4, 1, 8, 8)
    rc = main(["subspace", "--model", "digits_mlp", "--m", "64", "--cache-dir", str(tmp_path)])
    assert rc == 2 and "m (the dimension of S)" in capsys.readouterr().err


def test_reselecting_S_by_sign():
    clf, w, U, R = _known_quadratic()
    S = curved_subspace(clf, _images(R, 4, 3, np.random.default_rng(4)), m=2, estimator="exact", lanczos_tol=1e-10)
    pos, neg = S.with_signs("positive"), S.with_signs("negative")
    # positive: curvatures 2 and 0.05 (u_1, u_3); negative: only -1.5 (u_2), the rest of the spectrum is 0
    assert pos.eigenvalues == pytest.approx([2.0, 0.05], abs=1e-6)
    assert np.max(subspace_angles(pos.basis.numpy(), U[:, [0, 2]])) < 1e-6
    assert neg.m == 1 and neg.eigenvalues[0] == pytest.approx(-1.5)
    assert np.max(subspace_angles(neg.basis.numpy(), U[:, 1:2])) < 1e-6
    assert np.allclose(S.with_signs("both").basis.numpy(), S.basis.numpy())
    with pytest.raises(GeometryError, match="no negatively curved"):
        pos.with_signs("negative") if pos.ritz_vectors is None else \
            CurvedSubspace(pos.basis, pos.eigenvalues, pos.spectrum, pos.input_shape, "q", "", {}, 0, 0, 0.0,
                           True).with_signs("negative")


def test_stale_cache_file_is_recomputed(tmp_path):
    clf = tiny_cnn("softplus", side=8, num_classes=10, seed=0)
    clf.dataset = "digits"
    S = model_subspace(clf, images=6, m=2, cache=tmp_path)
    Path(S.path).write_bytes(b"an older or damaged file")
    S2 = model_subspace(clf, images=6, m=2, cache=tmp_path)
    assert S2.path == S.path and CurvedSubspace.load(S.path).m == 2


def test_batched_hvp_engine_gives_the_same_operator():
    clf = tiny_cnn("softplus", side=5, num_classes=3, seed=1)
    x = torch.rand(3, *clf.input_shape, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    b = boundary_point(clf, x, clip=False)
    V = torch.randn(clf.dim, 2, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    a = AverageCurvatureOperator(clf, b.point, b.side_label, b.boundary_label, "exact").matvec(V)
    c = AverageCurvatureOperator(clf, b.point, b.side_label, b.boundary_label, "exact", engine="batched_hvp").matvec(V)
    assert torch.allclose(a, c, atol=1e-10)


# ------------------------------------------------------------------ both constructions, all selections
# A quadratic classifier q(x) = x^T A x / 2 + b^T x + c with A's spectrum known: the raw Hessian of F = f_1 - f_0 = q
# is A everywhere, so the paper construction (average raw Hessian at x + 0.8 r) is A itself for images of class 1,
# whatever points DeepFool reaches; the projected one is the mean of P_i A P_i / |A z_i + b| over boundary points.
LAM = np.array([3.0, -2.6, 2.2, 1.8, -0.9, 0.5, -0.2, 0.1, 0.0, 0.0, 0.0, 0.0])
EXPECTED = {  # select -> eigenvalues of S for m = 4, in |eigenvalue| order
    "most": [3.0, -2.6, 2.2, 1.8],
    "positive": [3.0, 2.2, 1.8, 0.5],
    "negative": [-2.6, -0.9, -0.2],  # only three negative curvatures exist
    "both-ends": [3.0, -2.6, 2.2, -0.9],  # ceil(4/2) most positive and floor(4/2) most negative
}


def _spectral_quadratic(seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    b = rng.standard_normal(D)
    b /= np.linalg.norm(b)
    clf = quadratic_classifier(Q @ np.diag(LAM) @ Q.T, b, 0.5)
    x = torch.tensor(0.1 * rng.standard_normal((10, D)), dtype=DTYPE)
    assert bool((clf.predict(x) == 1).all())  # F = f_1 - f_0 = q at every image
    return clf, Q, b, x


def _eigvecs(Q, values):
    return Q[:, [int(np.flatnonzero(LAM == v)[0]) for v in values]]


@pytest.mark.parametrize("estimator", ["exact", "fd"])
@pytest.mark.parametrize("select", list(EXPECTED))
def test_paper_construction_is_the_raw_hessian(select, estimator):
    clf, Q, _, x = _spectral_quadratic()
    S = curved_subspace(clf, x, m=4, construction="paper", select=select, estimator=estimator, lanczos_tol=1e-12)
    want = EXPECTED[select]
    assert S.eigenvalues == pytest.approx(want, abs=1e-8)
    assert np.max(subspace_angles(S.basis.numpy(), _eigvecs(Q, want))) < 1e-8
    # each direction is the eigenvector of its own eigenvalue (not just the same span)
    for i, v in enumerate(want):
        assert abs(float(S.basis[:, i] @ torch.as_tensor(_eigvecs(Q, [v])[:, 0]))) == pytest.approx(1.0, abs=1e-8)
    assert torch.allclose(S.basis.T @ S.basis, torch.eye(S.m, dtype=S.basis.dtype), atol=1e-10)
    assert S.construction == "paper" and S.select == select and S.num_points == 10
    assert S.settings["construction"] == "paper" and S.settings["deepfool_iter"] == 5
    assert S.settings["fraction"] == 0.8 and S.settings["past_boundary"] == 0 and S.settings["estimator"] == estimator
    assert ("select" in S.settings) == (select == "both-ends")


def test_paper_auto_estimator_is_finite_differences_at_the_default_step(gelu_model):
    from geometry.operators import default_step
    from geometry.subspace import subspace_settings

    assert resolve_estimator(gelu_model, "auto", "paper") == "fd"
    assert resolve_estimator(gelu_model, "auto", "projected") == "exact"
    s = subspace_settings(gelu_model, construction="paper")
    assert s["estimator"] == "fd" and s["step"] == default_step(gelu_model)  # c sqrt(d) range / 512, c = 10
    assert default_step(gelu_model) == pytest.approx(10 * 28 / 512)
    clf, Q, _, x = _spectral_quadratic()
    S = curved_subspace(clf, x, m=2, construction="paper", lanczos_tol=1e-12)
    assert S.settings["estimator"] == "fd" and S.settings["step"] == pytest.approx(default_step(clf))
    assert S.eigenvalues == pytest.approx([3.0, -2.6], abs=1e-8)


@pytest.mark.parametrize("select", list(EXPECTED))
def test_projected_construction_in_closed_form(select):
    clf, Q, b, x = _spectral_quadratic()
    A = Q @ np.diag(LAM) @ Q.T
    bd = boundary_point(clf, x, clip=False)
    assert bool(bd.converged.all()) and bool((bd.side_label == 1).all())
    truth = np.zeros((D, D))
    for z in bd.point.numpy():
        g = A @ z + b
        n = g / np.linalg.norm(g)
        P = np.eye(D) - np.outer(n, n)
        truth += P @ A @ P / np.linalg.norm(g) / len(x)
    vals, vecs = np.linalg.eigh(truth)
    S = curved_subspace(clf, x, m=4, select=select, estimator="exact", lanczos_tol=1e-12, boundary=bd)
    pos, neg = [i for i in np.argsort(-vals) if vals[i] > 1e-9], [i for i in np.argsort(vals) if vals[i] < -1e-9]
    pick = {"most": list(np.argsort(-np.abs(vals))[:4]), "positive": pos[:4], "negative": neg[:4],
            "both-ends": pos[:2] + neg[:2]}[select]
    pick = sorted(pick, key=lambda i: -abs(vals[i]))
    assert S.eigenvalues == pytest.approx(vals[pick], abs=1e-8)
    assert np.max(subspace_angles(S.basis.numpy(), vecs[:, pick])) < 1e-7
    assert S.construction == "projected" and S.select == select and "construction" not in S.settings
    # ... and it is not the raw Hessian: the two constructions differ on this classifier
    if select == "most":
        assert np.max(np.abs(S.eigenvalues - np.array(EXPECTED["most"]))) > 0.1


def test_both_constructions_on_a_sphere():
    """Ball of radius R: raw Hessian of F is -I/R inside (class 1), +I/R outside (class 0), so the paper
    construction over 3 inside + 1 outside images is -(3 - 1)/4 I/R; the projected one is mean_i s_i P_i / |z_i|."""
    R, d = 2.0, 6
    clf = sphere_classifier(np.zeros(d), R)
    rng = np.random.default_rng(5)
    u = rng.standard_normal((4, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    x = torch.tensor(u * np.array([[0.5], [1.0], [1.5], [2.6]]), dtype=DTYPE)  # the last one outside
    S = curved_subspace(clf, x, m=2, construction="paper", estimator="exact", lanczos_tol=1e-12)
    assert S.num_points == 4 and S.eigenvalues == pytest.approx([-0.5 / R] * 2, abs=1e-10)
    with pytest.raises(GeometryError, match="no positively curved"):
        curved_subspace(clf, x, m=2, construction="paper", select="positive", estimator="exact")
    bd = boundary_point(clf, x, clip=False)
    sgn = np.where(bd.side_label.numpy() == 1, -1.0, 1.0)
    # |grad F| = |z| / R at the (numerically found) boundary point z, so P H P / |g| = s P / |z|
    truth = sum(s * (np.eye(d) - np.outer(z, z) / (z @ z)) / np.linalg.norm(z)
                for s, z in zip(sgn, bd.point.numpy())) / 4
    vals = np.linalg.eigvalsh(truth)
    Sp = curved_subspace(clf, x, m=2, estimator="exact", lanczos_tol=1e-12, boundary=bd)
    assert Sp.eigenvalues == pytest.approx(sorted(vals, key=lambda v: -abs(v))[:2], abs=1e-8)


def test_paper_points_are_short_of_the_boundary():
    """z = x + 0.8 r with r = DeepFool (5 iterations, overshoot 0.05, no clipping): still in the image's class."""
    from geometry.boundary import deepfool
    from geometry.subspace import paper_points

    clf, _, _, x = _spectral_quadratic()
    z, k, j, ok = paper_points(clf, x)
    ref = deepfool(clf, x, overshoot=0.05, max_iter=5, clip=False)
    assert bool(ok.all()) and torch.equal(ok, ref.converged)
    assert torch.allclose(z, x + 0.8 * ref.perturbation, atol=0, rtol=0)
    assert torch.equal(clf.predict(z), k) and bool((j != k).all())
    assert ref.params["overshoot"] == 0.05 and ref.params["max_iter"] == 5 and not ref.params["clip"]


def test_reselection_equals_computing_with_that_selection():
    clf, _, _, x = _spectral_quadratic()
    for construction in ("projected", "paper"):
        S = curved_subspace(clf, x, m=4, construction=construction, estimator="exact", lanczos_tol=1e-12)
        for select in ("positive", "negative", "both-ends", "most"):
            direct = curved_subspace(clf, x, m=4, construction=construction, select=select, estimator="exact",
                                     lanczos_tol=1e-12)
            again = S.with_select(select)
            assert np.allclose(again.basis.numpy(), direct.basis.numpy(), atol=1e-10)
            assert again.m == direct.m and again.select == select
            # settings agree but for m: re-selection records the directions it kept (3 negative here)
            assert {k: v for k, v in again.settings.items() if k != "m"} == \
                {k: v for k, v in direct.settings.items() if k != "m"}
        assert S.with_signs("negative").settings == S.with_select("negative").settings


def test_select_and_signs_are_one_option():
    from geometry.subspace import resolve_select, selection_fields

    assert resolve_select() == "most" and resolve_select(signs="both") == "most"
    assert resolve_select(signs="positive") == "positive" == resolve_select("positive", "positive")
    with pytest.raises(GeometryError, match="contradicts"):
        resolve_select("both-ends", "both")
    with pytest.raises(GeometryError, match="select must be one of"):
        resolve_select("first")
    with pytest.raises(GeometryError, match="construction must be one of"):
        curved_subspace(_spectral_quadratic()[0], torch.zeros(1, D, dtype=DTYPE), m=2, construction="authors")
    # the recorded settings of the three old selections are exactly the old ones
    assert selection_fields("most") == {"signs": "both"} and selection_fields("negative") == {"signs": "negative"}
    assert selection_fields("both-ends") == {"signs": "both", "select": "both-ends"}


def test_default_settings_keys_are_unchanged(gelu_model):
    """The settings of the default construction and selection are byte-identical to earlier versions (shipped
    results are found by them); only non-default choices add keys."""
    from geometry.subspace import settings_key, subspace_settings

    old = {"images": 100, "m": 20, "signs": "both", "estimator": "exact", "step": None, "seed": 0, "candidates": 10,
           "split": "train", "dtype": "float32"}
    for kw in ({}, {"construction": "projected"}, {"select": "most"}, {"signs": "both"}):
        s = subspace_settings(gelu_model, **kw)
        assert json.dumps(s, sort_keys=True) == json.dumps(old, sort_keys=True)
        assert settings_key(s) == settings_key(old)
    assert subspace_settings(gelu_model, select="negative") == dict(old, signs="negative")
    paper = subspace_settings(gelu_model, construction="paper", select="both-ends")
    assert set(paper) - set(old) == {"construction", "deepfool_iter", "overshoot", "fraction", "select"}


def test_subspace_cli_construction_and_select(tmp_path, capsys):
    from geometry.cli import main

    base = ["subspace", "--model", "digits_mlp", "--subspace-images", "12", "--m", "4", "--cache-dir", str(tmp_path),
            "--json"]
    assert main(base) == 0
    default = json.loads(capsys.readouterr().out)
    assert default["construction"] == "projected" and default["select"] == "most"
    assert "construction" not in default["settings"] and "select" not in default["settings"]
    assert main(base + ["--construction", "paper", "--select", "both-ends"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["construction"] == "paper" and out["select"] == "both-ends" and out["d"] == 64
    assert out["settings"]["construction"] == "paper" and out["settings"]["estimator"] == "fd"
    assert out["positive"] <= 2 and out["negative"] <= 2 and out["m"] == len(out["eigenvalues"]) <= 4
    assert out["cache_path"] != default["cache_path"]
    for key in ("model", "m", "d", "eigenvalues", "positive", "negative", "num_points", "hvp_count", "seconds",
                "converged", "random_baseline", "settings", "cache_path", "device", "saved"):
        assert key in out
    # --select positive is --signs positive: the same saved S
    assert main(base + ["--select", "positive"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(base + ["--signs", "positive"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert a["cache_path"] == b["cache_path"] and a["select"] == b["select"] == "positive"
    assert a["settings"]["signs"] == "positive" and "select" not in a["settings"]
    # contradicting options are refused before any work
    assert main(base + ["--signs", "both", "--select", "negative"]) == 2
    assert "contradicts" in capsys.readouterr().err
    # plain text names the construction
    assert main(base[:-1] + ["--construction", "paper", "--select", "both-ends"]) == 0
    assert "construction paper" in capsys.readouterr().out
