"""Cross-sections: planes (orthonormal, containing what they claim, seeded), grid labels against direct model
calls, pixel-range flags, adaptive == dense (analytic classifiers with known boundary curves, a bundled
model, and the stated guarantee on random label maps), and the `section` CLI."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from analytic import annulus_classifier, sphere_classifier, tiny_cnn
from conftest import zoo
from scipy import ndimage

from geometry.cli import main
from geometry.errors import GeometryError
from geometry.operators import logit_difference_gradient
from geometry.sections import (DEFAULT_COARSE_STEP, NORMAL_ORIENTATION, PlaneEvaluator, adaptive_labels,
                               cross_section, default_estimator, default_extent, dense_labels, grid_axes,
                               inspect_point, make_plane, orthonormalize, outside_mask, parse_plane,
                               random_direction, section_on_plane)


def _check_orthonormal(plane, tol=1e-10):
    u, v = plane.u.reshape(-1).double(), plane.v.reshape(-1).double()
    assert abs(float(u.norm()) - 1) < tol and abs(float(v.norm()) - 1) < tol
    assert abs(float(u @ v)) < tol


@pytest.fixture(scope="module")
def sphere():
    """Class 1 ('inside') inside the ball of radius 2 around c in R^8 (float64, wide pixel range)."""
    c = np.linspace(-0.3, 0.4, 8)
    return sphere_classifier(c, R=2.0), torch.tensor(c)


# ------------------------------------------------------------------ parsing and directions
def test_parse_plane_specs_and_errors():
    assert parse_plane("normal,random") == ("pair", ["normal", "random"])
    assert parse_plane("adversarial:pgd, random") == ("pair", ["adversarial:pgd", "random"])
    assert parse_plane("image:gallery:3:1") == ("image", ["gallery:3:1"])
    assert parse_plane("images:gallery:0:1,gallery:0:2") == ("images", ["gallery:0:1", "gallery:0:2"])
    assert parse_plane("npy:u.npy,v.npy") == ("npy", ["u.npy", "v.npy"])
    for bad, words in [("normal", "two directions"), ("normal,sideways", "unknown plane direction"),
                       ("adversarial:cw,random", "unknown attack"), ("images:a.png", "images:REF1,REF2"),
                       ("curv+:hessian,normal", "estimator"), ("", "empty")]:
        with pytest.raises(GeometryError, match=words):
            parse_plane(bad)


def test_orthonormalize_gram_schmidt_and_errors():
    u, v = torch.tensor([2.0, 0, 0], dtype=torch.float64), torch.tensor([1.0, 1, 0], dtype=torch.float64)
    uu, vv = orthonormalize(u, v)
    assert torch.allclose(uu, torch.tensor([1.0, 0, 0], dtype=torch.float64))
    assert torch.allclose(vv, torch.tensor([0.0, 1, 0], dtype=torch.float64))
    with pytest.raises(GeometryError, match="parallel"):
        orthonormalize(u, 3 * u)
    with pytest.raises(GeometryError, match="zero"):
        orthonormalize(torch.zeros(3, dtype=torch.float64), v)


def test_random_directions_are_seeded():
    a, b = random_direction((1, 4, 4), 3), random_direction((1, 4, 4), 3)
    assert torch.equal(a, b) and abs(float(a.norm()) - 1) < 1e-12
    assert not torch.allclose(a, random_direction((1, 4, 4), 4))


# ------------------------------------------------------------------ planes
def test_every_plane_kind_is_orthonormal_and_contains_its_points(sphere, tmp_path):
    clf, c = sphere
    x0 = c + torch.tensor([0.9, -0.2, 0.1, 0.0, 0.3, 0.0, -0.1, 0.2], dtype=torch.float64)  # inside
    others = {"one": c + torch.linspace(1.0, -1.0, 8, dtype=torch.float64),
              "two": c + torch.linspace(-0.5, 1.2, 8, dtype=torch.float64)}
    U, V = np.random.default_rng(0).normal(size=(2, 8))
    np.save(tmp_path / "u.npy", U)
    np.save(tmp_path / "v.npy", V)
    specs = ["normal,random", "normal,curv+", "normal,curv-", "random,random", "adversarial,random",
             "adversarial:fgsm,random", "adversarial:pgd,random", "image:one", "images:one,two",
             f"npy:{tmp_path / 'u.npy'},{tmp_path / 'v.npy'}", "curv+,curv-"]
    for spec in specs:
        plane = make_plane(clf, x0, spec, seed=1, estimator="exact", image_loader=others.__getitem__)
        _check_orthonormal(plane)
        for p in plane.points:
            assert p.label is not None
            # each marked point sits at its projection; points built in the plane are exactly in it
            if p.kind != "image" or p.name != "image x0" or plane.info["anchor"] == "image":
                assert p.offset < 1e-9, (spec, p)
        x0_mark = plane.points[0]
        a, b, off = plane.coords(x0)
        assert (x0_mark.a, x0_mark.b, x0_mark.offset) == pytest.approx((a, b, off), abs=1e-12)
        if plane.info["anchor"] == "image":
            assert torch.allclose(plane.origin, x0) and off < 1e-12
        # the default extent contains every marked point
        ext = default_extent(plane)
        assert all(max(abs(p.a), abs(p.b)) <= ext / 1.25 + 1e-9 for p in plane.points)
        # the images named by the plane lie in it, at their coordinates
        for name in ("one", "two"):
            if f"image {name}" in [p.name for p in plane.points]:
                p = [q for q in plane.points if q.name == f"image {name}"][0]
                assert torch.allclose(plane.point(p.a, p.b), others[name], atol=1e-9)
    npy = make_plane(clf, x0, f"npy:{tmp_path / 'u.npy'},{tmp_path / 'v.npy'}")
    assert torch.allclose(npy.u.reshape(-1), torch.tensor(U / np.linalg.norm(U)), atol=1e-12)


def test_normal_orientation_and_anchor_through_boundary_point(sphere):
    clf, c = sphere
    x0 = c + torch.tensor([0.5, 0.4, 0.0, -0.2, 0.1, 0.0, 0.0, 0.3], dtype=torch.float64)
    plane = make_plane(clf, x0, "normal,random")
    assert "from the image's class k towards class j" in NORMAL_ORIENTATION
    z = [p for p in plane.points if p.kind == "boundary"][0]
    assert z.offset < 1e-9 and z.a > 0
    zt = plane.point(z.a, z.b)
    k, j = plane.info["label"], plane.info["boundary_label"]
    g = logit_difference_gradient(clf, zt.unsqueeze(0), k, j)[0].reshape(-1)
    assert torch.allclose(plane.u.reshape(-1), -g / g.norm(), atol=1e-9)
    # sphere: DeepFool's step is radial, so the plane through z also contains x0 and the centre
    assert plane.points[0].offset < 1e-6
    ac, bc, offc = plane.coords(c)
    assert offc < 1e-6 and ac < 0  # the centre is behind the image, away from the boundary
    # the label changes to class j when moving along +a from the image
    lab = clf.predict(plane.point(np.array([0.0, z.a + 0.05]), np.array([0.0, z.b])))
    assert lab.tolist() == [k, j]


def test_curved_plane_of_a_sphere_is_its_great_circle(sphere):
    """Through z with the normal and any tangent direction, the plane cuts a ball in a disk of radius R:
    labels are known exactly, and the sign of the curvature (-1/R from inside) comes through."""
    clf, c = sphere
    x0 = c + torch.tensor([0.2, -0.6, 0.3, 0.0, 0.0, 0.5, 0.0, 0.1], dtype=torch.float64)
    for spec in ("normal,curv+", "normal,curv-"):
        sec = cross_section(clf, x0, spec, estimator="exact", resolution=65, adaptive=True)
        kappa = sec.plane.info["curv+_curvature" if spec.endswith("+") else "curv-_curvature"]
        assert kappa == pytest.approx(-1 / 2.0, rel=1e-4)  # z is on the sphere up to the bisection tolerance
        ac, bc, off = sec.plane.coords(c)
        assert off < 1e-9
        A, B = np.meshgrid(sec.a, sec.b)
        r = np.hypot(A - ac, B - bc)
        clear = np.abs(r - 2.0) > 1e-6
        truth = (r < 2.0).astype(int)
        assert np.array_equal(sec.labels[clear], truth[clear])
        dense = section_on_plane(clf, sec.plane, extent=sec.extent, resolution=65, adaptive=False)
        assert np.array_equal(dense.labels, sec.labels)
    assert any("no positive curvature" in w for w in
               cross_section(clf, x0, "normal,curv+", estimator="exact", resolution=9).plane.info["warnings"])


def test_random_plane_extent_comes_from_the_in_plane_boundary(sphere):
    """A random plane through x0 cuts the ball in a disk of radius sqrt(R^2 - h^2) around the projection of
    the centre; the ray scan finds the nearest crossing to within its radius spacing (12 %)."""
    clf, c = sphere
    x0 = c + torch.tensor([0.3, 0.1, -0.2, 0.0, 0.1, 0.0, 0.2, 0.0], dtype=torch.float64)
    plane = make_plane(clf, x0, "random,random", seed=3)
    ac, bc, h = plane.coords(c)
    truth = np.sqrt(4.0 - h * h) - np.hypot(ac, bc)
    found = plane.info["in_plane_boundary_distance"]
    assert truth <= found <= truth * 1.13
    assert default_extent(plane) == pytest.approx(2.5 * found)
    sec = section_on_plane(clf, plane, resolution=33)
    assert sec.classes_present() == [0, 1]


def test_planes_are_reproducible_from_the_seed():
    clf = tiny_cnn("softplus", side=6, num_classes=4, seed=2)
    x = torch.rand((1, 6, 6), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p1 = make_plane(clf, x, "random,random", seed=5)
    p2 = make_plane(clf, x, "random,random", seed=5)
    p3 = make_plane(clf, x, "random,random", seed=6)
    assert torch.equal(p1.u, p2.u) and torch.equal(p1.v, p2.v)
    assert not torch.allclose(p1.u, p3.u)
    assert p1.info["random_seeds"] == [5, 6]


# ------------------------------------------------------------------ grids
def test_grid_labels_and_margins_equal_direct_model_calls():
    clf = tiny_cnn("softplus", side=6, num_classes=4, seed=1)
    x = torch.rand((1, 6, 6), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    plane = make_plane(clf, x, "normal,random", estimator="exact")
    for adaptive in (False, True):
        sec = section_on_plane(clf, plane, resolution=33, adaptive=adaptive, batch_size=50)
        rng = np.random.default_rng(0)
        ib, ia = np.nonzero(sec.evaluated)
        pick = rng.choice(len(ib), size=min(60, len(ib)), replace=False)
        pts = plane.point(sec.a[ia[pick]], sec.b[ib[pick]])
        logits = clf.logits(pts)
        top = logits.topk(2, dim=1)
        assert np.array_equal(sec.labels[ib[pick], ia[pick]], top.indices[:, 0].numpy())
        assert np.allclose(sec.margins[ib[pick], ia[pick]], (top.values[:, 0] - top.values[:, 1]).numpy(),
                           atol=1e-12)
        assert np.isnan(sec.margins[~sec.evaluated]).all()
    assert sec.labels.shape == (33, 33) and len(set(sec.classes_present())) >= 2


def test_chunking_does_not_change_labels():
    clf = tiny_cnn("tanh", side=6, num_classes=4, seed=3)
    x = torch.rand((1, 6, 6), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    plane = make_plane(clf, x, "random,random", seed=2)
    a, b = grid_axes(3.0, 21)
    A, B = np.meshgrid(a, b)
    l1, m1 = PlaneEvaluator(clf, plane, batch_size=7)(A.ravel(), B.ravel())
    l2, m2 = PlaneEvaluator(clf, plane, batch_size=1000)(A.ravel(), B.ravel())
    assert np.array_equal(l1, l2) and np.allclose(m1, m2, atol=1e-12)


def test_outside_pixel_range_is_flagged_not_clipped():
    clf = tiny_cnn("softplus", side=6, num_classes=4, seed=1)  # pixel range (0, 1)
    x = 0.3 + 0.4 * torch.rand((1, 6, 6), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    plane = make_plane(clf, x, "random,random", seed=0)
    sec = section_on_plane(clf, plane, extent=2.0, resolution=25, adaptive=False)
    A, B = np.meshgrid(sec.a, sec.b)
    pts = plane.point(A.ravel(), B.ravel())
    expected = ~clf.in_pixel_range(pts).numpy().reshape(A.shape)
    assert np.array_equal(sec.outside, expected)
    assert 0 < sec.outside_count < sec.outside.size
    assert not sec.outside[12, 12]  # the image itself
    # the labels are those of the unclipped points
    assert np.array_equal(sec.labels.ravel(), clf.predict(pts).numpy())
    assert np.array_equal(outside_mask(clf, plane, sec.a, sec.b, batch_size=3), expected)


# ------------------------------------------------------------------ adaptive refinement
def test_adaptive_equals_dense_on_an_annulus_with_known_circles():
    """Class 'shell' between radii 1 and 2.5: in a plane through the centre the boundary is two circles."""
    clf = annulus_classifier(np.zeros(6), 1.0, 2.5)
    x0 = torch.tensor([1.5, 0.2, 0, 0, 0, 0], dtype=torch.float64)
    plane = make_plane(clf, x0, "images:o1,o2",
                       image_loader={"o1": torch.tensor([-1.0, 0.3, 0, 0, 0, 0], dtype=torch.float64),
                                     "o2": torch.tensor([0.1, 2.0, 0, 0, 0, 0], dtype=torch.float64)}.__getitem__)
    ac, bc, off = plane.coords(torch.zeros(6, dtype=torch.float64))
    assert off < 1e-12  # the centre lies in the plane of three points in the (x1, x2) plane
    for res in (65, 129):
        ada = section_on_plane(clf, plane, extent=3.0, resolution=res, adaptive=True)
        dense = section_on_plane(clf, plane, extent=3.0, resolution=res, adaptive=False)
        A, B = np.meshgrid(ada.a, ada.b)
        r = np.hypot(A - ac, B - bc)
        truth = ((r > 1.0) & (r < 2.5)).astype(int)
        clear = (np.abs(r - 1.0) > 1e-9) & (np.abs(r - 2.5) > 1e-9)
        assert np.array_equal(dense.labels[clear], truth[clear])
        assert np.array_equal(ada.labels, dense.labels)
        assert ada.evaluations < dense.evaluations / 2
        assert ada.dense_evaluations == res * res


def _random_label_map(rng, n, classes=3, bumps=6, width=0.25):
    y, x = np.mgrid[0:1:n * 1j, 0:1:n * 1j]
    fields = []
    for _ in range(classes):
        f = np.zeros_like(x)
        for _ in range(bumps):
            cx, cy, w = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.3, 1.0) * width
            f += rng.normal() * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * w * w))
        fields.append(f)
    return np.argmax(np.stack(fields), axis=0)


def _guarantee_holds(truth, labels, evaluated):
    """Every point whose 8-connected same-label piece of ``truth`` contains an evaluated point is right."""
    covered = np.zeros_like(evaluated)
    for c in np.unique(truth):
        comp, n = ndimage.label(truth == c, structure=np.ones((3, 3)))
        hit = np.unique(comp[evaluated & (truth == c)])
        covered |= np.isin(comp, hit[hit > 0])
    return np.array_equal(labels[covered], truth[covered]), covered


@pytest.mark.parametrize("halo", [0, 1])
def test_adaptive_guarantee_on_random_label_maps(halo):
    rng = np.random.default_rng(7)
    exact_maps = 0
    for trial in range(40):
        n = int(rng.choice([33, 50, 65]))
        truth = _random_label_map(rng, n, width=float(rng.choice([0.08, 0.15, 0.3])))
        if trial % 4 == 0:  # sprinkle single-point islands: the only thing the refinement may miss
            for _ in range(3):
                truth[rng.integers(n), rng.integers(n)] = 3
        calls = []

        def evaluate(ib, ia):
            calls.append(len(ib))
            return truth[ib, ia], np.zeros(len(ib))

        labels, margins, evaluated = adaptive_labels(evaluate, n, n, DEFAULT_COARSE_STEP, halo)
        ok, covered = _guarantee_holds(truth, labels, evaluated)
        assert ok, f"trial {trial}: a point of a piece containing an evaluated point is wrong"
        assert sum(calls) == evaluated.sum() <= n * n
        wrong = labels != truth
        assert not (wrong & covered).any()
        # the corollary: every piece touches the coarse lattice -> identical maps
        lat = np.zeros_like(evaluated)
        idx = lambda m: np.unique(np.append(np.arange(0, m, DEFAULT_COARSE_STEP), m - 1))  # noqa: E731
        lat[np.ix_(idx(n), idx(n))] = True
        _, covered_by_lattice = _guarantee_holds(truth, truth, lat)
        if covered_by_lattice.all():
            assert np.array_equal(labels, truth)
            exact_maps += 1
    assert exact_maps >= 10


def test_adaptive_can_miss_only_an_island_between_coarse_points():
    n = 33
    truth = np.zeros((n, n), dtype=int)
    truth[:, 20:] = 1
    truth[3:6, 3:6] = 2  # a 3x3 pocket strictly between coarse points (step 8)
    labels, _, evaluated = adaptive_labels(lambda ib, ia: (truth[ib, ia], np.zeros(len(ib))), n, n, 8, 1)
    wrong = labels != truth
    assert wrong.any() and (truth[wrong] == 2).all()  # the stated limitation, and nothing else
    labels4, _, _ = adaptive_labels(lambda ib, ia: (truth[ib, ia], np.zeros(len(ib))), n, n, 4, 1)
    assert np.array_equal(labels4, truth)  # a finer coarse lattice touches the pocket and recovers it


def test_adaptive_rejects_bad_settings():
    f = lambda ib, ia: (np.zeros(len(ib), dtype=int), np.zeros(len(ib)))  # noqa: E731
    with pytest.raises(GeometryError, match="power of two"):
        adaptive_labels(f, 9, 9, 6)
    with pytest.raises(GeometryError, match="resolution"):
        cross_section(tiny_cnn(), torch.zeros(1, 6, 6, dtype=torch.float64), resolution=2)
    with pytest.raises(GeometryError, match="extent"):
        cross_section(tiny_cnn(), torch.zeros(1, 6, 6, dtype=torch.float64), extent=-1.0, resolution=5)
    lab, mar, ev = dense_labels(f, 4, 5)
    assert lab.shape == (4, 5) and ev.all()


def test_adaptive_equals_dense_on_bundled_models():
    gelu = zoo("mnist_lenet_gelu")
    from geometry.images import gallery_image

    x = gallery_image(gelu, 0, 0).tensor
    plane = make_plane(gelu, x, "normal,random")
    ada = section_on_plane(gelu, plane, resolution=65, adaptive=True)
    dense = section_on_plane(gelu, plane, resolution=65, adaptive=False)
    assert np.array_equal(ada.labels, dense.labels)
    assert len(dense.classes_present()) >= 2  # the default extent shows the boundary
    assert ada.evaluations < dense.evaluations / 3
    z = [p for p in plane.points if p.kind == "boundary"][0]
    assert max(abs(z.a), abs(z.b)) < ada.extent == pytest.approx(default_extent(plane))
    rand = cross_section(gelu, x, "random,random", resolution=33)  # scanned extent shows the boundary too
    assert len(rand.classes_present()) >= 2
    relu = zoo("mnist_lenet_relu")
    assert default_estimator(relu) == "fd" and default_estimator(gelu) == "exact"
    x = gallery_image(relu, 7, 0).tensor
    sec = cross_section(relu, x, "normal,curv+", resolution=49, adaptive=True)
    assert sec.plane.info["estimator"] == "fd" and "piecewise-linear" in sec.plane.info["estimator_reason"]
    dense = section_on_plane(relu, sec.plane, extent=sec.extent, resolution=49, adaptive=False)
    assert np.array_equal(sec.labels, dense.labels)


def test_inspect_point_matches_the_grid():
    clf = tiny_cnn("softplus", side=6, num_classes=4, seed=1)
    x = torch.rand((1, 6, 6), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sec = cross_section(clf, x, "random,random", extent=4.0, resolution=17, adaptive=False)
    pt = inspect_point(clf, sec.plane, sec.a[3], sec.b[11])
    assert pt.label == sec.labels[11, 3] and pt.margin == pytest.approx(sec.margins[11, 3], abs=1e-12)
    assert pt.probabilities.sum() == pytest.approx(1.0)
    assert torch.allclose(pt.image, sec.plane.point(sec.a[3], sec.b[11]))


# ------------------------------------------------------------------ CLI
def _cli(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def test_cli_section_json_and_save_reproduce_the_library(tmp_path):
    base = ["section", "--model", "mnist_lenet_gelu", "--device", "cpu", "--image", "gallery:1:0",
            "--resolution", "21"]
    code, out, _ = _cli(base + ["--json", "--save", str(tmp_path / "s.npz")])
    assert code == 0
    res = json.loads(out)
    for key in ("plane", "extent", "resolution", "labels", "evaluations", "outside_pixel_range"):
        assert key in res
    labels = np.array(res["labels"])
    assert labels.shape == (21, 21) and res["plane"] == "normal,random" and res["evaluations"] == 21 * 21
    gelu = zoo("mnist_lenet_gelu")
    from geometry.images import gallery_image

    lib = cross_section(gelu, gallery_image(gelu, 1, 0).tensor, "normal,random", resolution=21, adaptive=False)
    assert np.array_equal(lib.labels, labels) and lib.extent == pytest.approx(res["extent"])
    saved = np.load(tmp_path / "s.npz")
    assert np.array_equal(saved["labels"], labels) and saved["u"].shape == (1, 28, 28)
    code, out, _ = _cli(base + ["--json", "--adaptive"])
    ada = json.loads(out)
    assert np.array_equal(np.array(ada["labels"]), labels) and ada["evaluations"] < res["evaluations"]
    code, out, _ = _cli(base + ["--plane", "images:gallery:1:1,gallery:7:0", "--resolution", "9"])
    assert code == 0 and "image gallery:7:0" in out and "label map" in out


def test_cli_section_bad_input_is_one_clear_line():
    code, out, err = _cli(["section", "--model", "mnist_lenet_gelu", "--plane", "normal,sideways",
                           "--resolution", "9"])
    assert code == 2 and "unknown plane direction" in err and "Traceback" not in err
    code, out, err = _cli(["section", "--model", "mnist_lenet_gelu", "--plane", "npy:/nope/u.npy,/nope/v.npy",
                           "--resolution", "9"])
    assert code == 2 and "does not exist" in err


def test_valid_plane_holds_a_triangle_of_valid_images(gelu_model):
    """adversarial,random:valid: x0, DeepFool's point and x0 + the clipped random step are all inside the pixel
    range, so (by convexity) is the triangle between them, and the grid shows valid points of two classes."""
    from geometry.images import gallery_image
    from geometry.sections import VALID_PLANE, make_plane, random_direction, section_on_plane

    clf = gelu_model
    x = gallery_image(clf, 3, 0).tensor
    plane = make_plane(clf, x, VALID_PLANE)
    lo, hi = clf.pixel_range
    assert plane.info["anchor"] == "image"
    adv = [p for p in plane.points if p.kind == "adversarial"][0]
    x0 = x.to(torch.float64)
    g = random_direction(clf.input_shape, 0)
    third = (x0 + plane.info["random_valid_scale"] * g).clamp(lo, hi)
    ta, tb, off = plane.coords(third)
    assert off < 1e-6  # the clipped step lies in the plane
    for s1 in np.linspace(0, 1, 6):
        for s2 in np.linspace(0, 1 - s1, 6):
            img = plane.point(s1 * adv.a + s2 * ta, s1 * adv.b + s2 * tb)
            assert float(img.min()) >= lo - 1e-6 and float(img.max()) <= hi + 1e-6
    sec = section_on_plane(clf, plane, resolution=65)
    valid = ~sec.outside
    assert 0.01 < valid.mean() < 0.5
    assert len(np.unique(sec.labels[valid])) == 2  # the image's class and the one across the boundary


def test_random_qualifiers_are_checked(gelu_model):
    from geometry.sections import parse_plane

    assert parse_plane("adversarial,random:valid") == ("pair", ["adversarial", "random:valid"])
    with pytest.raises(GeometryError, match="random:valid"):
        parse_plane("normal,random:clipped")
    with pytest.raises(GeometryError, match="takes no qualifier"):
        parse_plane("normal:x,random")
