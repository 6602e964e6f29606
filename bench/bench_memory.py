"""Benchmark: peak extra memory and seconds per analysis at d = 784, 3072 and 150,528 (docs/scale.md).

One run measures, on this machine's CPU, for each input size:

- d = 784: the bundled MNIST LeNets (mnist_lenet_gelu for exact curvature, mnist_lenet_relu for fd);
- d = 3072: a random-weight torchvision resnet18 at 3 x 32 x 32 (and its GELU variant for exact curvature);
- d = 150,528: a random-weight torchvision resnet50 at 3 x 224 x 224 (and its GELU variant), k small.

Random-weight torchvision models are written as safetensors + sidecar and loaded like a user's
(bench/scale_models.py; nothing is downloaded). Analyses: boundary point, curvature (exact on the GELU
variant, fd on the ReLU model; Lanczos with k pairs per end), a cross-section (``normal,random``, small
grid) and a connecting path between two same-class images. "Peak extra MB" is the process's peak
resident memory during the analysis minus its resident memory just before (VmHWM reset through
/proc/self/clear_refs), so it includes the model's activations for the products, not only the solver's
arrays; "basis MB" is what the Lanczos arrays take by construction (geometry/lanczos.py: basis and products,
2 b d numbers of the basis dtype, for exact; the basis alone, the products rounded up to 32 columns, for fd).
Writes bench/results/bench_memory.json (machine, commit, date, values).

    .venv/bin/python bench/bench_memory.py            # about 10 minutes on 2 cores
    .venv/bin/python bench/bench_memory.py --render docs/scale.md   # the table in the doc, from the JSON
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

RESULTS = ROOT / "bench" / "results" / "bench_memory.json"
BEGIN, END = "<!-- bench_memory:begin -->", "<!-- bench_memory:end -->"


def _status(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def measure(fn):
    """(result, seconds, peak extra MB): VmHWM reset before ``fn``, compared with VmRSS just before."""
    import gc

    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        resettable = True
    except OSError:
        resettable = False
    before = _status("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = _status("VmHWM")
    return out, seconds, (peak - before) if resettable else float("nan")


def _basis_mb(k: int, d: int, budget: int, estimator: str = "exact", products: int = 0) -> float:
    """MB of the solver's basis by construction: Q and A Q (2 b d) for exact; for fd Q alone, allocated
    BASIS_BLOCK columns at a time (products rounded up to a block)."""
    import torch

    from geometry.lanczos import BASIS_BLOCK, basis_columns, basis_dtype

    budget = min(budget, d - 1)
    cols = 2 * basis_columns(k, d - 1, budget, d) if estimator == "exact" else -(-products // BASIS_BLOCK) * BASIS_BLOCK
    return cols * d * torch.finfo(basis_dtype(torch.float32, d)).bits / 8 / 2**20


def run_size(label: str, d_expected: int, relu, gelu, x, x2, k: int, fd_iter: int | None, exact_iter: int | None,
             resolution: int, path_kw: dict, rows: list, fd_full: bool = False):
    import numpy as np

    from geometry.boundary import boundary_point
    from geometry.curvature import principal_curvatures
    from geometry.paths import connecting_path
    from geometry.sections import cross_section

    assert relu.dim == d_expected, (relu.dim, d_expected)

    def row(analysis, model, seconds, mb, **kw):
        r = {"d": relu.dim, "size": label, "analysis": analysis, "model": model, "seconds": round(seconds, 2),
             "peak_extra_mb": round(mb, 1), **kw}
        rows.append(r)
        print(json.dumps(r), flush=True)

    b, s, mb = measure(lambda: boundary_point(relu, x[None]))
    row("boundary point", relu.name, s, mb, converged=bool(b.converged[0]))
    bg = boundary_point(gelu, x[None])
    for est, clf, bd, it in (("exact", gelu, bg, exact_iter), ("fd", relu, b, fd_iter)):
        res, s, mb = measure(lambda: principal_curvatures(clf, x, estimator=est, k=k, boundary=bd, full=False,
                                                          max_iter=it))
        budget = it or max(200, 30 * k)
        row(f"curvature {est} (Lanczos, k={k})", clf.name, s, mb, products=int(res.hvp_count),
            converged=bool(res.converged), basis_mb=round(_basis_mb(k, clf.dim, budget, est, res.hvp_count), 1),
            top=round(float(res.curvatures[0]), 4), bottom=round(float(res.curvatures[-1]), 4),
            max_relative_residual=float(np.max(res.residuals) / max(np.abs(res.curvatures).max(), 1e-300)),
            asymmetry=round(float(res.params["asymmetry"]), 3), budget=budget)
        if est == "fd" and fd_full:
            full, s, mb = measure(lambda: principal_curvatures(clf, x, estimator="fd", boundary=bd, full=True))
            row("curvature fd (full, pixel basis)", clf.name, s, mb, products=int(full.hvp_count), converged=True,
                top=round(float(full.curvatures[0]), 4), bottom=round(float(full.curvatures[-1]), 4),
                asymmetry=round(float(full.params["asymmetry"]), 3))
    cs, s, mb = measure(lambda: cross_section(relu, x, resolution=resolution, boundary=b))
    row(f"section normal,random {resolution}x{resolution}", relu.name, s, mb, evaluations=int(cs.evaluations),
        grid_points=resolution * resolution)
    p, s, mb = measure(lambda: connecting_path(relu, x, x2, **path_kw))
    row("connecting path", relu.name, s, mb, connected=bool(p.connected), guarantee=p.guarantee,
        anchors=int(p.n_anchors))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--render", metavar="DOC", help="rewrite the measured table in DOC from the JSON and exit")
    ap.add_argument("--sizes", default="784,3072,150528", help="which input sizes to measure")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.render:
        render_doc(Path(args.render), Path(args.out))
        return 0
    import torch

    from geometry.data import held_out
    from geometry.loading import load_classifier
    from scale_models import random_torchvision, same_class_pair, smooth_image, smooth_variant

    sizes = {int(s) for s in args.sizes.split(",")}
    rows: list = []
    t0 = time.perf_counter()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()

    def save():  # after every size, so an interrupted run keeps what it measured
        out = {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                           "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                           "device": "cpu"},
               "commit": commit, "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "total_seconds": round(time.perf_counter() - t0, 1), "rows": rows}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        return out

    if 784 in sizes:
        relu = load_classifier("mnist_lenet_relu", device="cpu")
        gelu = load_classifier("mnist_lenet_gelu", device="cpu")
        split = held_out("mnist")
        xs = torch.from_numpy(split.x[:50])
        lab = relu.predict(xs)
        i2 = next(i for i in range(1, 50) if int(lab[i]) == int(lab[0]))
        run_size("MNIST 1x28x28", 784, relu, gelu, xs[0], xs[i2], 5, None, None, 65, {}, rows, fd_full=True)
        save()
    if 3072 in sizes:
        relu = random_torchvision("resnet18", 32)
        gelu = smooth_variant(random_torchvision("resnet18", 32))
        x = smooth_image(32)
        run_size("resnet18 3x32x32", 3072, relu, gelu, x, same_class_pair(relu, x), 5, None, None, 33,
                 {"max_samples": 2000, "chord_samples": 64}, rows)
        save()
    if 150528 in sizes:
        relu = random_torchvision("resnet50", 224)
        gelu = smooth_variant(random_torchvision("resnet50", 224))
        x = smooth_image(224)
        run_size("resnet50 3x224x224", 150528, relu, gelu, x, same_class_pair(relu, x), 5, FD_ITER_150K,
                 EXACT_ITER_150K, 17, {"max_samples": 1000, "chord_samples": 32}, rows)
        save()
        del relu, gelu
        fd18(x, rows)
    out = save()
    print(table(out))
    print(f"wrote {args.out}")
    return 0


FD_ITER_150K = 300   # above the default budget max(200, 30 k) = 200 at k = 5


def fd18(x, rows):
    """fd curvature of a random resnet18 at 3 x 224 x 224 as well (a second architecture at d = 150,528)."""
    import numpy as np

    from geometry.boundary import boundary_point
    from geometry.curvature import principal_curvatures
    from scale_models import random_torchvision

    clf = random_torchvision("resnet18", 224)
    b = boundary_point(clf, x[None])
    res, s, mb = measure(lambda: principal_curvatures(clf, x, estimator="fd", k=5, boundary=b, full=False,
                                                      max_iter=FD_ITER_150K))
    r = {"d": clf.dim, "size": "resnet18 3x224x224", "analysis": "curvature fd (Lanczos, k=5)", "model": clf.name,
         "seconds": round(s, 2), "peak_extra_mb": round(mb, 1), "products": int(res.hvp_count),
         "converged": bool(res.converged),
         "basis_mb": round(_basis_mb(5, clf.dim, FD_ITER_150K, "fd", res.hvp_count), 1),
         "top": round(float(res.curvatures[0]), 4), "bottom": round(float(res.curvatures[-1]), 4),
         "max_relative_residual": float(np.max(res.residuals) / max(np.abs(res.curvatures).max(), 1e-300)),
         "asymmetry": round(float(res.params["asymmetry"]), 3), "budget": FD_ITER_150K}
    rows.append(r)
    print(json.dumps(r), flush=True)
EXACT_ITER_150K = 60  # exact products on the GELU resnet50 cost about 3 gradients each


def table(res: dict) -> str:
    """The Markdown table of a results JSON."""
    head = ("| d | model | analysis | seconds | peak extra MB | basis MB | products / evaluations | converged |\n"
            "|---:|---|---|---:|---:|---:|---:|---|")
    lines = [head]
    for r in res["rows"]:
        work = r.get("products", r.get("evaluations", r.get("anchors", "")))
        if "evaluations" in r:
            work = f"{r['evaluations']} of {r['grid_points']} points"
        elif "anchors" in r:
            work = f"{r['anchors']} anchors"
        conv = r.get("converged", r.get("connected", ""))
        if "max_relative_residual" in r:
            conv = f"{conv} (residual {r['max_relative_residual']:.1e})"
        if "connected" in r:
            conv = f"connected {r['connected']} ({r['guarantee']})"
        lines.append(f"| {r['d']:,} | {r['model']} | {r['analysis']} | {r['seconds']:.1f} | {r['peak_extra_mb']:.0f} | "
                     f"{r.get('basis_mb', '')} | {work} | {conv} |")
    return "\n".join(lines)


def render(res: dict) -> str:
    m = res["machine"]
    extra = []
    for r in res["rows"]:
        if r["analysis"].startswith("curvature"):
            extra.append(f"- d = {r['d']:,}, {r['model']}, {r['analysis']}: top {r['top']}, bottom {r['bottom']}, "
                         f"asymmetry {r['asymmetry']}")
    return (f"Measured {res['date']} at commit {res['commit']} on {m['platform']} ({m['cpus']} CPUs, "
            f"{m['threads']} torch threads, torch {m['torch']}, {m['device']}); whole run {res['total_seconds']} s. "
            "Generated from bench/results/bench_memory.json by `bench/bench_memory.py --render docs/scale.md`.\n\n"
            + table(res) + "\n\nExtreme curvatures found (1/pixel units):\n\n" + "\n".join(extra) + "\n")


def render_doc(doc: Path, results: Path) -> None:
    res = json.loads(results.read_text())
    text = doc.read_text()
    a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
    doc.write_text(text[:a] + "\n" + render(res) + text[b:])


if __name__ == "__main__":
    sys.exit(main())
