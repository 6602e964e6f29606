"""The CLI shell: predict prints stable JSON; errors are one line and a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def run_cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "geometry", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_predict_json():
    out = json.loads(run_cli("predict", "--model", "mnist_lenet_relu", "--image", "gallery:6:3", "--json").stdout)
    assert out["label"] == 6 and out["true_label"] == 6 and out["device"] == "cpu"
    assert len(out["top"]) == 5 and abs(sum(t["probability"] for t in out["top"]) - 1) < 0.05


def test_errors_are_one_clear_line(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    for args, needle in [(("predict", "--model", "nosuch"), "neither a bundled model"),
                         (("predict", "--image", str(bad)), "not a readable PNG"),
                         (("predict", "--image", "gallery:3:999"), "index must be")]:
        proc = run_cli(*args, check=False)
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_usage_errors_and_verbose_flag():
    from geometry import cli

    parser = cli.build_parser()
    assert parser.parse_args(["-v", "predict"]).verbose is True
    assert parser.parse_args(["predict", "--verbose"]).verbose is True
    assert parser.parse_args(["predict"]).verbose is False
    proc = run_cli("predict", "--top", "many", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: argument --top: invalid int value: 'many'")
    assert "usage:" not in proc.stderr and "--help" in proc.stderr
