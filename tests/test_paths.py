"""Connecting paths: regions with known topology (convex ball, annulus, two disjoint blobs), the
resolution rule of the segment check, the weight-derived Lipschitz bound, the depth push, many-pair
statistics, the ``path`` CLI, and bundled-MNIST paths re-verified by an independent dense scan."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from analytic import DTYPE, WIDE_RANGE, annulus_classifier, linear_classifier, sphere_classifier
from conftest import zoo
from geometry.classifier import Classifier
from geometry.cli import main
from geometry.errors import GeometryError
from geometry.images import gallery_image
from geometry.paths import (ACTIVATION_SLOPES, ANCHOR_DEPTH_C, PROJECTION_OVERSHOOT, _deepen, check_segments,
                            connecting_path, connecting_paths, default_anchor_depth, gallery_pairs,
                            margin_lipschitz_bound, path_plane, path_statistics)


# ---------------------------------------------------------------- analytic regions
class TwoBlobs(nn.Module):
    """Logits ``(0, max(q1, q2))``: class 1 in the union of two disjoint balls of radius R."""

    def __init__(self, c1, c2, R):
        super().__init__()
        self.register_buffer("c1", torch.as_tensor(c1, dtype=DTYPE))
        self.register_buffer("c2", torch.as_tensor(c2, dtype=DTYPE))
        self.R = R

    def forward(self, x):
        x = x.flatten(1)
        q1 = (self.R ** 2 - ((x - self.c1) ** 2).sum(1)) / (2 * self.R)
        q2 = (self.R ** 2 - ((x - self.c2) ** 2).sum(1)) / (2 * self.R)
        q = torch.maximum(q1, q2)
        return torch.stack([torch.zeros_like(q), q], 1)


class Slab(nn.Module):
    """Logits ``(0, |x_0 - c| - w)``: class 0 only in the thin slab |x_0 - c| < w; slope 1 in L2."""

    def __init__(self, c, w):
        super().__init__()
        self.c, self.w = c, w

    def forward(self, x):
        q = (x.flatten(1)[:, 0] - self.c).abs() - self.w
        return torch.stack([torch.zeros_like(q), q], 1)


def _clf(module, dim):
    return Classifier(module.to(DTYPE), (dim,), ["out", "in"], WIDE_RANGE, name=type(module).__name__)


def _t(*v):
    return torch.tensor(v, dtype=DTYPE)


def dense_labels_along(clf, path, per_segment=2000):
    """Independent re-check: labels at ``per_segment`` evenly spaced points of every segment."""
    P = path.points.reshape(path.n_anchors + 2, -1)
    t = torch.linspace(0, 1, per_segment, dtype=P.dtype)[:, None]
    pts = torch.cat([P[k] + t * (P[k + 1] - P[k]) for k in range(len(P) - 1)])
    return clf.predict(pts.reshape(-1, *clf.input_shape))


# ---------------------------------------------------------------- convex region
@pytest.mark.parametrize("verification", ["local", 1.0])
def test_convex_ball_needs_no_anchor(verification):
    clf = sphere_classifier(dim=5, R=2.0)  # logit slope |x|/R <= 1 inside the ball
    x1, x2 = _t(1.2, 0.3, 0, 0, -0.5), _t(-0.9, -0.8, 0.4, 0.2, 0.6)
    p = connecting_path(clf, x1, x2, verification=verification)
    assert p.connected and p.n_anchors == 0 and p.stopped is None
    # a sampled (local) check is never reported as verified; a given slope bound is (a proof if it holds)
    assert p.verified == (verification != "local")
    assert p.guarantee == ("sampled" if verification == "local" else "given_bound")
    assert p.statistics["chord_outside_fraction"] == 0.0
    assert p.statistics["length_ratio"] == pytest.approx(1.0) and p.statistics["max_chord_deviation"] == 0.0
    # q = (4 - |x|^2) / 4 is smallest at the end farther from the centre (both ends are samples)
    q_min = min((4 - float((x ** 2).sum())) / 4 for x in (x1, x2))
    assert p.statistics["min_margin"] == pytest.approx(q_min, abs=1e-12)
    assert 0 < p.statistics["certified_margin"] <= q_min
    assert p.evaluations >= p.statistics["samples"] + p.parameters["chord_samples"]


def test_convex_linear_region_of_three_classes():
    W = _t(1, 0, -0.5, 0.8, -0.5, -0.8).reshape(3, 2)
    clf = linear_classifier(W, torch.zeros(3))
    p = connecting_path(clf, _t(3.0, 0.5), _t(2.0, -1.5))
    assert p.connected and p.n_anchors == 0 and p.label == 0


# ---------------------------------------------------------------- annulus
def test_annulus_between_opposite_points_has_verified_path_with_anchors():
    clf = annulus_classifier(dim=2, r_inner=1.0, r_outer=2.0)
    x1, x2 = _t(1.5, 0.2), _t(-1.5, 0.2)
    # on the box |x| <= 3 the slope of q = (r - 1)(2 - r) is |3 - 2r| <= 3: a true bound there
    for verification in ("local", 3.0):
        p = connecting_path(clf, x1, x2, verification=verification, max_anchors=16)
        assert p.connected and p.n_anchors >= 1
        assert p.verified == (verification == 3.0)
        r = p.points.norm(dim=1)
        assert bool(((r > 1) & (r < 2)).all())
        assert bool((p.points.abs() <= 3).all())
        # independent dense scan of the returned path: inside the shell everywhere
        assert bool((dense_labels_along(clf, p, 5000) == 1).all())
        # chord (x, 0.2), x in [-1.5, 1.5], is outside where x^2 + 0.04 < 1
        exact = 2 * math.sqrt(1 - 0.04) / 3
        assert p.statistics["chord_outside_fraction"] == pytest.approx(exact, abs=2 / 255)
        assert p.statistics["length_ratio"] > 1.05 and p.statistics["max_chord_deviation"] > 0.2
        assert p.statistics["moved_anchors"] >= 1
        s, m = p.margin_profile()
        assert s[0] == 0 and s[-1] == pytest.approx(1) and (m > 0).all()
        assert (np.diff(s) >= 0).all()


def test_anchor_depth_convention():
    clf = annulus_classifier(dim=2, r_inner=1.0, r_outer=2.0)
    assert PROJECTION_OVERSHOOT == 0.02
    assert default_anchor_depth(clf) == pytest.approx(ANCHOR_DEPTH_C * math.sqrt(2) * 200.0)
    p = connecting_path(clf, _t(1.5, 0.2), _t(-1.5, 0.2), anchor_depth=0.1)
    moved = p.anchors[torch.as_tensor(p.moved)]
    # first-order distance inside the shell = distance to the nearer circle (exact for circles up to O(depth^2))
    dist = torch.minimum(moved.norm(dim=1) - 1, 2 - moved.norm(dim=1))
    assert bool((dist >= 0.1 * 0.95).all())


def test_deepen_reaches_depth_against_every_class_at_a_junction():
    # three classes meeting at the origin at 120 degrees; a point of class 0 just off the junction
    ang = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=DTYPE)
    W = torch.stack([ang.cos(), ang.sin()], 1)
    clf = linear_classifier(W, torch.zeros(3))
    p = _t(0.01, 0.001)[None]
    assert int(clf.predict(p)) == 0
    q = _deepen(clf, p, torch.tensor([0]), 0.5)
    for j in (1, 2):
        w = W[0] - W[j]
        assert float((q[0] @ w) / w.norm()) >= 0.5 - 1e-9


# ---------------------------------------------------------------- disjoint blobs
def test_two_disjoint_blobs_are_reported_not_connected():
    clf = _clf(TwoBlobs([-3.0, 0.0, 0.0], [3.0, 0.0, 0.0], 1.0), 3)
    p = connecting_path(clf, _t(-3.2, 0.1, 0.0), _t(2.9, -0.2, 0.1), max_anchors=8, verification=4.0)
    assert not p.connected and not p.verified and p.guarantee == "none"
    assert p.stopped["reason"] == "anchor budget exhausted" and p.n_anchors <= 8
    assert p.statistics["length_ratio"] is None and p.statistics["min_margin"] is None
    d = p.to_dict()
    assert d["connected"] is False and d["stopped"]["segment"] < d["stopped"]["segments"]
    # the failing segment really crosses the gap: its ends lie in different blobs
    P = p.points
    s = p.stopped["segment"]
    assert float(P[s][0]) * float(P[s + 1][0]) < 0
    # the chord is mostly outside: |x_0| < 2 on [-3.2, 2.9]
    assert p.statistics["chord_outside_fraction"] > 0.5


def test_endpoints_of_different_classes_are_refused():
    clf = sphere_classifier(dim=2, R=1.0)
    with pytest.raises(GeometryError, match="predicted as"):
        connecting_path(clf, _t(0.1, 0.0), _t(5.0, 0.0))


# ---------------------------------------------------------------- the resolution rule
@pytest.mark.parametrize("verification", ["local", 1.0])
def test_a_thin_slab_between_grid_points_cannot_hide(verification):
    clf = _clf(Slab(0.4937, 1e-3), 2)  # the slab is 0.002 wide; the first grid step is 1/15
    a, b = _t(0.0, 0.3)[None], _t(1.0, 0.3)[None]
    (res,) = check_segments(clf, a, b, [1], verification=verification, min_points=16, max_step=10.0)
    assert not res.ok and res.reason == "label change" and res.bad_label == 0
    assert abs(res.bad_t - 0.4937) < 1e-3
    # the same segment beside the slab passes, with a certified margin below the true one
    (ok,) = check_segments(clf, a, _t(0.49, 0.3)[None], [1], verification=verification, min_points=16,
                           max_step=10.0)
    assert ok.ok and 0 < ok.certified_margin <= 0.4937 - 0.49 - 1e-3 + 1e-9


def test_segment_checks_agree_with_the_annulus_on_random_segments():
    clf = annulus_classifier(dim=2, r_inner=1.0, r_outer=2.0)
    g = torch.Generator().manual_seed(0)
    ang = torch.rand(40, generator=g, dtype=DTYPE) * 2 * math.pi
    rad = 1.05 + 0.9 * torch.rand(40, generator=g, dtype=DTYPE)
    pts = torch.stack([rad * ang.cos(), rad * ang.sin()], 1)
    a, b = pts[:20], pts[20:]
    res = check_segments(clf, a, b, torch.ones(20, dtype=torch.long), verification=3.0)
    t = torch.linspace(0, 1, 20001, dtype=DTYPE)
    for k, r in enumerate(res):
        seg = a[k] + t[:, None] * (b[k] - a[k])
        rr = seg.norm(dim=1)
        inside = bool(((rr > 1) & (rr < 2)).all())
        assert r.ok == inside, (k, r.reason)


# ---------------------------------------------------------------- Lipschitz bound
def test_activation_slopes_are_upper_bounds_and_tight():
    x = torch.linspace(-12, 12, 200001, dtype=DTYPE, requires_grad=True)
    for cls, bound in ACTIVATION_SLOPES.items():
        (d,) = torch.autograd.grad(cls()(x).sum(), x)
        top = float(d.abs().max())
        assert top <= bound + 1e-9 and top >= 0.99 * bound, cls


def small_chain(activation, pooling, seed=3):
    """A plain Sequential CNN (normalisation, conv, BatchNorm, activation, pooling, two linear layers), float64."""
    from geometry.classifier import Normalize

    g = torch.Generator().manual_seed(seed)
    act = {"softplus": nn.Softplus, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[activation]
    pool = {"avg": nn.AvgPool2d(2), "max": nn.MaxPool2d(2), "overlap": nn.MaxPool2d(3, stride=1)}[pooling]
    side_out = 3 if pooling != "overlap" else 4
    bn = nn.BatchNorm2d(4)
    net = nn.Sequential(Normalize([0.4], [0.3]), nn.Conv2d(1, 4, 3, padding=1), bn, act(), pool, nn.Flatten(),
                        nn.Linear(4 * side_out ** 2, 16), act(), nn.Dropout(0.1), nn.Linear(16, 4))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (1.0 if p.dim() > 1 else 0.1))
        bn.running_mean.copy_(torch.randn(4, generator=g) * 0.1)
        bn.running_var.copy_(torch.rand(4, generator=g) + 0.5)
    return Classifier(net.double(), (1, 6, 6), list("abcd"), (0.0, 1.0), name=f"chain_{activation}_{pooling}")


@pytest.mark.parametrize("activation,pooling", [("softplus", "avg"), ("relu", "max"), ("gelu", "avg"),
                                                ("tanh", "overlap")])
def test_weight_bound_exceeds_every_measured_slope(activation, pooling):
    clf = small_chain(activation, pooling)
    bound = margin_lipschitz_bound(clf)
    assert bound is not None and bound.pairwise.shape == (4, 4)
    x = torch.rand(256, 1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=DTYPE).requires_grad_(True)
    out = clf(x)
    worst = 0.0
    for i in range(4):
        for j in range(4):
            if i == j:
                continue
            (gr,) = torch.autograd.grad((out[:, i] - out[:, j]).sum(), x, retain_graph=True)
            measured = float(gr.flatten(1).norm(dim=1).max())
            assert measured <= bound.pairwise[i, j]
            worst = max(worst, bound.pairwise[i, j] / measured)
    assert worst < 1e4  # an upper bound, but not a vacuous one


def test_conv_fourier_bound_is_an_upper_bound_of_the_dense_norm():
    from geometry.paths import _conv_norm

    torch.manual_seed(0)
    for pad, stride in ((1, 1), (0, 1), (2, 2)):
        conv = nn.Conv2d(3, 5, 3, padding=pad, stride=stride).double()
        shape = (3, 7, 7)
        J = torch.func.jacrev(lambda z: conv(z.reshape(1, *shape)).flatten())(torch.zeros(147, dtype=DTYPE))
        exact = float(torch.linalg.matrix_norm(J.detach(), ord=2))
        b = _conv_norm(conv, shape)
        assert exact <= b + 1e-9 and b <= 1.6 * exact


def test_no_bound_for_non_chain_models():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x):
            return x + self.lin(x)

    clf = Classifier(nn.Sequential(Residual(), nn.Linear(4, 3)).double(), (4,), list("abc"), (0.0, 1.0))
    assert margin_lipschitz_bound(clf) is None
    with pytest.raises(GeometryError, match="local"):
        check_segments(clf, torch.zeros(1, 4), torch.ones(1, 4), [0], verification="bound")


# ---------------------------------------------------------------- bundled MNIST
def test_mnist_paths_are_verified_and_hold_under_dense_rescan():
    clf = zoo("mnist_lenet_gelu")
    x1, x2 = gallery_image(clf, 1, 0).tensor, gallery_image(clf, 1, 3).tensor
    p = connecting_path(clf, x1, x2)  # default: proven check with the weight-derived bound
    assert p.parameters["verification_used"] == "bound"
    assert p.connected and p.verified and p.guarantee == "proven" and p.n_anchors == 0
    assert p.statistics["rounding"] == "bounded" and 0 < p.statistics["rounding_bound"] < 1
    assert bool((dense_labels_along(clf, p, 3000) == 1).all())
    # a natural image and an adversarial one (a 5 pushed into class 7): the chord leaves the region
    from geometry.paths import adversarial_endpoint

    x7 = gallery_image(clf, 7, 4).tensor
    adv = adversarial_endpoint(clf, gallery_image(clf, 5, 11).tensor, 7)[0]
    q = connecting_path(clf, x7, adv, verification="local")
    assert q.statistics["chord_outside_fraction"] > 0
    assert q.connected and q.n_anchors >= 1
    assert not q.verified and q.guarantee == "sampled"
    assert bool((dense_labels_along(clf, q, 2000) == 7).all())
    assert q.statistics["length_ratio"] < 1.2  # nearly straight, as the paper reports


def test_many_pairs_statistics_on_mnist():
    clf = zoo("mnist_lenet_relu")
    ps = gallery_pairs(clf, 4, kind="natural", seed=1)
    assert len(ps.descriptions) == 4 and bool((clf.predict(ps.x1) == ps.labels).all())
    assert bool((clf.predict(ps.x2) == ps.labels).all())
    st = path_statistics(clf, ps.x1, ps.x2, descriptions=ps.descriptions, verification="local", group=2)
    s = st.summary()
    assert s["pairs"] == 4 and s["connected"] == sum(p.connected for p in st.paths)
    assert s["connected_fraction"] == s["connected"] / 4
    # local checks are sampled: every connected path is counted as sampled only, none as verified
    assert s["verified"] == 0 and s["proven"] == 0 and s["sampled_only"] == s["connected"]
    assert st.table()["guarantee"] == ["sampled" if p.connected else "none" for p in st.paths]
    assert sum(s["anchors_histogram"].values()) == s["connected"]
    assert len(st.table()["pair"]) == 4 and st.arrays()["anchors"].shape == (4,)
    with pytest.raises(GeometryError, match="pair kind"):
        gallery_pairs(clf, 2, kind="weird")


def test_batched_search_equals_one_by_one():
    clf = annulus_classifier(dim=2, r_inner=1.0, r_outer=2.0)
    x1 = torch.stack([_t(1.5, 0.2), _t(0.0, 1.5)])
    x2 = torch.stack([_t(-1.5, 0.2), _t(0.3, 1.6)])
    batch = connecting_paths(clf, x1, x2, verification=3.0)
    for k in range(2):
        one = connecting_path(clf, x1[k], x2[k], verification=3.0)
        assert one.n_anchors == batch[k].n_anchors
        assert torch.allclose(one.anchors, batch[k].anchors)


def test_path_plane_of_the_annulus():
    clf = annulus_classifier(dim=2, r_inner=1.0, r_outer=2.0)
    p = connecting_path(clf, _t(1.5, 0.2), _t(-1.5, 0.2), verification=3.0)
    pl = path_plane(clf, p, resolution=41, adaptive=False)
    assert np.allclose(pl.offsets, 0, atol=1e-9)  # in 2-D the plane is the whole space
    sec = pl.section
    A, B = np.meshgrid(sec.a, sec.b)
    origin = (p.x1 + p.x2).numpy() / 2
    u = sec.u.numpy() if hasattr(sec.u, "numpy") else sec.u
    pts = origin + A[..., None] * sec.u.numpy() + B[..., None] * sec.v.numpy()
    r = np.linalg.norm(pts, axis=-1)
    assert (sec.labels == ((r > 1) & (r < 2))).mean() > 0.999
    assert pl.path_ab.shape == (p.n_anchors + 2, 2) and u.shape == (2,)


# ---------------------------------------------------------------- CLI
def test_cli_path_json_fields(capsys):
    assert main(["path", "--image", "gallery:1:0", "--image2", "gallery:1:3", "--verification", "local",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for k in ("label", "connected", "verified", "anchors", "length_ratio", "max_chord_deviation",
              "chord_outside_fraction", "min_margin", "evaluations"):
        assert k in out
    assert out["label"] == 1 and out["connected"] is True and out["anchors"] == 0


def test_cli_path_adversarial_pairs_and_errors(capsys, tmp_path):
    save = tmp_path / "p.npz"
    assert main(["path", "--image", "gallery:7:4", "--adversarial-from", "gallery:5:11", "--verification", "local",
                 "--save", str(save)]) == 0
    text = capsys.readouterr().out
    assert "class 7" in text and "pushed into class 7" in text
    data = np.load(save)
    assert data["points"].shape[1:] == (1, 28, 28) and "chord_margin" in data
    assert main(["path", "--pairs", "2", "--verification", "local", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pairs"] == 2 and "connected_fraction" in out and len(out["table"]["pair"]) == 2
    assert main(["path", "--image", "gallery:1:0"]) == 2
    assert "--image2" in capsys.readouterr().err
    assert main(["path", "--image", "gallery:1:0", "--image2", "gallery:3:0"]) == 2
    assert "predicted as" in capsys.readouterr().err


# ---------------------------------------------------------------- proven versus sampled
class SlabNet(nn.Module):
    """Logits ``(0, q)`` with ``q = 1 + 0.2 x_0 - 2 relu(1 - |x_0 - c| / h)``: class 0 ("out") only in a slab
    about 0.9 h wide around x_0 = c (where the dip takes q below 0), class 1 elsewhere; scripted below."""

    def __init__(self, c: float, h: float):
        super().__init__()
        self.c = c
        self.h = h

    def forward(self, x):
        x = x.flatten(1)
        q = 1.0 + 0.2 * x[:, 0] - 2.0 * torch.relu(1.0 - (x[:, 0] - self.c).abs() / self.h)
        return torch.stack([torch.zeros_like(q), q], 1)


def _scripted_slab():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's own deprecation notice
        return torch.jit.script(SlabNet(0.4937, 3.4e-4))


def test_thin_slab_in_a_torchscript_model_passes_on_samples_but_is_not_proven(tmp_path, capsys):
    sm = _scripted_slab()
    clf = Classifier(sm, (1, 1, 2), ["out", "in"], WIDE_RANGE, name="slab")
    a, b = torch.tensor([0.0, 0.3]).reshape(1, 1, 2), torch.tensor([1.0, 0.3]).reshape(1, 1, 2)
    # the ground truth: a dense scan of the chord finds the slab (about 0.9 * 3.4e-4 of the chord)
    t = torch.linspace(0, 1, 100_001, dtype=torch.float64).reshape(-1, 1, 1, 1)
    outside = int((clf.predict((a.double() + t * (b - a).double()).float()) != 1).sum())
    assert 25 <= outside <= 35
    # no weight bound for TorchScript: auto falls back to the sampled check, which misses the slab...
    p = connecting_path(clf, a, b)
    assert p.parameters["verification_used"] == "local"
    assert p.connected and p.n_anchors == 0 and p.statistics["samples"] == 16
    # ...and says so: connected on samples, not verified, not proven
    assert not p.verified and p.guarantee == "sampled"
    assert p.statistics["guarantee_text"].startswith("connected on 16 samples, not proven")
    d = p.to_dict()
    assert d["verified"] is False and d["guarantee"] == "sampled" and "not proven" in d["guarantee_text"]
    # the CLI says it in words, and its JSON carries the same fields
    model = tmp_path / "slab.pt"
    sm.save(str(model))
    np.save(tmp_path / "a.npy", a.numpy())
    np.save(tmp_path / "b.npy", b.numpy())
    args = ["path", "--model", str(model), "--input-shape", "1,1,2", "--pixel-range=-100,100",
            "--classes", "out,in", "--image", str(tmp_path / "a.npy"), "--image2", str(tmp_path / "b.npy")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "connected on 16 samples, not proven" in out
    assert "verified" not in out.lower().replace("not verified", "") and "certified" not in out.lower()
    assert "proven lower bound" not in out and "estimated lower bound" in out
    assert main(args + ["--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["connected"] is True and js["verified"] is False and js["guarantee"] == "sampled"
    # a given slope bound that is a true bound (2 / h for the dip) finds the slab: nothing claimed
    (res,) = check_segments(clf, a, b, [1], verification=2.0 / 3.4e-4 + 0.2)
    assert not res.ok and res.reason == "label change" and abs(res.bad_t - 0.4937) < 2e-4


def huge_intermediate_net(dtype=torch.float32) -> Classifier:
    """``f_1 - f_0 = (x_0 + 2^30) - 2^30 + 10 = x_0 + 10`` through a hidden layer of size 2^30.

    Exact: class 1 where x_0 > -10. In float32, x_0 + 2^30 rounds to 2^30 for -32 <= x_0 < 64, so the
    computed margin is exactly 10 there: the float32 model never leaves class 1 on x_0 in [-20, 0]."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        net[0].bias.fill_(2.0 ** 30)
        net[2].weight.copy_(torch.tensor([[0.0, 0.0], [1.0, -1.0]]))
        net[2].bias.copy_(torch.tensor([0.0, 10.0]))
    return Classifier(net.to(dtype), (2,), ["out", "in"], WIDE_RANGE, name="huge_intermediate")


