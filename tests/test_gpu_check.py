"""scripts/gpu_check.py: the CPU smoke test of the GPU check (CUDA parts skipped and reported as skipped)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check  # noqa: E402

ANALYSES = ["forward", "boundary", "curvature exact", "curvature fd", "section", "path", "subspace", "detector score"]


def test_quick_run_on_this_machine(tmp_path):
    out = tmp_path / "gpu.json"
    doc = tmp_path / "gpu.md"
    doc.write_text(f"# GPU\n\nbefore\n{gpu_check.BEGIN}\nold\n{gpu_check.END}\nafter\n")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--quick", "--json", str(out),
                           "--doc", str(doc)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    models = sorted({r["model"] for r in res["rows"]})
    assert models == ["mnist_lenet_gelu", "resnet18 3x32x32"]
    for m in models:
        assert [r["analysis"] for r in res["rows"] if r["model"] == m] == ANALYSES
    for r in res["rows"]:
        assert r["cpu_s"] > 0
        if r["unit"]:
            assert r["cpu_work"] > 0
    assert res["cuda"] == torch.cuda.is_available()
    text = doc.read_text()
    assert text.startswith("# GPU\n\nbefore\n") and text.endswith(f"{gpu_check.END}\nafter\n") and "old" not in text
    if not res["cuda"]:
        assert all(r["status"] == "cuda skipped (no CUDA device)" and "cuda_s" not in r for r in res["rows"])
        assert gpu_check.NO_GPU in proc.stdout and gpu_check.NO_GPU in text
    else:
        assert all(r["status"] == "ok" for r in res["rows"]) and not res["failures"]


def test_agreement_rules():
    cpu = {"value": np.array([2.0, 0.5, -1.0])}
    assert gpu_check.compare("curvature exact", cpu, {"value": np.array([2.0, 0.5 + 1e-3, -1.0])})[0]
    assert not gpu_check.compare("curvature exact", cpu, {"value": np.array([2.0, 0.5 + 1e-2, -1.0])})[0]
    assert gpu_check.compare("curvature fd", cpu, {"value": np.array([2.0, 0.5 + 5e-2, -1.0])})[0]
    assert not gpu_check.compare("curvature exact", cpu, {"value": np.array([2.0, 0.5])})[0]
    grid = np.zeros((10, 10), dtype=np.int64)
    flipped = grid.copy()
    flipped[0, 0] = 1
    assert gpu_check.compare("section", {"value": grid}, {"value": flipped})[0]       # 99% alike
    flipped[0, 1] = 1
    assert not gpu_check.compare("section", {"value": grid}, {"value": flipped})[0]   # 98%
    assert not gpu_check.compare("path", {"value": np.array([1.0])}, {"value": np.array([0.0])})[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_timer_synchronises_and_reads_cuda_memory():
    dev = torch.device("cuda")
    with gpu_check.Timer(dev) as t:
        a = torch.ones(1024, 1024, device=dev)
        (a @ a).sum().item()
    assert t.seconds > 0 and t.mb >= 4
