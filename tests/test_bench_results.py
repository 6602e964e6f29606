"""bench/_results.py: interleaved rounds, paired ratios and the results file the README tables are generated from
(no timing is asserted: only the bookkeeping)."""

from __future__ import annotations

import json

import pytest

from bench._results import Results, interleave, paired_ratio, spread


def test_interleave_rotates_the_order_and_times_every_round():
    calls = []
    methods = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    t = interleave(methods, 3, warmup=False, repeat={"a": 2})
    assert calls == ["a", "a", "b", "c", "b", "c", "a", "a", "c", "a", "a", "b"]
    assert {k: len(v) for k, v in t.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(x >= 0 for v in t.values() for x in v)
    with pytest.raises(ValueError):
        interleave(methods, 0)


def test_paired_ratio_pairs_rounds():
    r = paired_ratio([2.0, 9.0, 4.0], [1.0, 3.0, 4.0])
    assert r["values"] == [2.0, 3.0, 1.0] and r["median"] == 2.0 and (r["min"], r["max"]) == (1.0, 3.0)
    with pytest.raises(ValueError):
        paired_ratio([1.0], [1.0, 2.0])
    assert spread([3, 1, 2])["median"] == 2


def test_results_file(tmp_path):
    rec = Results("bench_demo", 3, {"images": 5})
    m = rec.add("x", "demo", methods={"slow": [2.0, 4.0, 6.0], "fast": [1.0, 1.0, 2.0]}, ratio=("slow", "fast"),
                ratio_meaning="speed-up", headline=True)
    assert m["ratio"]["median"] == 3.0 and m["ratio"]["of"] == "slow / fast"
    with pytest.raises(ValueError):
        rec.add("x", "again")
    d = json.loads(rec.write(tmp_path / "r.json").read_text())
    assert d["bench"] == "bench_demo" and d["rounds"] == 3 and d["settings"] == {"images": 5}
    assert {"cpu", "cores", "torch", "torch_threads"} <= set(d["machine"]) and "commit" in d["git"] and d["date"]
    assert d["measures"]["x"]["methods"]["slow"]["median"] == 4.0 and d["measures"]["x"]["headline"]