def test_float32_rounding_of_huge_activations_is_not_taken_for_a_proof():
    clf = huge_intermediate_net()
    x1, x2 = torch.tensor([[0.0, 0.0]]), torch.tensor([[-20.0, 0.0]])
    # the premise: float32 says class 1 along the whole chord with margin exactly 10; float64 says half of it is
    # outside (x_0 < -10)
    t = torch.linspace(0, 1, 100_001, dtype=torch.float64)[:, None]
    pts = x1.double() + t * (x2 - x1).double()
    assert bool((clf.predict(pts.float()) == 1).all())
    m32 = clf.logits(pts.float()).double()
    assert bool(((m32[:, 1] - m32[:, 0]) == 10).all())
    clf64 = clf.to(dtype=torch.float64)
    assert int((clf64.predict(pts) != 1).sum()) == 50_001  # x_0 <= -10 (a tie at -10 goes to class 0)
    # the old tolerance, tol = 32 eps (1 + max|logit|), accepted it: on the first grid (16 points, spacing 20/15)
    # every interval has g + g' = 20 > L D + 2 tol with the weight bound L = sqrt(2)
    L = margin_lipschitz_bound(clf).pairwise[1, 0]
    assert L == pytest.approx(math.sqrt(2))
    assert 20 > L * (20 / 15 + 2 * 4 * 1.2e-7 * 20) + 2 * 32 * 1.2e-7 * 11
    # now: the rounding bound of the 2^30 layer (~1.5e3) swallows the margin, so the segment is decided in
    # float64, which finds the label change where it is
    (res,) = check_segments(clf, x1, x2, [1], verification="bound")
    assert not res.ok and res.reason == "label change" and res.precision == "float64"
    assert res.bad_t == pytest.approx(8 / 15)  # the first grid point past x_0 = -10
    # the part of the chord that is really inside is proven, in float64
    (inside,) = check_segments(clf, x1, torch.tensor([[-5.0, 0.0]]), [1], verification="bound")
    assert inside.ok and inside.proven and inside.reason == "proven" and inside.precision == "float64"
    assert 0 < inside.certified_margin <= 5
    # without the float64 re-check the bound cannot prove anything: the segment passes on samples only
    (f32,) = check_segments(clf, x1, torch.tensor([[-5.0, 0.0]]), [1], verification="bound", precise_fallback=False)
    assert f32.ok and not f32.proven and f32.reason == "sampled" and f32.rounding_bound > 1000
    # the path search claims nothing: no proven path, and the stop names the float64 label change
    p = connecting_path(clf, x1, x2, max_anchors=2)
    assert not p.connected and not p.verified
    assert p.stopped["check"] == "label change" and p.stopped["check_precision"] == "float64"
    # a sampled check of the float32 model passes, and is reported as sampled, not proven
    q = connecting_path(clf, x1, x2, verification="local")
    assert q.connected and not q.verified and q.guarantee == "sampled"


