"""The load test's small version (tests/loadtest.py): 3 real Chromium sessions at once on two bundled models
(two sessions share the 8x8 MLP with different images), while the hostile corpus of tests/hostile.py is
uploaded through the sidebar. About 4 minutes on 2 CPU cores; `make loadtest` runs the 8-session version."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from loadtest import CHROMIUM, PAGE_KEYS

SESSIONS = 3


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make test`, which installs Debian's chromium")
    out = tmp_path_factory.mktemp("loadtest") / "loadtest.json"
    cmd = [sys.executable, str(ROOT / "tests" / "loadtest.py"), "--sessions", str(SESSIONS),
           "--models", "digits_mlp,mnist_lenet_gelu", "--page-timeout", "150", "--alone-timeout", "150",
           "--hostile-timeout", "150", "--hostile-lanes", "2", "--deadline", "420", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    tail = f"\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    assert out.exists(), f"the load test wrote no JSON (exit {proc.returncode}){tail}"
    r = json.loads(out.read_text())
    r["_exit"], r["_tail"] = proc.returncode, tail
    return r


def test_every_invariant_holds(result):
    assert "fatal" not in result, result.get("fatal", "") + result["_tail"]
    failed = {k: v["detail"] for k, v in result["invariants"].items() if not v["ok"]}
    assert not failed, json.dumps(failed, indent=1, default=str)[:6000] + result["_tail"]
    assert result["ok"] and result["_exit"] == 0, result["_tail"]


def test_every_session_walked_every_page_with_its_own_image(result):
    sessions = result["load"]["sessions"]
    assert len(sessions) == SESSIONS
    assert len({(s["model"], s["cls"], s["index"]) for s in sessions}) == SESSIONS  # all different images
    assert len({s["model"] for s in sessions}) == 2
    for s in sessions:
        assert s["failure"] is None, s["failure"]
        assert list(s["pages"]) == PAGE_KEYS
        for key, page in s["pages"].items():
            assert page["identity_ok"], (s["id"], key, page["identity_problems"])
            assert page["errors"] == [] and page["exceptions"] == [] and not page["traceback"], (s["id"], key, page)
            assert page["figures"] >= 2 and page["seconds"] > 0, (s["id"], key, page)
            assert page["url_path"] == "/" + key  # the lesson is the root; every page walked has its own path


def test_page_times_under_load_are_measured_against_each_page_alone(result):
    for key in PAGE_KEYS:
        p = result["pages"][key]
        assert p["completed"] == SESSIONS, (key, p)
        assert all(v and v > 0 for v in p["alone_s"].values()), (key, p)
        assert 0 < p["load_p50_s"] <= p["load_p95_s"] <= 150, (key, p)
        assert p["ratio_p50"] > 0 and p["ratio_p95"] >= p["ratio_p50"], (key, p)


def test_hostile_uploads_are_refused_and_no_payload_ran(result):
    h = result["load"]["hostile"]
    files = {x["file"] for x in h}
    assert {"pickle_payload.pt", "native.pt2", "huge_sidecar.safetensors", "vit_bomb.safetensors", "slow.pt",
            "int_logits.pt", "batch_one.pt", "complex.npy", "declared_huge.pt2"} <= files
    assert [x for x in h if x["outcome"] != "refused"] == []
    assert all(x["messages"] and "Traceback" not in " ".join(x["messages"]) for x in h)
    assert result["errors"]["hostile_refusals"] == len(h)
    assert result["errors"]["count"] == 0, result["errors"]["texts"]
    assert result["hostile"]["payload_ran"] == []


def test_server_memory_was_sampled_and_it_still_answers(result):
    for phase in ("alone", "load"):
        s = result["server"][phase]
        assert not s["died"] and s["health_at_end"], s
        assert s["samples"] > 10 and 100 < s["peak_rss_mb"] < 1024 * s["memory_limit_gb"], s
        assert s["peak_children_rss_mb"] >= 0 and s["max_children"] >= 0
    assert result["invariants"]["browser_traffic_local_only"]["ok"]  # requests off 127.0.0.1 were aborted
