"""Cross-section benchmark: grid throughput against the raw batched forward pass, and the adaptive grid's
evaluations and time against the dense grid at the same resolution (with the label mismatch count).

    .venv/bin/python bench/bench_sections.py [--models mnist_lenet_gelu,mnist_lenet_relu]
                                             [--resolutions 129,257] [--planes normal,random;normal,curv+]
                                             [--device cpu] [--rounds 3]

The compared methods run interleaved over --rounds rounds (each round times each once, the order rotating);
tables give medians with min-max, ratios as the median (min-max) of the per-round ratios. Writes
bench/results/bench_sections.json (bench/_results.py), from which the README and docs/sections.md tables are
generated (scripts/readme_numbers.py). Never a timed test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._results import Results, fmt, interleave  # noqa: E402
from geometry.images import gallery_image  # noqa: E402
from geometry.loading import load_classifier  # noqa: E402
from geometry.sections import (PlaneEvaluator, batch_size_for, grid_axes, make_plane,  # noqa: E402
                               section_on_plane)
from geometry.zoo import zoo_names  # noqa: E402


def throughput_times(clf, plane, res, batch, rounds):
    """Seconds per dense res x res grid for ``raw`` and ``grid``, interleaved over ``rounds`` rounds.

    raw: clf.module on a pre-built batch of res*res images (no grid construction), chunks of ``batch``;
    grid: :class:`PlaneEvaluator` on the dense res x res grid (builds x0 + a u + b v, labels and margins)."""
    n = res * res
    x = torch.rand((n, *clf.input_shape), generator=torch.Generator().manual_seed(0)).to(clf.device, clf.dtype)
    a, b = grid_axes(3.0, res)
    A, B = np.meshgrid(a, b)
    ev = PlaneEvaluator(clf, plane, batch)

    def sync():
        if clf.device.type == "cuda":
            torch.cuda.synchronize()

    def raw():
        with torch.no_grad():
            for s in range(0, n, batch):
                clf.module(x[s:s + batch]).argmax(1)

    def grid():
        ev(A.ravel(), B.ravel())

    return interleave({"raw": raw, "grid": grid}, rounds, sync=sync)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(n for n in zoo_names() if n != "mnist_lenet_gelu_pgd"))
    p.add_argument("--resolutions", default="129,257")
    p.add_argument("--planes", default="normal,random;normal,curv+")
    p.add_argument("--images", default="gallery:0:0,gallery:3:1")
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", "--repeats", dest="rounds", type=int, default=3,
                   help="interleaved rounds per comparison (default 3)")
    p.add_argument("--out", default=None, help="results file (default bench/results/bench_sections.json)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    rec = Results("bench_sections", args.rounds, {k: v for k, v in vars(args).items() if k != "out"}, args.device)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
          f"{args.rounds} interleaved rounds")
    print("\n## Grid throughput vs raw batched forward (dense grid 129x129 = 16641 points; median (min-max))")
    print(f"{'model':<22}{'batch':>6}{'raw pts/s':>22}{'grid pts/s':>22}{'grid/raw':>20}")
    for name in args.models.split(","):
        clf = load_classifier(name, device=args.device)
        x = gallery_image(clf, 0, 0).tensor
        plane = make_plane(clf, x, "random,random")
        batch = batch_size_for(clf)
        t = throughput_times(clf, plane, 129, batch, args.rounds)
        m = rec.add(f"throughput/{name}", f"grid throughput vs raw batched forward ({name}, 129x129, batch {batch})",
                    methods={"raw forward": t["raw"], "grid": t["grid"]}, ratio=("raw forward", "grid"),
                    ratio_meaning="grid points/s as a fraction of raw forward points/s",
                    headline=name == "mnist_lenet_gelu", docs="docs/sections.md", extra={"points": 129 * 129})
        def pts(s):  # seconds per grid -> points per second (the slowest round gives the minimum)
            return {k: 129 * 129 / s[j] for k, j in (("median", "median"), ("min", "max"), ("max", "min"))}
        print(f"{name:<22}{batch:>6}{fmt(pts(m['methods']['raw forward']), 0):>22}"
              f"{fmt(pts(m['methods']['grid']), 0):>22}{fmt(m['ratio']):>20}")
    print("\n## Adaptive vs dense grid (same plane, extent and resolution; labels compared point by point)")
    print(f"{'model':<20}{'image':<13}{'plane':<15}{'res':>5}{'dense ev':>10}{'adapt ev':>10}{'ev ratio':>9}"
          f"{'dense s':>20}{'adapt s':>20}{'speed-up':>18}{'mismatch':>9}")
    totals = []
    per_res: dict[int, list] = {}
    for name in args.models.split(","):
        clf = load_classifier(name, device=args.device)
        for ref in args.images.split(","):
            from geometry.images import load_image

            x = load_image(ref, clf).tensor
            for spec in args.planes.split(";"):
                plane = make_plane(clf, x, spec)
                for res in (int(r) for r in args.resolutions.split(",")):
                    out = {}

                    def dense(res=res, plane=plane):
                        out["dense"] = section_on_plane(clf, plane, resolution=res, adaptive=False)

                    def adaptive(res=res, plane=plane):
                        out["adaptive"] = section_on_plane(clf, plane, resolution=res, adaptive=True)

                    t = interleave({"dense": dense, "adaptive": adaptive}, args.rounds)
                    d, a = out["dense"], out["adaptive"]
                    mism = int((a.labels != d.labels).sum())
                    totals.append(mism)
                    m = rec.add(f"adaptive/{name}/{ref}/{spec}/{res}",
                                f"adaptive vs dense grid ({name}, {ref}, plane {spec}, {res}x{res})",
                                methods=t, ratio=("dense", "adaptive"), ratio_meaning="speed-up of the adaptive grid",
                                docs="docs/sections.md",
                                extra={"dense_evaluations": int(d.evaluations), "adaptive_evaluations":
                                       int(a.evaluations), "label_mismatches": mism, "resolution": res})
                    per_res.setdefault(res, []).append(m)
                    print(f"{name:<20}{ref:<13}{spec:<15}{res:>5}{d.evaluations:>10}{a.evaluations:>10}"
                          f"{d.evaluations / a.evaluations:>9.1f}{fmt(m['methods']['dense']):>20}"
                          f"{fmt(m['methods']['adaptive']):>20}{fmt(m['ratio'], 1):>18}{mism:>9}")
    for res, ms in per_res.items():
        ev = [m["extra"]["adaptive_evaluations"] for m in ms]
        rec.add(f"adaptive/all/{res}", f"adaptive vs dense grid at {res}x{res}, over the {len(ms)} sections measured",
                ratio={"median": float(np.median([m["ratio"]["median"] for m in ms])),
                       "min": min(m["ratio"]["min"] for m in ms), "max": max(m["ratio"]["max"] for m in ms),
                       "of": "dense / adaptive seconds: median of the rows' medians, min-max over every round"},
                ratio_meaning="speed-up of the adaptive grid", headline=True, docs="docs/sections.md",
                extra={"dense_evaluations": res * res, "adaptive_evaluations_min": min(ev),
                       "adaptive_evaluations_max": max(ev), "label_mismatches": sum(m["extra"]["label_mismatches"]
                                                                                    for m in ms), "rows": len(ms)})
    print(f"\nlabel mismatches adaptive vs dense over all rows: {sum(totals)}")
    rec.write(args.out)


if __name__ == "__main__":
    main()