@pytest.mark.parametrize("activation,pooling", [("softplus", "avg"), ("relu", "max"), ("gelu", "avg"),
                                                ("tanh", "overlap")])
def test_rounding_bound_covers_the_float32_error(activation, pooling):
    """|computed float32 margin - float64 margin| <= the bound, at random points (the float64 value is exact to
    ~1e-16 relative, far below the float32 error); and the bound is not vacuous."""
    clf = small_chain(activation, pooling).to(dtype=torch.float32)
    chain = margin_lipschitz_bound(clf).chain
    x = torch.rand(512, 1, 6, 6, generator=torch.Generator().manual_seed(7)) * 40 - 20  # large activations too
    out32, E, A, eps_last = chain.forward(x)
    out64, *_ = chain.forward(x, precise=True)
    labels = np.zeros(512, dtype=np.int64)
    for i in range(4):
        labels[:] = i
        tol = chain.tolerances(labels, E.numpy(), A.numpy(), eps_last)
        g32 = out32[:, i:i + 1].numpy() - out32.numpy()
        g64 = out64[:, i:i + 1].numpy() - out64.numpy()
        err = np.abs(g32 - g64)
        assert (err <= tol).all()
        assert np.median(tol[:, [j for j in range(4) if j != i]]) < 1e-2 * np.abs(g64).max()


