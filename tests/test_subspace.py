"""The shared curved subspace S: the average operator against dense Hessians, recovery of a known
curved subspace (principal angles), the choice of signs, the cache, and the ``subspace`` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles

from analytic import DTYPE, dense_projected_hessian, quadratic_classifier, tiny_cnn
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
