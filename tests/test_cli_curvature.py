"""CLI ``deepfool`` and ``curvature``: stable JSON fields, same numbers as the library, model files, errors."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, zoo

CLASSES = ",".join(str(i) for i in range(10))


class Done:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli(*args, check=True, subprocess_run=False):
    """``python -m geometry ARGS``: in this process (fast) or, with ``subprocess_run``, as a real process."""
    if subprocess_run:
        proc = subprocess.run([sys.executable, "-m", "geometry", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
    else:
        from geometry.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
        proc = Done(code, out.getvalue(), err.getvalue())
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    """A held-out MNIST 3 as .npy (keeps the subprocesses from re-reading the dataset)."""
    from geometry.images import gallery_image

    img = gallery_image(zoo("mnist_lenet_gelu"), 3, 0)
    path = tmp_path_factory.mktemp("img") / "three.npy"
    np.save(path, img.tensor.numpy())
    return path


def test_deepfool_json(image_file, tmp_path):
    save = tmp_path / "df.npz"
    out = json.loads(run_cli("deepfool", "--model", "mnist_lenet_relu", "--image", str(image_file), "--json",
                             "--save", str(save)).stdout)
    for field, kind in [("label", int), ("boundary_label", int), ("perturbation_norm", float), ("residual", float),
                        ("iterations", int), ("converged", bool), ("clipped", bool)]:
        assert isinstance(out[field], kind), field
    assert out["label"] == 3 and out["boundary_label"] != 3 and out["converged"] and out["perturbation_norm"] > 0
    with np.load(save) as z:
        adv = z["point"]
        assert adv.shape == (1, 28, 28) and np.allclose(z["perturbation"], adv - z["image"], atol=1e-6)
    assert int(zoo("mnist_lenet_relu").predict(torch.from_numpy(adv))[0]) == out["boundary_label"]
    onb = json.loads(run_cli("deepfool", "--model", "mnist_lenet_relu", "--image", str(image_file), "--json",
                             "--on-boundary").stdout)
    assert onb["residual"] <= 1e-4 and onb["perturbation_norm"] < out["perturbation_norm"]


def test_curvature_json_matches_the_library(image_file, tmp_path):
    from geometry.curvature import principal_curvatures

    save = tmp_path / "curv.npz"
    out = json.loads(run_cli("curvature", "--model", "mnist_lenet_gelu", "--image", str(image_file), "--k", "4",
                             "--json", "--save", str(save)).stdout)
    for field in ("label", "boundary_label", "boundary_distance", "gradient_norm", "estimator", "step", "curvatures",
                  "hvp_count"):
        assert field in out, field
    assert out["estimator"] == "exact" and out["step"] is None and len(out["curvatures"]) == 8
    assert out["curvatures"] == sorted(out["curvatures"], reverse=True)
    clf = zoo("mnist_lenet_gelu")
    lib = principal_curvatures(clf, torch.from_numpy(np.load(image_file)), k=4)
    assert out["label"] == lib.label and out["boundary_label"] == lib.boundary_label
    assert np.allclose(out["curvatures"], lib.curvatures, rtol=1e-4, atol=1e-5)  # same signed spectrum
    assert abs(out["boundary_distance"] - lib.boundary_distance) < 1e-5
    with np.load(save) as z:
        assert z["directions"].shape == (8, 1, 28, 28) and z["boundary_point"].shape == (1, 28, 28)
        assert np.allclose(z["curvatures"], out["curvatures"])


def test_curvature_fd_on_relu_and_torchscript_file(image_file, tmp_path):
    relu = zoo("mnist_lenet_relu")
    exact = json.loads(run_cli("curvature", "--model", "mnist_lenet_relu", "--image", str(image_file), "--k", "2",
                               "--estimator", "exact", "--json").stdout)
    assert all(c == 0 for c in exact["curvatures"]) and "piecewise linear" in exact["warning"]
    # asked for by name it still answers, without spending a Hessian-vector product on the zeros
    assert exact["estimator"] == "exact" and exact["hvp_count"] == 0 and len(exact["curvatures"]) == 4
    assert "zero almost everywhere" in exact["warning"] and exact["converged"]
    # the same network as a TorchScript file, with the facts the file does not carry on the command line
    path = tmp_path / "relu.pt"
    torch.jit.save(torch.jit.trace(relu.module, torch.rand(1, 1, 28, 28)), str(path))
    args = ("--model", str(path), "--input-shape", "1,28,28", "--classes", CLASSES, "--pixel-range", "0,1",
            "--image", str(image_file), "--json")
    fd = json.loads(run_cli("curvature", *args, "--estimator", "fd", "--k", "2", "--max-iter", "40",
                            "--lanczos").stdout)
    assert fd["estimator"] == "fd" and fd["step"] == pytest.approx(10 * 28 / 512)
    assert fd["label"] == 3 and max(abs(c) for c in fd["curvatures"]) > 1e-2 and fd["hvp_count"] <= 40
    # by default (d = 784 <= 1024) fd takes the dense symmetrised spectrum: d - 1 curvatures, converged
    full = json.loads(run_cli("curvature", *args, "--estimator", "fd").stdout)
    assert len(full["curvatures"]) == 783 and full["hvp_count"] == 784 and full["converged"]
    assert full["curvatures"] == sorted(full["curvatures"], reverse=True)
    df = json.loads(run_cli("deepfool", *args, subprocess_run=True).stdout)  # once as a real process
    assert df["label"] == 3 and df["converged"]


def test_errors_are_one_line(image_file):
    for args, needle in [(("curvature", "--image", str(image_file), "--step", "0.1"), "--estimator fd"),
                         (("curvature", "--image", str(image_file), "--target", "cat"), "neither a class index"),
                         (("deepfool", "--image", str(image_file), "--target", "12"), "0..9"),
                         (("deepfool", "--image", str(image_file), "--candidates", "1"), "candidates")]:
        proc = run_cli(*args, check=False, subprocess_run=args[-1] == "1")
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr


def test_curvature_estimator_auto_is_the_default(image_file):
    """No --estimator: fd on the piecewise-linear ReLU net (non-zero curvatures, no zero warning), exact on the
    smooth GELU net; the JSON fields are the same and name the estimator used."""
    relu = json.loads(run_cli("curvature", "--model", "mnist_lenet_relu", "--image", str(image_file), "--k", "2",
                              "--lanczos", "--max-iter", "40", "--json").stdout)
    assert relu["estimator"] == "fd" and relu["step"] == pytest.approx(10 * 28 / 512)
    assert max(abs(c) for c in relu["curvatures"]) > 1e-2
    assert not relu["warning"] or "piecewise linear" not in relu["warning"]
    explicit = json.loads(run_cli("curvature", "--model", "mnist_lenet_relu", "--image", str(image_file), "--k", "2",
                                  "--lanczos", "--max-iter", "40", "--estimator", "auto", "--json").stdout)
    assert explicit["curvatures"] == relu["curvatures"]
    gelu = json.loads(run_cli("curvature", "--model", "mnist_lenet_gelu", "--image", str(image_file), "--k", "2",
                              "--json").stdout)
    assert gelu["estimator"] == "exact" and gelu["step"] is None and gelu["hvp_count"] > 0
    assert gelu["curvatures"][0] > 0 > gelu["curvatures"][-1]
    # --step with auto is fine where auto means fd, and refused (one line) where it means exact
    fd = json.loads(run_cli("curvature", "--model", "mnist_lenet_relu", "--image", str(image_file), "--k", "2",
                            "--lanczos", "--max-iter", "40", "--step", "0.3", "--json").stdout)
    assert fd["estimator"] == "fd" and fd["step"] == pytest.approx(0.3)
    proc = run_cli("curvature", "--model", "mnist_lenet_gelu", "--image", str(image_file), "--step", "0.3",
                   check=False)
    assert proc.returncode == 2 and "--estimator fd" in proc.stderr
