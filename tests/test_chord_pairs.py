"""Pairs whose straight chord leaves the class (geometry.paths.chord_scan / chord_leaving_pairs), checked
against an annulus whose chords are known in closed form, and on a bundled model against direct evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from analytic import annulus_classifier
from conftest import zoo

from geometry.errors import GeometryError
from geometry.images import gallery_image
from geometry.paths import chord_leaving_pairs, chord_scan, gallery_chord_scan, gallery_class_leaving_pairs

R_IN, R_OUT, R = 1.0, 2.0, 1.5   # shell 1 < |x| < 2; points on the circle of radius 1.5
N_ANGLES = 12                    # 30 degrees apart
STEPS = 400


def _points():
    ang = 2 * math.pi * np.arange(N_ANGLES) / N_ANGLES
    ring = np.stack([R * np.cos(ang), R * np.sin(ang)], axis=1)
    extra = np.array([[0.0, 0.0], [3.0, 0.0]])  # class 0: the centre (inside the hole) and a point beyond the shell
    return torch.as_tensor(np.concatenate([ring, extra])), np.array([1] * N_ANGLES + [0, 0])


def _chord_outside(gap: float) -> float:
    """Fraction of the chord between two points of the circle of radius R, ``gap`` radians apart, inside the hole."""
    h = R * math.cos(gap / 2)          # the chord's closest approach to the centre
    if h >= R_IN:
        return 0.0
    return math.sqrt(R_IN ** 2 - h ** 2) / (R * math.sin(gap / 2))


def test_annulus_pairs_match_the_closed_form():
    clf = annulus_classifier(dim=2, r_inner=R_IN, r_outer=R_OUT)
    x, y = _points()
    scan = chord_scan(clf, x, y, steps=STEPS)
    # every same-class pair is a candidate, no mixed pair
    assert scan.candidates == N_ANGLES * (N_ANGLES - 1) // 2 + 1
    assert all(y[i] == y[j] for i, j in zip(scan.first, scan.second))
    expected = {}
    for i in range(N_ANGLES):
        for j in range(i + 1, N_ANGLES):
            gap = 2 * math.pi * min(j - i, N_ANGLES - (j - i)) / N_ANGLES
            expected[(i, j)] = _chord_outside(gap)
    expected[(N_ANGLES, N_ANGLES + 1)] = 1 / 3   # 0 -> 3 crosses the shell for t in (1/3, 2/3)
    got = {(int(i), int(j)): float(f) for i, j, f in zip(scan.first, scan.second, scan.outside_fraction)}
    assert got.keys() == expected.keys()
    for key, frac in expected.items():
        assert abs(got[key] - frac) <= 2 / STEPS, (key, got[key], frac)
    leaving = chord_leaving_pairs(clf, x, y, steps=STEPS)
    assert {(int(i), int(j)) for i, j in zip(leaving.first, leaving.second)} == {k for k, f in expected.items() if f > 0}
    # gaps of 120, 150 and 180 degrees leave (closest approach below 1), 30-90 degrees stay
    assert len(leaving) == N_ANGLES * 3 - N_ANGLES // 2 + 1
    assert np.all(np.diff(leaving.outside_fraction) <= 0)
    assert leaving.outside_fraction[0] == pytest.approx(1 / R, abs=2 / STEPS)        # diametrically opposite points
    opposite = leaving.first[0], leaving.second[0]
    assert (opposite[1] - opposite[0]) == N_ANGLES // 2
    assert leaving.first_exit[0] == pytest.approx((1 - R_IN / R) / 2, abs=1 / STEPS)  # enters the hole there
    assert set(leaving.exit_label.tolist()) == {0, 1}
    assert np.all(leaving.exit_label != leaving.labels)
    stay = scan.staying()
    assert len(stay) + len(leaving) == scan.candidates and np.all(stay.outside_fraction == 0)
    assert np.all(np.isnan(stay.first_exit)) and np.all(stay.exit_label == -1)
    assert leaving.leaving(3).outside_fraction.tolist() == leaving.outside_fraction[:3].tolist()


def test_first_and_longest_candidates():
    clf = annulus_classifier(dim=2, r_inner=R_IN, r_outer=R_OUT)
    x, y = _points()
    scan = chord_scan(clf, x, y, first=0, steps=STEPS)
    assert scan.first.tolist() == [0] * (N_ANGLES - 1) and sorted(scan.second.tolist()) == list(range(1, N_ANGLES))
    assert sorted(chord_leaving_pairs(clf, x, y, first=0, steps=STEPS).second.tolist()) == [4, 5, 6, 7, 8]
    longest = chord_scan(clf, x, y, steps=8, max_candidates=7, order="longest")
    # the longest chords: the 6 diameters (length 3) and the class-0 pair (length 3) -- all leave
    assert longest.candidates == 7 and np.all(longest.outside_fraction > 0)
    random_pick = chord_scan(clf, x, y, steps=8, max_candidates=7, order="random", seed=3)
    assert random_pick.candidates == 7


def test_bad_arguments_are_refused():
    clf = annulus_classifier(dim=2, r_inner=R_IN, r_outer=R_OUT)
    x, y = _points()
    with pytest.raises(GeometryError, match="labels"):
        chord_scan(clf, x, y[:-1])
    with pytest.raises(GeometryError, match="steps"):
        chord_scan(clf, x, y, steps=0)
    with pytest.raises(GeometryError, match="order"):
        chord_scan(clf, x, y, order="shortest")
    with pytest.raises(GeometryError, match="first"):
        chord_scan(clf, x, y, first=99)


def test_gallery_scans_on_a_bundled_model():
    clf = zoo("mnist_lenet_gelu")
    scan = gallery_chord_scan(clf, gallery_image(clf, 7, 4).tensor, 7)
    assert 4 not in scan.second.tolist()              # the image itself is no partner
    leaving = scan.leaving()
    assert len(leaving) >= 1 and len(scan.staying()) >= 1
    # the top pair's chord, evaluated directly, leaves class 7 at the reported fraction
    x1, x2 = gallery_image(clf, 7, 4).tensor, gallery_image(clf, 7, int(leaving.second[0])).tensor
    t = (torch.arange(scan.steps, dtype=x1.dtype) + 0.5) / scan.steps
    pred = clf.predict(x1[None] + t[:, None, None, None] * (x2 - x1)[None]).numpy()
    assert float(np.mean(pred != 7)) == pytest.approx(float(leaving.outside_fraction[0]))
    pairs = gallery_class_leaving_pairs(clf, 0, max_candidates=300)
    assert len(pairs) >= 1 and np.all(pairs.labels == 0) and np.all(pairs.outside_fraction > 0)
