"""Regression tests for bugs found in the correctness review (each failed before its fix)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analytic import sphere_classifier
from geometry import curvature as curvature_mod
from geometry.curvature import curvature_profile, principal_curvatures


def _sphere_result():
    clf = sphere_classifier(dim=4, R=1.0)
    x = torch.tensor([0.5, 0.1, 0.0, 0.0], dtype=torch.float64)
    return clf, principal_curvatures(clf, x)


def test_curvature_profile_builds_t_on_the_model_device(monkeypatch):
    """curvature_profile created its t grid on the CPU whatever the model's device, so on CUDA the
    boundary point (on the GPU) was added to a CPU tensor. Simulate "another device" on a CPU-only
    machine: a linspace called without device= lands on the meta device."""
    clf, res = _sphere_result()
    real = torch.linspace

    def linspace(*args, **kw):
        kw.setdefault("device", "meta")
        return real(*args, **kw)

    monkeypatch.setattr(curvature_mod.torch, "linspace", linspace)
    out = curvature_profile(clf, res, n=9)
    assert isinstance(out["t"], np.ndarray) and out["t"].shape == (9,)
    # the sphere's F along a tangent is exactly kappa |g| t^2 / 2 near z (to second order): same sign
    assert np.all(np.sign(out["F"][:, [0, -1]]) == np.sign(out["quadratic"][:, [0, -1]]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_curvature_profile_on_cuda():
    clf, _ = _sphere_result()
    clf = clf.to("cuda")
    res = principal_curvatures(clf, torch.tensor([0.5, 0.1, 0.0, 0.0], dtype=torch.float64))
    out = curvature_profile(clf, res, n=9)
    assert out["F"].shape == (2, 9) and isinstance(out["t"], np.ndarray)
