"""The signed margin over a plane (3-D view): exact against analytic classifiers, its sign against the
cross-section's labels, chunking, argument checks, and on a bundled model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from analytic import linear_classifier, quadratic_classifier
from conftest import zoo

from geometry.errors import GeometryError
from geometry.sections import (Plane, PlaneEvaluator, default_extent, grid_axes, make_plane, margin_surface,
                               orthonormalize)


def _plane(d, seed=0):
    g = torch.Generator().manual_seed(seed)
    origin = torch.randn(d, generator=g, dtype=torch.float64)
    u, v = orthonormalize(torch.randn(d, generator=g, dtype=torch.float64),
                          torch.randn(d, generator=g, dtype=torch.float64))
    return Plane("test", origin, u, v, ("u", "v"))


def _grid_points(plane, a, b):
    B, A = np.meshgrid(b, a, indexing="ij")
    return plane.point(A.ravel(), B.ravel())  # (n, d), row-major over (b, a)


def test_linear_classifier_margin_is_exact():
    rng = np.random.default_rng(1)
    W, bias = rng.normal(size=(4, 6)), rng.normal(size=4)
    clf = linear_classifier(W, bias)
    plane = _plane(6)
    for label in range(4):
        a, b, m = margin_surface(clf, plane, label, extent=3.0, resolution=17)
        assert m.shape == (17, 17) and m.dtype == np.float64
        np.testing.assert_allclose(a, grid_axes(3.0, 17)[0])
        logits = _grid_points(plane, a, b).numpy() @ W.T + bias
        others = np.delete(logits, label, axis=1).max(axis=1)
        np.testing.assert_allclose(m.ravel(), logits[:, label] - others, rtol=0, atol=1e-10)


def test_quadratic_classifier_margin_is_plus_minus_q():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(5, 5))
    bq, c = rng.normal(size=5), 0.3
    clf = quadratic_classifier(A, bq, c)
    plane = _plane(5, seed=3)
    a, b, m1 = margin_surface(clf, plane, 1, extent=2.0, resolution=21)
    _, _, m0 = margin_surface(clf, plane, 0, extent=2.0, resolution=21)
    X = _grid_points(plane, a, b).numpy()
    As = (A + A.T) / 2
    q = 0.5 * np.einsum("ni,ij,nj->n", X, As, X) + X @ bq + c
    np.testing.assert_allclose(m1.ravel(), q, atol=1e-10)
    np.testing.assert_allclose(m0, -m1, atol=1e-12)
    # the surface crosses zero inside this square (a real boundary is drawn), on both sides
    assert m1.min() < 0 < m1.max()


def test_sign_matches_the_predicted_labels_and_chunking_changes_nothing():
    rng = np.random.default_rng(4)
    clf = linear_classifier(rng.normal(size=(3, 8)), rng.normal(size=3))
    plane = _plane(8, seed=5)
    a, b, m = margin_surface(clf, plane, 2, extent=4.0, resolution=25)
    _, _, m_small = margin_surface(clf, plane, 2, extent=4.0, resolution=25, batch_size=7)
    np.testing.assert_allclose(m, m_small, rtol=0, atol=1e-12)  # same numbers up to BLAS rounding
    B, A = np.meshgrid(b, a, indexing="ij")
    labels, _ = PlaneEvaluator(clf, plane)(A.ravel(), B.ravel())
    labels = labels.reshape(m.shape)
    assert ((m > 0) == (labels == 2)).all()
    assert (labels == 2).any() and (labels != 2).any()


def test_default_extent_and_progress():
    clf = linear_classifier(np.eye(3)[:, :3], np.zeros(3))
    plane = _plane(3, seed=6)
    seen = []
    a, _, _ = margin_surface(clf, plane, 0, resolution=5, progress=lambda f, msg: seen.append(f))
    assert a[-1] == pytest.approx(default_extent(plane))
    assert seen and seen[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("label", [-1, 3, True, 1.0, "0"])
def test_bad_label_is_refused(label):
    clf = linear_classifier(np.eye(3), np.zeros(3))
    with pytest.raises(GeometryError, match="label"):
        margin_surface(clf, _plane(3), label, extent=1.0, resolution=5)


def test_bad_grid_is_refused():
    clf = linear_classifier(np.eye(3), np.zeros(3))
    with pytest.raises(GeometryError, match="resolution"):
        margin_surface(clf, _plane(3), 0, extent=1.0, resolution=2)
    with pytest.raises(GeometryError, match="extent"):
        margin_surface(clf, _plane(3), 0, extent=-1.0, resolution=5)


def test_bundled_model_zero_level_is_the_boundary_of_the_section():
    """On a bundled model and its default plane: positive at the image, negative past the boundary point z, and
    the sign agrees with the labels of a dense cross-section on the same grid."""
    clf = zoo("mnist_lenet_gelu")
    from geometry.images import load_image

    x = load_image("gallery:3:0", clf).tensor
    plane = make_plane(clf, x, "normal,random")
    k = plane.info["label"]
    ext = default_extent(plane)
    a, b, m = margin_surface(clf, plane, k, extent=ext, resolution=33)
    B, A = np.meshgrid(b, a, indexing="ij")
    labels, _ = PlaneEvaluator(clf, plane)(A.ravel(), B.ravel())
    labels = labels.reshape(m.shape)
    agree = (m > 0) == (labels == k)
    # float32 logits: only points within rounding of the boundary may disagree
    assert agree[np.abs(m) > 1e-4].all()
    assert m.min() < 0 < m.max()
