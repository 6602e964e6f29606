"""Benchmark of connecting paths: model evaluations and time per path, and how they grow with the anchor
budget; proven (weight-bound) against sampled (local slope) checks; batched pairs against one by one.

    .venv/bin/python bench/bench_paths.py [--model mnist_lenet_gelu] [--pairs 10] [--quick] [--rounds 3]

Prints tables measured in this one run: evaluation counts (deterministic) per anchor budget, and times of
compared methods (proven vs sampled checks; batched pairs vs one by one) interleaved over --rounds rounds,
as medians with min-max, ratios as the median (min-max) of per-round ratios. Writes
bench/results/bench_paths.json (bench/_results.py). Never used as a timed test.
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

from bench._results import Results, fmt, interleave  # noqa: E402
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
    ap.add_argument("--budgets", default=None, help="comma-separated anchor budgets (default 0,1,2,4,8,16; "
                    "--quick 0,2,16); 16 must be among them")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--rounds", "--repeats", dest="rounds", type=int, default=3,
                    help="interleaved rounds of each timed comparison (default 3)")
    ap.add_argument("--out", default=None, help="results file (default bench/results/bench_paths.json)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    clf = load_classifier(args.model, device="auto")
    rec = Results("bench_paths", args.rounds, {k: v for k, v in vars(args).items() if k != "out"}, clf.device.type)
    n = 4 if args.quick else args.pairs
    budgets = [0, 2, 16] if args.quick else [0, 1, 2, 4, 8, 16]
    if args.budgets:
        budgets = sorted({int(b) for b in args.budgets.split(",")} | {16})
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
              f"{'s/path (1 run)':>14} | {'evals / budget-16':>17}")
        rows = {}
        for verification in ("bound", "local") if bound else ("local",):
            for b in budgets:
                rows[(verification, b)] = run(clf, ps, b, verification)
        for (verification, b), r in rows.items():
            ref = rows[(verification, 16)]["evals"]
            print(f"{b:>6} | {verification:>6} | {r['connected']:>9.2f} | {r['proven']:>6.2f} | {r['anchors']:>7.2f} | "
                  f"{r['evals']:>8.0f} | "
                  f"{r['evals_max']:>9d} | {r['sec']:>14.3f} | {r['evals'] / ref:>17.2f}")
        rec.add(f"budgets/{kind}", f"{kind} pairs ({len(ps.labels)}): per-path counts by anchor budget and check",
                unit="evaluations", docs="docs/paths.md",
                extra={f"{v}/{b}": {k: r[k] for k in ("connected", "proven", "anchors", "evals", "evals_max")}
                       for (v, b), r in rows.items()})
        if bound:
            b16, l16 = rows[("bound", 16)], rows[("local", 16)]
            t = interleave({"proven": lambda: run(clf, ps, 16, "bound"),
                            "sampled": lambda: run(clf, ps, 16, "local")}, args.rounds, warmup=False)
            m = rec.add(f"proven_vs_sampled/{kind}", f"proven (weight bound) vs sampled segment checks, {kind} "
                        f"pairs, budget 16 ({len(ps.labels)} pairs)", methods=t, ratio=("proven", "sampled"),
                        ratio_meaning="time of the proven check as a multiple of the sampled one",
                        docs="docs/paths.md", extra={"evaluations_ratio": b16["evals"] / l16["evals"]})
            print(f"proven / sampled check at budget 16: evaluations x{b16['evals'] / l16['evals']:.1f}, "
                  f"time x{fmt(m['ratio'], 1)} (median (min-max) over {args.rounds} interleaved rounds)")
    # batching: all pairs in one search against one search per pair, interleaved rounds
    ps = gallery_pairs(clf, n, kind="adversarial", seed=0)

    def batched():
        path_statistics(clf, ps.x1, ps.x2, label=ps.labels, verification="local", group=len(ps.labels))

    def single():
        for k in range(len(ps.labels)):
            connecting_path(clf, ps.x1[k], ps.x2[k], verification="local")

    t = interleave({"one search": batched, "one by one": single}, args.rounds, warmup=False)
    m = rec.add("batched_pairs", f"{len(ps.labels)} adversarial paths in one batch vs one by one ({clf.name})",
                methods=t, ratio=("one by one", "one search"), ratio_meaning="speed-up of batching", headline=True,
                docs="docs/paths.md")
    print(f"\nbatched search of {len(ps.labels)} adversarial pairs: {fmt(m['methods']['one search'])} s; one by one: "
          f"{fmt(m['methods']['one by one'])} s (x{fmt(m['ratio'])}; median (min-max) over {args.rounds} "
          "interleaved rounds)")
    rec.write(args.out)


if __name__ == "__main__":
    main()