def test_rounding_bound_of_the_huge_layer_in_both_precisions():
    clf = huge_intermediate_net()
    chain = margin_lipschitz_bound(clf).chain
    x = torch.tensor([[-7.0, 3.0], [5.0, -1.0]])
    out32, E, A, eps_last = chain.forward(x)
    tol32 = chain.tolerances(np.array([1, 1]), E.numpy(), A.numpy(), eps_last)[:, 0]
    err32 = np.abs((out32[:, 1] - out32[:, 0]).numpy() - (x[:, 0].double() + 10).numpy())
    assert (err32 <= tol32).all() and err32.max() >= 5  # the float32 error is real (7 and 5) and covered
    out64, E64, A64, eps64 = chain.forward(x, precise=True)
    tol64 = chain.tolerances(np.array([1, 1]), E64.numpy(), A64.numpy(), eps64)[:, 0]
    assert np.allclose((out64[:, 1] - out64[:, 0]).numpy(), x[:, 0].double().numpy() + 10, atol=0)
    assert (tol64 < 1e-5).all() and (tol64 > 0).all()


def test_reduced_precision_arithmetic_gets_its_own_eps():
    from geometry.lipschitz import affine_eps

    cpu = torch.device("cpu")
    assert affine_eps(cpu, torch.float32, False) == torch.finfo(torch.float32).eps
    assert affine_eps(cpu, torch.float64, True) == torch.finfo(torch.float64).eps
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")  # may use bfloat16
        assert affine_eps(cpu, torch.float32, False) == 2.0 ** -7
        torch.set_float32_matmul_precision("high")  # may use TF32
        assert affine_eps(cpu, torch.float32, False) == 2.0 ** -10
    finally:
        torch.set_float32_matmul_precision(before)
    # cuDNN convolutions run float32 in TF32 unless told otherwise (read from the switch, no GPU needed)
    tf32 = bool(torch.backends.cudnn.allow_tf32)
    assert (affine_eps(torch.device("cuda"), torch.float32, True) == 2.0 ** -10) == tf32


