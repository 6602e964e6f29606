"""Hessian and curvature operators against dense torch.func Hessians (float64, small models)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from analytic import dense_projected_hessian, linear_classifier, quadratic_classifier, tiny_cnn
from geometry.errors import GeometryError
from geometry.operators import (DEFAULT_STEP_C, batched_hvp, curvature_operator, default_step, hessian_operator,
                                logit_difference_gradient)

D = torch.float64


def dense_hessian(clf, z, k, j):
    shape = clf.input_shape

    def F(v):
        out = clf.module(v.reshape(1, *shape))[0]
        return out[k] - out[j]

    return torch.func.hessian(F)(z.reshape(-1))


@pytest.fixture(scope="module")
def cnn():
    return tiny_cnn("softplus", seed=1)


@pytest.fixture(scope="module")
def points(cnn):
    return torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(2), dtype=D)


@pytest.mark.parametrize("engine", ["fwd_rev", "rev_rev"])
def test_batched_exact_hvp_matches_dense_hessians(cnn, points, engine):
    k, j = torch.tensor([0, 1, 3]), torch.tensor([2, 0, 1])
    V = torch.randn(3, 5, 1, 6, 6, generator=torch.Generator().manual_seed(3), dtype=D)
    out = batched_hvp(cnn, points, k, j, V, engine=engine, chunk=2)  # chunks of 2 vectors: 3 passes
    assert out.shape == V.shape
    for b in range(3):
        H = dense_hessian(cnn, points[b], int(k[b]), int(j[b]))
        want = (H @ V[b].reshape(5, -1).T).T.reshape(5, 1, 6, 6)
        assert torch.allclose(out[b], want, atol=1e-10, rtol=1e-9)


def test_hessian_operator_dense_and_scipy(cnn, points):
    op = hessian_operator(cnn, points[0], 1, 3)
    H = dense_hessian(cnn, points[0], 1, 3)
    assert op.shape == (36, 36) and op.dtype == D and op.device.type == "cpu"
    M = op.dense(block=7)  # 6 blocks: column block by column block
    assert op.hvp_count == 36
    assert torch.allclose(M, H, atol=1e-10)
    v = torch.randn(36, dtype=D)
    assert torch.allclose(op @ v, H @ v, atol=1e-10)
    assert (op @ torch.randn(36, 4, dtype=D)).shape == (36, 4)
    assert op.hvp_count == 36 + 1 + 4
    S = op.to_scipy()
    assert np.allclose(S.matvec(v.numpy()), (H @ v).numpy(), atol=1e-10)
    assert np.allclose(S.matmat(np.eye(36)[:, :3]), H[:, :3].numpy(), atol=1e-10)
    with pytest.raises(GeometryError, match="shape"):
        op @ torch.zeros(35)


def test_logit_difference_gradient_is_exact_for_a_linear_classifier():
    W = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=D)
    clf = linear_classifier(W, torch.zeros(3))
    z = torch.randn(2, 4, dtype=D)
    g = logit_difference_gradient(clf, z, torch.tensor([0, 2]), torch.tensor([1, 0]))
    assert torch.allclose(g, torch.stack([W[0] - W[1], W[2] - W[0]]))
    # the exact Hessian of a linear classifier is zero, and finite differences agree
    for est in ("exact", "fd"):
        H = hessian_operator(clf, z[0], 0, 1, estimator=est, step=0.3).dense()
        assert torch.count_nonzero(H.abs() > 1e-12) == 0


def test_quadratic_hessian_is_A_and_finite_differences_are_exact_on_it():
    g = torch.Generator().manual_seed(4)
    A = torch.randn(5, 5, generator=g, dtype=D)
    A = (A + A.T) / 2
    clf = quadratic_classifier(A, torch.randn(5, generator=g, dtype=D), 0.3)
    z = torch.randn(5, generator=g, dtype=D)
    assert torch.allclose(hessian_operator(clf, z, 1, 0).dense(), A, atol=1e-12)
    assert torch.allclose(hessian_operator(clf, z, 0, 1).dense(), -A, atol=1e-12)
    # central differences are exact for quadratics at any step
    for h in (1e-3, 0.5, 3.0):
        assert torch.allclose(hessian_operator(clf, z, 1, 0, estimator="fd", step=h).dense(), A, atol=1e-9)


def test_finite_differences_converge_to_the_exact_operator(cnn, points):
    z = points[1]
    H = dense_hessian(cnn, z, 2, 0)
    V = torch.randn(36, 6, generator=torch.Generator().manual_seed(5), dtype=D)
    exact = H @ V
    errs = []
    for h in (0.4, 0.2, 0.1, 0.05):
        op = hessian_operator(cnn, z, 2, 0, estimator="fd", step=h)
        assert op.step == h and op.estimator == "fd"
        errs.append(float((op @ V - exact).norm() / exact.norm()))
    assert errs[-1] < 1e-2
    # central differences: error ~ h^2, so halving h divides it by about 4
    ratios = [errs[i] / errs[i + 1] for i in range(3)]
    assert all(3.0 < r < 5.0 for r in ratios), (errs, ratios)


def test_finite_difference_batched_matches_single(cnn, points):
    k, j = torch.tensor([0, 1, 3]), torch.tensor([2, 0, 1])
    V = torch.randn(3, 4, 1, 6, 6, generator=torch.Generator().manual_seed(6), dtype=D)
    out = batched_hvp(cnn, points, k, j, V, estimator="fd", step=0.1)
    for b in range(3):
        op = hessian_operator(cnn, points[b], int(k[b]), int(j[b]), estimator="fd", step=0.1)
        assert torch.allclose(out[b].reshape(4, -1).T, op @ V[b].reshape(4, -1).T, atol=1e-12)


def test_curvature_operator_is_projected_and_scaled(cnn, points):
    z = points[2]
    op = curvature_operator(cnn, z, 3, 1)
    M, g = dense_projected_hessian(cnn, z, 3, 1)
    assert abs(op.gradient_norm - float(g.norm())) < 1e-12
    assert torch.allclose(op.normal, g / g.norm())
    assert torch.allclose(op.dense(), M, atol=1e-10)
    assert float((op @ op.normal).norm()) < 1e-12  # the normal is in the kernel
    assert op.hvp_count == 37 and op.estimator == "exact" and op.step is None
    fd = curvature_operator(cnn, z, 3, 1, estimator="fd")
    assert fd.step == default_step(cnn) and not fd.linear and op.linear


def test_piecewise_linear_network_has_zero_exact_hessian():
    relu = tiny_cnn("relu", seed=1, pooling="max")
    z = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=D)
    V = torch.randn(1, 3, 1, 6, 6, dtype=D)
    for engine in ("fwd_rev", "rev_rev"):
        assert batched_hvp(relu, z, 0, 1, V, engine=engine).abs().max() == 0
    assert hessian_operator(relu, z, 0, 1).dense().abs().max() == 0
    assert hessian_operator(relu, z, 0, 1, estimator="fd", step=0.3).dense().abs().max() > 0


def test_default_step_follows_the_paper_scale():
    from geometry.classifier import Classifier

    clf = Classifier(torch.nn.Flatten(), (1, 28, 28), [str(i) for i in range(784)], (0.0, 1.0))
    assert default_step(clf) == pytest.approx(10 * 28 / 512)
    assert DEFAULT_STEP_C == 10
    wide = Classifier(torch.nn.Flatten(), (3, 32, 32), ["a"] * 3072, (0.0, 255.0))
    assert default_step(wide, c=5) == pytest.approx(5 * math.sqrt(3072) * 255 / 512)


def test_validation(cnn, points):
    with pytest.raises(GeometryError, match="estimator"):
        hessian_operator(cnn, points[0], 0, 1, estimator="gauss")
    with pytest.raises(GeometryError, match="step"):
        hessian_operator(cnn, points[0], 0, 1, estimator="fd", step=-1)
    with pytest.raises(GeometryError, match="class index"):
        hessian_operator(cnn, points[0], 0, 7)
    with pytest.raises(GeometryError, match="one point"):
        hessian_operator(cnn, points, 0, 1)
    with pytest.raises(GeometryError, match="V must have shape"):
        batched_hvp(cnn, points, 0, 1, torch.zeros(2, 1, 1, 6, 6, dtype=D))
