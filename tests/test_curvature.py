"""Principal curvatures against analytic boundaries; the sign convention pinned on known shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analytic import (annulus_classifier, cylinder_classifier, dense_projected_hessian, linear_classifier,
                      quadratic_classifier, quadratic_curvatures, sphere_classifier, tiny_cnn)
from geometry.boundary import boundary_point
from geometry.curvature import SIGN_CONVENTION, CurvatureResult, principal_curvatures
from geometry.errors import ConvergenceError, GeometryError

D = torch.float64


def test_sign_convention_is_stated_once():
    assert "F = f_k - f_j" in SIGN_CONVENTION and "F(z + t v) > 0" in SIGN_CONVENTION
    assert "-1/R" in SIGN_CONVENTION


@pytest.mark.parametrize("estimator", ["exact", "fd"])
def test_sphere_from_inside_is_minus_one_over_R_and_from_outside_plus(estimator):
    R, d = 2.5, 7
    clf = sphere_classifier(R=R, dim=d)
    inside = torch.tensor([0.4, -0.3, 0.2, 0.1, 0.0, 0.5, -0.2], dtype=D)
    res = principal_curvatures(clf, inside, estimator=estimator, step=0.3)
    r = float(res.point.norm())  # the point is on the sphere up to the bisection tolerance
    assert abs(r - R) < 1e-4
    assert isinstance(res, CurvatureResult) and res.method == "full" and len(res.curvatures) == d - 1
    assert res.label == 1 and res.boundary_label == 0
    assert np.allclose(res.curvatures, -1 / r, atol=1e-9)
    outside = 2.0 * inside / inside.norm() * R
    res_out = principal_curvatures(clf, outside, estimator=estimator, step=0.3)
    assert res_out.label == 0 and np.allclose(res_out.curvatures, 1 / float(res_out.point.norm()), atol=1e-9)
    # directions are tangent: orthogonal to the radial normal
    n = res.point.reshape(-1) / r
    assert float((n @ res.directions).abs().max()) < 1e-9
    assert res.warning is None and (res.step == 0.3) == (estimator == "fd")


def test_sign_means_what_the_convention_says_on_a_quadratic():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(6, 6, generator=g, dtype=D)
    A = (A + A.T) / 2
    b = torch.randn(6, generator=g, dtype=D)
    clf = quadratic_classifier(A, b, 0.4)
    x = torch.randn(6, generator=g, dtype=D)
    res = principal_curvatures(clf, x)
    assert res.curvatures[0] > 0.05 and res.curvatures[-1] < -0.05  # both signs present
    z, k, j = res.point.reshape(-1), res.label, res.boundary_label
    for idx, expected in ((0, k), (len(res.curvatures) - 1, j)):
        v = res.directions[:, idx]
        for t in (0.05, -0.05):  # both ways along the tangent: a curvature has no orientation
            label = int(clf.predict((z + t * v)[None])[0])
            assert label == expected, (idx, t, res.curvatures[idx])


@pytest.mark.parametrize("seed", [1, 2])
def test_quadratic_curvatures_are_exact_for_both_labels(seed):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(8, 8, generator=g, dtype=D)
    A = (A + A.T) / 2
    b = torch.randn(8, generator=g, dtype=D)
    clf = quadratic_classifier(A, b, -0.2)
    xs = torch.randn(6, 8, generator=g, dtype=D)
    labels = clf.predict(xs)
    assert set(labels.tolist()) == {0, 1}
    for x, label in zip(xs[:4], labels[:4]):
        full = principal_curvatures(clf, x, full=True)
        want = quadratic_curvatures(A.numpy(), b.numpy(), full.point.numpy(), int(label))
        assert full.label == int(label)
        assert np.allclose(full.curvatures, want, atol=1e-9)
        lan = principal_curvatures(clf, x, full=False, k=2, boundary=full.boundary, tol=1e-10)
        assert lan.method == "lanczos" and lan.converged
        assert np.allclose(lan.curvatures, np.r_[want[:2], want[-2:]], atol=1e-8)
        fd = principal_curvatures(clf, x, estimator="fd", step=0.7, boundary=full.boundary)
        assert np.allclose(fd.curvatures, want, atol=1e-7)  # central differences are exact on quadratics


def test_linear_boundary_is_flat_and_explained():
    W = torch.randn(3, 5, generator=torch.Generator().manual_seed(3), dtype=D)
    clf = linear_classifier(W, torch.zeros(3))
    res = principal_curvatures(clf, torch.randn(5, dtype=D))
    assert np.all(res.curvatures == 0)
    assert "finite-difference" in res.warning and "piecewise-linear" in res.warning
    fd = principal_curvatures(clf, torch.randn(5, dtype=D), estimator="fd", step=0.5)
    assert np.allclose(fd.curvatures, 0, atol=1e-10) and fd.warning is None


def test_annulus_and_cylinder():
    ann = annulus_classifier(r_inner=1.0, r_outer=3.0, dim=5)
    near_inner = torch.tensor([1.2, 0.1, 0.0, 0.0, 0.0], dtype=D)  # in the shell, nearest boundary the inner sphere
    res = principal_curvatures(ann, near_inner)
    assert res.label == 1 and np.allclose(res.curvatures, 1 / float(res.point.norm()), atol=1e-8)
    near_outer = torch.tensor([0.0, 2.9, 0.0, 0.0, 0.0], dtype=D)
    res = principal_curvatures(ann, near_outer)
    assert np.allclose(res.curvatures, -1 / float(res.point.norm()), atol=1e-8)
    cyl = cylinder_classifier(R=2.0, dim=6, axes=(0, 1))
    res = principal_curvatures(cyl, torch.tensor([5.0, -3.0, 0.5, 0.2, -0.1, 0.3], dtype=D))
    # round directions: -1/R (4 - 1 = 3 of them); the axes: flat (2)
    r_perp = float(res.point.reshape(-1)[2:].norm())
    assert abs(r_perp - 2.0) < 1e-3
    assert np.allclose(res.curvatures, [0, 0, -1 / r_perp, -1 / r_perp, -1 / r_perp], atol=1e-9)


def test_smooth_cnn_against_dense_torch_func_hessian():
    clf = tiny_cnn("tanh", side=6, seed=1)
    x = torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=D)
    res = principal_curvatures(clf, x, full=False, k=3, tol=1e-10)
    M, g = dense_projected_hessian(clf, res.point, res.label, res.boundary_label)
    n = g / g.norm()
    Qf, _ = torch.linalg.qr(torch.cat([n[:, None], torch.eye(36, dtype=D)], 1), mode="complete")
    T = Qf[:, 1:36]
    want = np.sort(np.linalg.eigvalsh((T.T @ M @ T).numpy()))[::-1]
    assert np.allclose(res.curvatures, np.r_[want[:3], want[-3:]], atol=1e-8)
    assert abs(res.gradient_norm - float(g.norm())) < 1e-10
    assert res.hvp_count < 35 and res.converged


def test_relu_network_exact_is_zero_with_explanation_fd_is_not():
    relu = tiny_cnn("relu", seed=1, pooling="max")
    x = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=D)
    b = boundary_point(relu, x)
    exact = principal_curvatures(relu, x, boundary=b, full=False, k=3)
    assert np.all(exact.curvatures == 0) and exact.converged
    assert "piecewise linear (ReLU / max-pooling)" in exact.warning and "fd" in exact.warning
    fd = principal_curvatures(relu, x, boundary=b, estimator="fd", full=True)
    assert np.abs(fd.curvatures).max() > 1e-3 and fd.step is not None
    assert fd.boundary is b
    # known piecewise linear: exact spends no Hessian-vector product, its directions are still tangent and
    # orthonormal; auto means fd there
    assert exact.hvp_count == 0 and len(exact.curvatures) == 6 and "zero almost everywhere" in exact.warning
    V = exact.directions
    assert torch.allclose(V.T @ V, torch.eye(6, dtype=V.dtype), atol=1e-10)
    assert float((exact.normal.reshape(-1) @ V).abs().max()) < 1e-10
    full = principal_curvatures(relu, x, boundary=b, estimator="exact", full=True)
    assert full.hvp_count == 0 and len(full.curvatures) == 35 and np.all(full.curvatures == 0)
    auto = principal_curvatures(relu, x, boundary=b, estimator="auto", full=True)
    assert auto.estimator == "fd" and np.allclose(auto.curvatures, fd.curvatures)
    smooth = tiny_cnn("tanh", side=6, seed=1)
    xs = torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=D)
    a = principal_curvatures(smooth, xs, estimator="auto", full=False, k=2, tol=1e-10)
    assert a.estimator == "exact" and a.hvp_count > 0 and a.warning is None


def test_zoo_model_float32(gelu_model):
    from geometry.images import gallery_image

    img = gallery_image(gelu_model, 3, 0)
    res = principal_curvatures(gelu_model, img.tensor, k=3)
    assert res.converged and res.method == "lanczos" and len(res.curvatures) == 6
    assert res.curvatures[0] > 0 > res.curvatures[-1]
    assert np.all(np.diff(res.curvatures) <= 0)
    assert res.directions.shape == (784, 6) and res.direction_image(0).shape == (1, 28, 28)
    s = res.summary()
    assert s["estimator"] == "exact" and s["step"] is None and s["hvp_count"] == res.hvp_count
    assert set(res.arrays()) >= {"boundary_point", "directions", "curvatures"}


def test_failures_are_explained():
    clf = sphere_classifier(R=1.0, dim=3)
    with pytest.raises(ConvergenceError, match="no boundary point"):
        principal_curvatures(clf, torch.zeros(3, dtype=D))  # the centre: zero gradient, DeepFool cannot move
    with pytest.raises(GeometryError, match="estimator"):
        principal_curvatures(clf, torch.ones(3, dtype=D) * 0.1, estimator="hutchinson")
    with pytest.raises(GeometryError, match="already in class 1"):
        principal_curvatures(clf, torch.ones(3, dtype=D) * 0.1, target=1)
    with pytest.raises(GeometryError, match="one image"):
        principal_curvatures(clf, torch.ones(2, 3, dtype=D) * 0.1)


def test_curvature_page_matches_the_library_and_explains_relu():
    """The Curvature page (AppTest): same signed spectrum as the library on the smooth CNN; on the ReLU CNN
    it explains the zero exact spectrum and shows the finite-difference one."""
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT, zoo
    from geometry.images import gallery_image

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=240)
    at.session_state["curv_k"] = 3
    at.session_state["curv_compare"] = False
    at.run()
    at.switch_page("views/curvature.py").run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    gelu = zoo("mnist_lenet_gelu")
    lib = principal_curvatures(gelu, gallery_image(gelu, 0, 0).tensor, k=3)
    stats = " ".join(m.value for m in at.markdown)
    assert f"most positive {lib.curvatures[0]:.4g}, most negative {lib.curvatures[-1]:.4g}" in stats
    assert "exact (autograd Hessian)" in stats
    assert len(at.get("plotly_chart")) >= 3 + 1 + 6  # image/point/perturbation, spectrum, 3 + 3 directions

    at.session_state["curv_compare"] = True
    at.sidebar.selectbox(key="model_choice").set_value("mnist_lenet_relu").run()
    assert not at.exception and not at.error
    notes = " ".join(i.value for i in at.info) + " ".join(c.value for c in at.caption)
    assert "piecewise linear" in notes and "zero" in notes
    stats = " ".join(m.value for m in at.markdown)
    assert "finite differences, h = 0.547" in stats and "most positive 0," not in stats.split("exact")[0]
