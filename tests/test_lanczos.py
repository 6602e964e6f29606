"""Signed Lanczos against dense eigendecompositions: signs, both ends, exclusions, multiplicities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analytic import dense_projected_hessian, tiny_cnn
from geometry.boundary import boundary_point
from geometry.errors import GeometryError
from geometry.lanczos import EigResult, full_spectrum, signed_eigs
from geometry.operators import Operator, curvature_operator

D = torch.float64


class Dense(Operator):
    def __init__(self, M):
        super().__init__(M.shape[0], M.dtype, M.device)
        self.M = M

    def _matmat(self, V):
        self.hvp_count += V.shape[1]
        return self.M @ V


def random_symmetric(eigs, seed=0):
    d = len(eigs)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=D))
    return Q @ torch.diag(torch.as_tensor(eigs, dtype=D)) @ Q.T


def test_both_ends_with_their_signs():
    # the most negative eigenvalue has the largest magnitude: power iteration would report +/-9 with no sign
    eigs = np.concatenate([[-9.0, -4.0, -3.5], np.linspace(-0.1, 0.1, 140), [2.0, 2.5, 3.0]])
    op = Dense(random_symmetric(eigs))
    res = signed_eigs(op, k=3, tol=1e-10)
    assert isinstance(res, EigResult) and res.converged
    assert np.allclose(res.values, [3.0, 2.5, 2.0, -3.5, -4.0, -9.0], atol=1e-8)
    assert np.all(np.diff(res.values) <= 0)
    # vectors belong to their values and are orthonormal
    V = res.vectors
    assert torch.allclose(op.M @ V, V * torch.as_tensor(res.values), atol=1e-6)
    assert torch.allclose(V.T @ V, torch.eye(6, dtype=D), atol=1e-8)
    assert res.hvp_count == op.hvp_count and res.hvp_count < len(eigs)
    assert np.all(res.residuals <= 1e-10 * 9 * 1.01)


def test_exclude_keeps_the_basis_orthogonal():
    M = random_symmetric(np.linspace(-1, 5, 30), seed=1)
    n = torch.randn(30, dtype=D)
    n /= n.norm()
    P = torch.eye(30, dtype=D) - torch.outer(n, n)
    op = Dense(P @ M @ P)
    res = signed_eigs(op, k=2, exclude=n[:, None], tol=1e-10)
    assert float((n @ res.vectors).abs().max()) < 1e-10
    # the zero eigenvalue of the normal is not reported: compare with the spectrum on n^perp
    Qf, _ = torch.linalg.qr(torch.cat([n[:, None], torch.eye(30, dtype=D)], 1), mode="complete")
    T = Qf[:, 1:30]
    want = np.sort(np.linalg.eigvalsh((T.T @ op.M @ T).numpy()))[::-1]
    assert np.allclose(res.values, np.r_[want[:2], want[-2:]], atol=1e-8)
    full = full_spectrum(op, block=8, exclude=n[:, None])
    assert len(full.values) == 29 and np.allclose(full.values, want, atol=1e-10)
    assert full.hvp_count == 30 and full.method == "full"


def test_multiplicities_and_invariant_subspaces():
    op = Dense(-0.5 * torch.eye(12, dtype=D))
    res = signed_eigs(op, k=3)
    assert res.converged and np.allclose(res.values, -0.5) and len(res.values) == 6
    assert torch.allclose(res.vectors.T @ res.vectors, torch.eye(6, dtype=D), atol=1e-10)
    zero = signed_eigs(Dense(torch.zeros(50, 50, dtype=D)), k=4)
    assert zero.converged and np.all(zero.values == 0) and zero.hvp_count <= 9
    # two clusters: multiplicity 3 at +2 and 4 at -1 (random start + restarts find all copies)
    M = random_symmetric([2.0, 2.0, 2.0, -1.0, -1.0, -1.0, -1.0, 0.0, 0.0, 0.0], seed=2)
    res = signed_eigs(Dense(M), k=3)
    assert np.allclose(res.values, [2, 2, 2, -1, -1, -1], atol=1e-10)


def test_small_dimension_returns_everything():
    M = random_symmetric([3.0, 1.0, -2.0, -5.0], seed=3)
    res = signed_eigs(Dense(M), k=5)
    assert res.converged and np.allclose(res.values, [3, 1, -2, -5], atol=1e-10)


def test_budget_exhaustion_is_reported():
    eigs = np.linspace(-1, 1, 400)  # a uniform spectrum converges slowly
    res = signed_eigs(Dense(random_symmetric(eigs, seed=4)), k=5, max_iter=15, tol=1e-12)
    assert not res.converged and res.hvp_count == 15 and res.iterations == 15


def test_lanczos_matches_dense_projected_hessian_of_a_smooth_cnn():
    clf = tiny_cnn("softplus", side=8, seed=1)
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(3), dtype=D)
    b = boundary_point(clf, x)
    assert b.converged.all()
    k, j = int(b.label[0]), int(b.boundary_label[0])
    op = curvature_operator(clf, b.point, k, j)
    res = signed_eigs(op, k=4, exclude=op.normal[:, None], tol=1e-9)
    M, g = dense_projected_hessian(clf, b.point, k, j)
    n = g / g.norm()
    Qf, _ = torch.linalg.qr(torch.cat([n[:, None], torch.eye(64, dtype=D)], 1), mode="complete")
    T = Qf[:, 1:64]
    want = np.sort(np.linalg.eigvalsh((T.T @ M @ T).numpy()))[::-1]
    assert res.converged
    assert np.allclose(res.values, np.r_[want[:4], want[-4:]], atol=1e-8)
    assert res.hvp_count < 63
    assert want[0] > 0 > want[-1]  # a real signed spectrum, not a degenerate test
    full = full_spectrum(op, exclude=op.normal[:, None])
    assert np.allclose(full.values, want, atol=1e-9)


def test_scipy_bridge_agrees():
    from scipy.sparse.linalg import eigsh

    M = random_symmetric(np.r_[[-6.0, -5.0], np.linspace(-0.5, 0.5, 60), [4.0, 7.0]], seed=5)
    op = Dense(M)
    ours = signed_eigs(op, k=2, tol=1e-10)
    theirs = np.sort(eigsh(op.to_scipy(), k=4, which="BE", tol=1e-10)[0])[::-1]
    assert np.allclose(ours.values, theirs, atol=1e-8)


def test_validation():
    op = Dense(torch.eye(5, dtype=D))
    with pytest.raises(GeometryError, match="k must"):
        signed_eigs(op, k=0)
    with pytest.raises(GeometryError, match="exclude"):
        signed_eigs(op, k=1, exclude=torch.zeros(4, 1, dtype=D))
    with pytest.raises(GeometryError, match="whole space"):
        signed_eigs(op, k=1, exclude=torch.eye(5, dtype=D))


# ------------------------------------------------------------------ memory: thick restarts, float32 basis
def test_thick_restarts_keep_the_answer_and_bound_the_basis(monkeypatch):
    import geometry.lanczos as lanczos

    eigs = np.concatenate([[-9.0, -4.0, -3.5], np.linspace(-0.1, 0.1, 340), [2.0, 2.5, 3.0]])
    M = random_symmetric(eigs, seed=6)
    whole = signed_eigs(Dense(M), k=3, tol=1e-10)
    allocated = []
    real_zeros = torch.zeros

    def spy(*shape, **kw):
        out = real_zeros(*shape, **kw)
        if out.dim() == 2 and out.shape[0] == 346:
            allocated.append(tuple(out.shape))
        return out

    monkeypatch.setattr(lanczos.torch, "zeros", spy)
    small = signed_eigs(Dense(M), k=3, tol=1e-10, basis=8)
    monkeypatch.undo()
    assert allocated and all(cols <= 8 for _, cols in allocated)  # never more than b columns
    assert small.converged and whole.converged
    assert np.allclose(small.values, whole.values, atol=1e-9)
    assert np.allclose(small.values, [3.0, 2.5, 2.0, -3.5, -4.0, -9.0], atol=1e-9)
    assert small.iterations == small.hvp_count  # products, restarts included
    # a slow uniform spectrum needs several restarts of a small basis: still the exact extremes
    eigs = np.linspace(-1, 1, 500)
    res = signed_eigs(Dense(random_symmetric(eigs, seed=7)), k=4, tol=1e-8, basis=20, max_iter=500)
    assert res.converged and res.hvp_count > 20
    assert np.allclose(res.values, np.r_[eigs[-4:][::-1], eigs[:4][::-1]], atol=1e-8)
    with pytest.raises(GeometryError, match="basis"):
        signed_eigs(Dense(M), k=3, basis=4)


def test_basis_size_and_storage_rules():
    from geometry.lanczos import FLOAT32_BASIS_MIN_DIM, basis_columns, basis_dtype

    assert basis_columns(5, 783, 200, 784) == 200             # small problem: unrestarted, as before
    assert basis_columns(5, 150527, 200, 150528) == 24        # max(4k + 4, 20)
    assert basis_columns(1, 150527, 200, 150528) == 20
    assert basis_dtype(torch.float64, 10 ** 6) == torch.float64
    assert basis_dtype(torch.float32, FLOAT32_BASIS_MIN_DIM - 1) == torch.float64
    assert basis_dtype(torch.float32, FLOAT32_BASIS_MIN_DIM) == torch.float32


def test_float32_basis_at_large_d():
    d = 70_000
    g = torch.Generator().manual_seed(8)
    diag = torch.rand(d, generator=g) * 0.2 - 0.1
    diag[:3] = torch.tensor([5.0, 4.0, 3.0])
    diag[3:6] = torch.tensor([-6.0, -4.5, -3.2])

    class Diag(Operator):
        def _matmat(self, V):
            self.hvp_count += V.shape[1]
            return diag[:, None] * V

    op = Diag(d, torch.float32, torch.device("cpu"))
    res = signed_eigs(op, k=3, tol=1e-5)
    assert res.converged and res.vectors.dtype == torch.float32
    assert np.allclose(res.values, [5, 4, 3, -3.2, -4.5, -6], atol=1e-4)
    assert res.iterations <= 200


# ------------------------------------------------------------------ finite differences (not exactly linear)
def test_fd_operator_is_diagonalised_on_its_basis_quadratic_exact():
    # central differences are exact on a quadratic: the fd "operator" is linear there, and the outside-basis
    # residual test converges to the exact curvatures
    from analytic import quadratic_classifier, quadratic_curvatures

    g = torch.Generator().manual_seed(9)
    A = torch.randn(60, 60, generator=g, dtype=D)
    A = (A + A.T) / 2
    bvec = torch.randn(60, generator=g, dtype=D)
    clf = quadratic_classifier(A, bvec, -0.5)
    x = torch.randn(60, generator=g, dtype=D)
    b = boundary_point(clf, x)
    k, j = int(b.label[0]), int(b.boundary_label[0])
    op = curvature_operator(clf, b.point, k, j, "fd", step=0.5)
    assert not op.linear
    res = signed_eigs(op, k=3, exclude=op.normal[:, None], value_tol=1e-10, tol=1e-10)
    want = quadratic_curvatures(A.numpy(), bvec.numpy(), b.point[0].numpy(), k)
    assert res.converged
    assert np.allclose(res.values, np.r_[want[:3], want[-3:]], atol=1e-7)
    assert res.asymmetry < 1e-8


def test_fd_on_a_relu_network_converged_only_when_the_residual_test_passes(relu_model, monkeypatch):
    import geometry.lanczos as lanczos
    from geometry.data import held_out

    x = torch.from_numpy(held_out("mnist").x[:1])
    b = boundary_point(relu_model, x)
    op = curvature_operator(relu_model, b.point, int(b.label[0]), int(b.boundary_label[0]), "fd")
    allocated = []
    real_zeros = torch.zeros

    def spy(*shape, **kw):
        out = real_zeros(*shape, **kw)
        if out.dim() == 2 and out.shape[0] == 784:
            allocated.append(tuple(out.shape))
        return out

    monkeypatch.setattr(lanczos.torch, "zeros", spy)
    res = signed_eigs(op, k=5, exclude=op.normal[:, None], max_iter=300)
    monkeypatch.undo()
    # the basis alone, 32 columns at a time as it grows: no products array, nothing of the unused budget
    # (and the 2k = 10 Ritz vectors returned)
    assert allocated == [(784, 32)] * -(-res.iterations // 32) + [(784, 10)]
    # converged exactly when every selected pair's residual passes the stated test
    scale = np.abs(res.values).max()
    assert res.converged and np.all(res.residuals <= 1e-2 * scale) and res.hvp_count < 300
    assert res.asymmetry > 0.2  # not a linear map: the basis matters (module docstring)
    assert res.values[0] > 0 > res.values[-1]
    short = signed_eigs(op, k=5, exclude=op.normal[:, None], max_iter=12)
    assert not short.converged and np.any(short.residuals > 1e-2 * np.abs(short.values).max())


def test_fd_residuals_from_coefficients_match_the_products():
    # a map that is odd and homogeneous but not linear, like the fd product; it records what it was applied to
    M = random_symmetric(np.linspace(-3, 3, 80), seed=10)

    class Bent(Dense):
        def __init__(self, M):
            super().__init__(M)
            self.linear, self.seen = False, []

        def _matmat(self, V):
            self.hvp_count += V.shape[1]
            n = V.norm(dim=0, keepdim=True)
            out = n * torch.tanh(self.M @ (V / n))
            self.seen += [(v.clone(), a.clone()) for v, a in zip(V.T, out.T)]
            return out

    op = Bent(M)
    res = signed_eigs(op, k=2, max_iter=30, value_tol=1e-12, tol=1e-12)
    Q = torch.stack([v for v, _ in op.seen], 1)
    AQ = torch.stack([a for _, a in op.seen], 1)
    assert torch.allclose(Q.T @ Q, torch.eye(Q.shape[1], dtype=D), atol=1e-10)  # the basis, in order
    S_ = torch.linalg.eigh((Q.T @ AQ + AQ.T @ Q) / 2)
    theta, S = S_.eigenvalues, S_.eigenvectors
    idx = [0, 1, len(theta) - 2, len(theta) - 1]
    R = AQ @ S[:, idx] - Q @ S[:, idx] * theta[idx]
    outside = (R - Q @ (Q.T @ R)).norm(dim=0)
    assert np.allclose(res.values, theta[idx].numpy()[::-1], atol=1e-10)
    assert np.allclose(res.residuals, outside.numpy()[::-1], atol=1e-10)
    assert res.asymmetry > 1e-3 and not res.converged