def test_statistics_count_proven_and_sampled_paths_apart(capsys):
    clf = annulus_classifier(dim=2, r_inner=1.0, r_outer=2.0)
    x1 = torch.stack([_t(1.5, 0.2), _t(0.0, 1.5), _t(1.2, 1.2)])
    x2 = torch.stack([_t(-1.5, 0.2), _t(0.3, 1.6), _t(1.25, 1.1)])
    sampled = path_statistics(clf, x1, x2, verification="local").summary()
    assert sampled["connected"] == 3 and sampled["verified"] == 0 and sampled["sampled_only"] == 3
    given = path_statistics(clf, x1, x2, verification=3.0).summary()
    assert given["connected"] == 3 and given["verified"] == 3 and given["given_bound"] == 3
    assert given["proven"] == 0 and given["sampled_only"] == 0
    from geometry.commands.path import text

    line = text({**sampled, "model": "annulus", "table": {}})
    assert "verified paths: 0/3" in line and "3 connected on samples only (not proven)" in line
    assert "verified paths: 3/3" in text({**given, "model": "annulus", "table": {}})


def test_page_wording_says_proven_only_for_proofs():
    from dashboard.figures.paths import margin_figure, path_trace_name, verdict_message

    clf = annulus_classifier(dim=2, r_inner=1.0, r_outer=2.0)
    x1, x2 = _t(1.5, 0.2), _t(-1.5, 0.2)
    sampled = connecting_path(clf, x1, x2, verification="local")
    kind, msg = verdict_message(sampled, clf.class_names)
    assert kind == "info" and "not proven" in msg
    assert not any(w in msg.lower() for w in ("verified", "certified", "proven path"))
    assert path_trace_name(sampled) == "path (sampled, not proven)"
    assert "path (sampled, not proven)" in [t.name for t in margin_figure(sampled, clf.class_names).data]
    given = connecting_path(clf, x1, x2, verification=3.0)
    kind, msg = verdict_message(given, clf.class_names)
    assert kind == "success" and msg.startswith("Verified path in class shell") and "if 3 bounds the slope" in msg
    assert path_trace_name(given) == "path proven under the given slope bound"
    failed = connecting_path(clf, x1, x2, verification=3.0, max_anchors=0)
    kind, msg = verdict_message(failed, clf.class_names)
    assert kind == "warning" and "No verified path found" in msg
    assert path_trace_name(failed) == "partial path (search stopped)"
