"""Benchmark: the cost of ``geometry.asymmetry.curvature_asymmetry`` at its defaults, per model.

Prints one markdown table per model (seconds per (estimator, step, location), Hessian-vector products,
converged solves) measured in one run, with the load average of the machine (never a timed test). Run:

    .venv/bin/python bench/bench_asymmetry.py [--models mnist_lenet_gelu,mnist_lenet_relu] [--points 100]
                                              [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from geometry.asymmetry import curvature_asymmetry  # noqa: E402
from geometry.loading import load_classifier  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mnist_lenet_gelu,mnist_lenet_relu")
    ap.add_argument("--points", type=int, default=100)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write every result (to_dict) to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = {}
    for name in args.models.split(","):
        clf = load_classifier(name, device="cpu")
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = curvature_asymmetry(clf, points=args.points, k=args.k).to_dict()
        total = time.perf_counter() - t0
        out[name] = res
        print(f"\n#### {name}: {args.points} held-out images, k = {args.k}, defaults; {total:.1f} s in all "
              f"(load average {load0:.1f} -> {os.getloadavg()[0]:.1f}, {args.threads} torch threads)\n")
        print("| location | estimator | h | used | method | converged | HVPs | seconds | s / point |")
        print("|---|---|---|---|---|---|---|---|---|")
        for e in res["results"]:
            h = "" if e["step"] is None else f"{e['step']:.3g}"
            per = e["seconds"] / max(1, e["points_used"])
            print(f"| {e['location']} | {e['estimator']} | {h} | {e['points_used']} | {e['method']} | "
                  f"{e['converged']} | {e['hvp_count']} | {e['seconds']:.1f} | {per:.2f} |")
        for loc, info in res["locations"].items():
            print(f"\n{loc} points: {info['found']}/{info['requested']} found in {info['seconds']:.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
