"""Benchmark of connecting paths: model evaluations and time per path, and how they grow with the anchor
budget; proven (weight-bound) against sampled (local slope) checks; batched pairs against one by one.

    .venv/bin/python bench/bench_paths.py [--model mnist_lenet_gelu] [--pairs 10] [--quick]

Prints ratio tables measured in this one run (times depend on the machine and its load; evaluation
counts do not). Never used as a timed test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from geometry.loading import load_classifier  # noqa: E402
from geometry.paths import connecting_path, gallery_pairs, margin_lipschitz_bound, path_statistics  # noqa: E402


def run(clf, ps, budget, verification):
    t0 = time.perf_counter()
    st = path_statistics(clf, ps.x1, ps.x2, label=ps.labels, max_anchors=budget, verification=verification)
    sec = time.perf_counter() - t0
    n = len(st.paths)
    return {"connected": sum(p.connected for p in st.paths) / n,
            "proven": sum(p.verified for p in st.paths) / n,
            "anchors": float(np.mean([p.n_anchors for p in st.paths if p.connected] or [np.nan])),
            "evals": float(np.mean([p.evaluations for p in st.paths])),
            "evals_max": int(max(p.evaluations for p in st.paths)),
            "sec": sec / n}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mnist_lenet_gelu")
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="fewer budgets and pairs")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs for the batching comparison")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clf = load_classifier(args.model, device="auto")
    n = 4 if args.quick else args.pairs
    budgets = [0, 2, 16] if args.quick else [0, 1, 2, 4, 8, 16]
    t0 = time.perf_counter()
    bound = margin_lipschitz_bound(clf)
    print(f"model {clf.name} on {clf.device.type}, torch threads {torch.get_num_threads()}; weight bound of the "
          f"logit differences: max {bound.max:.1f} (computed in {time.perf_counter() - t0:.2f} s)" if bound else
          f"model {clf.name}: no weight bound (local checks only)")
    warm = gallery_pairs(clf, 2, kind="adversarial", seed=99)  # first calls pay one-off costs
    path_statistics(clf, warm.x1, warm.x2, label=warm.labels, verification="local")
    for kind in ("natural", "adversarial"):
        ps = gallery_pairs(clf, n, kind=kind, seed=0)
        print(f"\n{kind} pairs ({len(ps.labels)}): per path, by anchor budget and check")
        print(f"{'budget':>6} | {'check':>6} | {'connected':>9} | {'proven':>6} | {'anchors':>7} | {'evals':>8} | "
              f"{'max evals':>9} | "
              f"{'s/path':>7} | {'evals / budget-16':>17}")
        rows = {}
        for verification in ("bound", "local") if bound else ("local",):
            for b in budgets:
                rows[(verification, b)] = run(clf, ps, b, verification)
        for (verification, b), r in rows.items():
            ref = rows[(verification, 16)]["evals"]
            print(f"{b:>6} | {verification:>6} | {r['connected']:>9.2f} | {r['proven']:>6.2f} | {r['anchors']:>7.2f} | "
                  f"{r['evals']:>8.0f} | "
                  f"{r['evals_max']:>9d} | {r['sec']:>7.3f} | {r['evals'] / ref:>17.2f}")
        if bound:
            b16, l16 = rows[("bound", 16)], rows[("local", 16)]
            print(f"proven / sampled check at budget 16: evaluations x{b16['evals'] / l16['evals']:.1f}, "
                  f"time x{b16['sec'] / l16['sec']:.1f}")
    # batching: all pairs in one search against one search per pair (best of --repeats; load varies)
    ps = gallery_pairs(clf, n, kind="adversarial", seed=0)
    batched, single = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        path_statistics(clf, ps.x1, ps.x2, label=ps.labels, verification="local", group=len(ps.labels))
        batched.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for k in range(len(ps.labels)):
            connecting_path(clf, ps.x1[k], ps.x2[k], verification="local")
        single.append(time.perf_counter() - t0)
    batched, single = min(batched), min(single)
    print(f"\nbatched search of {len(ps.labels)} adversarial pairs: {batched:.2f} s; one by one: {single:.2f} s "
          f"(x{single / batched:.2f})")


if __name__ == "__main__":
    main()
