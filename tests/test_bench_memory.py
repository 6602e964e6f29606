"""docs/scale.md's measured table is generated from the committed bench/results/bench_memory.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import bench_memory  # noqa: E402


def test_doc_table_is_the_rendering_of_the_results():
    res = json.loads(bench_memory.RESULTS.read_text())
    text = (ROOT / "docs" / "scale.md").read_text()
    block = text[text.index(bench_memory.BEGIN) + len(bench_memory.BEGIN):text.index(bench_memory.END)]
    assert block == "\n" + bench_memory.render(res)


def test_results_cover_the_three_sizes_and_every_analysis():
    res = json.loads(bench_memory.RESULTS.read_text())
    for d in (784, 3072, 150528):
        names = {r["analysis"].split(" (")[0].split(" normal")[0] for r in res["rows"] if r["d"] == d}
        assert {"boundary point", "curvature exact", "curvature fd", "section", "connecting path"} <= names, d
    for r in res["rows"]:
        assert r["seconds"] > 0
        if "basis_mb" in r and r["analysis"].startswith("curvature exact") and r["d"] == 150528:
            assert r["basis_mb"] < 30  # 2 b d float32 numbers, b = 24 at k = 5
