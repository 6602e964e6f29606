"""Cross-section benchmark: grid throughput against the raw batched forward pass, and the adaptive grid's
evaluations and time against the dense grid at the same resolution (with the label mismatch count).

    .venv/bin/python bench/bench_sections.py [--models mnist_lenet_gelu,mnist_lenet_relu]
                                             [--resolutions 129,257] [--planes normal,random;normal,curv+]
                                             [--device cpu] [--repeats 3]

All numbers of one table are measured in the same run, so ratios are comparable even on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from geometry.images import gallery_image  # noqa: E402
from geometry.loading import load_classifier  # noqa: E402
from geometry.sections import (PlaneEvaluator, batch_size_for, grid_axes, make_plane,  # noqa: E402
                               section_on_plane)
from geometry.zoo import zoo_names  # noqa: E402


def best_of(fn, repeats):
    times = []
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def throughput_pair(clf, plane, res, batch, repeats):
    """(raw, grid) points/s, measured alternately so both see the same machine load.

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
        sync()

    def grid():
        ev(A.ravel(), B.ravel())
        sync()

    raw(), grid()
    t_raw, t_grid = [], []
    for _ in range(repeats):
        t_raw.append(best_of(raw, 1)[0])
        t_grid.append(best_of(grid, 1)[0])
    return n / min(t_raw), n / min(t_grid)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(n for n in zoo_names() if n != "mnist_lenet_gelu_pgd"))
    p.add_argument("--resolutions", default="129,257")
    p.add_argument("--planes", default="normal,random;normal,curv+")
    p.add_argument("--images", default="gallery:0:0,gallery:3:1")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    print("\n## Grid throughput vs raw batched forward (dense grid 129x129 = 16641 points)")
    print(f"{'model':<22}{'batch':>6}{'raw pts/s':>12}{'grid pts/s':>12}{'grid/raw':>10}")
    for name in args.models.split(","):
        clf = load_classifier(name, device=args.device)
        x = gallery_image(clf, 0, 0).tensor
        plane = make_plane(clf, x, "random,random")
        batch = batch_size_for(clf)
        raw, grid = throughput_pair(clf, plane, 129, batch, args.repeats)
        print(f"{name:<22}{batch:>6}{raw:>12.0f}{grid:>12.0f}{grid / raw:>10.2f}")
    print("\n## Adaptive vs dense grid (same plane, extent and resolution; labels compared point by point)")
    print(f"{'model':<20}{'image':<13}{'plane':<15}{'res':>5}{'dense ev':>10}{'adapt ev':>10}{'ev ratio':>9}"
          f"{'dense s':>9}{'adapt s':>9}{'speed-up':>9}{'mismatch':>9}")
    totals = []
    for name in args.models.split(","):
        clf = load_classifier(name, device=args.device)
        for ref in args.images.split(","):
            from geometry.images import load_image

            x = load_image(ref, clf).tensor
            for spec in args.planes.split(";"):
                plane = make_plane(clf, x, spec)
                for res in (int(r) for r in args.resolutions.split(",")):
                    td, dense = best_of(lambda: section_on_plane(clf, plane, resolution=res, adaptive=False), 1)
                    ta, ada = best_of(lambda: section_on_plane(clf, plane, resolution=res, adaptive=True),
                                      args.repeats)
                    mism = int((ada.labels != dense.labels).sum())
                    totals.append(mism)
                    print(f"{name:<20}{ref:<13}{spec:<15}{res:>5}{dense.evaluations:>10}{ada.evaluations:>10}"
                          f"{dense.evaluations / ada.evaluations:>9.1f}{td:>9.2f}{ta:>9.2f}{td / ta:>9.1f}{mism:>9}")
    print(f"\nlabel mismatches adaptive vs dense over all rows: {sum(totals)}")


if __name__ == "__main__":
    main()
