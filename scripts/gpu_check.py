"""The GPU check: every analysis on CUDA and on the CPU, agreement asserted, timings tabulated (docs/gpu.md).

For a bundled model (mnist_lenet_gelu) and a random-weight torchvision resnet18 at 3 x 224 x 224 (loaded
through safetensors + sidecar, bench/scale_models.py; its GELU variant for the exact estimator, since the
ReLU network's exact Hessian is zero), it runs on each device:

  forward         raw forward pass of a batch (images per second: the yardstick for grid points)
  boundary        boundary_point of one image
  curvature exact principal_curvatures, Lanczos, k pairs per end (HVPs per second)
  curvature fd    the same with finite differences (HVPs per second)
  section         cross_section normal,random on a dense grid (grid points per second)
  path            connecting_path between two same-class images
  subspace        curved_subspace (exact, GELU model), small m over a few images (HVPs per second)
  detector score  asymmetry_scores of a few images in that subspace

and asserts that CUDA agrees with the CPU to the tolerances in :data:`TOLERANCES` (relative to the largest
magnitude of the CPU result). Without a CUDA device the CUDA rows are reported as skipped and the script still
exits 0 when the CPU runs succeed: that is the smoke test ``make test`` runs (``--quick``: resnet18 at
3 x 32 x 32 instead of 224, smaller settings). Timing on CUDA synchronises before and after each analysis;
memory is ``torch.cuda.max_memory_allocated`` (CUDA) or the resident-memory peak (CPU, VmHWM). TF32 is
turned off so CUDA float32 matmuls are real float32.

    .venv/bin/python scripts/gpu_check.py [--quick] [--doc docs/gpu.md] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

BEGIN, END = "<!-- gpu_check:begin -->", "<!-- gpu_check:end -->"
NO_GPU = "No GPU has been lent to this project yet; the table below is CPU only (CUDA rows skipped)."

# Agreement of CUDA with the CPU, |cuda - cpu| <= tol * max|cpu| (element-wise, after matching order). Float32 on
# both devices, TF32 off; the differences come from summation order. Exact curvature: converged Lanczos values
# (residual <= 1e-4 relative) agree far below 1e-3. fd curvature: the fd map is not linear, so its Lanczos basis,
# and with it the operator diagonalised, follows rounding: 5e-2. Boundary distance 1e-3; section labels: at least
# 99% of the grid alike (points within rounding of the boundary may flip); path: same connected verdict;
# subspace eigenvalues (exact average operator of the GELU model, a budget-limited Lanczos) 1e-2; detector scores
# (fd second derivatives in that subspace) 1e-2; logits 1e-4.
TOLERANCES = {"boundary": 1e-3, "curvature exact": 1e-3, "curvature fd": 5e-2, "section": 0.99, "path": None,
              "subspace": 1e-2, "detector score": 1e-2, "forward": 1e-4}


def settings(quick: bool) -> dict:
    if quick:
        return {"side": 32, "k": 2, "max_iter": 40, "fd_iter": 40, "resolution": 17, "subspace_images": 2,
                "subspace_m": 2, "subspace_iter": 12, "forward_batch": 32,
                "path": {"max_samples": 500, "chord_samples": 16}}
    return {"side": 224, "k": 3, "max_iter": 80, "fd_iter": 120, "resolution": 33, "subspace_images": 4,
            "subspace_m": 4, "subspace_iter": 30, "forward_batch": 64,
            "path": {"max_samples": 2000, "chord_samples": 64}}


class Timer:
    """Seconds and peak memory of one analysis on one device (CUDA: synchronised, max_memory_allocated)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass
            self.base = _rss()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        else:
            self.mb = _hwm() - self.base
        self.seconds = time.perf_counter() - self.t0
        return False


def _proc(key: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _rss() -> float:
    return _proc("VmRSS")


def _hwm() -> float:
    return _proc("VmHWM")


def run_device(name: str, clf, smooth, x, x2, xs, s: dict, device: torch.device) -> dict:
    """Every analysis of one model on one device: {analysis: {"seconds", "mb", "work", "unit", "value"}}."""
    from geometry.boundary import boundary_point
    from geometry.curvature import principal_curvatures
    from geometry.detection import asymmetry_scores
    from geometry.paths import connecting_path
    from geometry.sections import cross_section
    from geometry.subspace import curved_subspace

    clf, smooth = clf.to(device), smooth.to(device)
    x, x2, xs = x.to(device), x2.to(device), xs.to(device)
    out: dict = {}

    def record(key, t, value, work=None, unit=""):
        out[key] = {"seconds": t.seconds, "mb": t.mb, "value": value, "work": work, "unit": unit}

    batch = x[None].expand(s["forward_batch"], *x.shape).contiguous()
    with torch.no_grad():
        clf.module(batch[:2])  # warm-up (CUDA context, cuDNN algorithm choice)
    with Timer(device) as t:
        with torch.no_grad():
            logits = clf.module(batch)
    record("forward", t, logits[0].double().cpu().numpy(), s["forward_batch"] / t.seconds, "images/s")
    with Timer(device) as t:
        b = boundary_point(clf, x[None])
    record("boundary", t, np.array([float(b.norms()[0])]))
    bs = boundary_point(smooth, x[None])
    for est, model, bd, it in (("exact", smooth, bs, s["max_iter"]), ("fd", clf, b, s["fd_iter"])):
        with Timer(device) as t:
            r = principal_curvatures(model, x, estimator=est, k=s["k"], boundary=bd, full=False, max_iter=it)
        record(f"curvature {est}", t, np.asarray(r.curvatures), r.hvp_count / t.seconds, "HVP/s")
        out[f"curvature {est}"]["converged"] = bool(r.converged)
    with Timer(device) as t:
        cs = cross_section(clf, x, resolution=s["resolution"], adaptive=False, boundary=b)
    record("section", t, np.asarray(cs.labels), cs.evaluations / t.seconds, "points/s")
    with Timer(device) as t:
        p = connecting_path(clf, x, x2, **s["path"])
    record("path", t, np.array([float(p.connected)]))
    with Timer(device) as t:
        S = curved_subspace(smooth, xs, m=s["subspace_m"], estimator="exact", max_iter=s["subspace_iter"])
    record("subspace", t, np.asarray(S.eigenvalues), S.hvp_count / t.seconds, "HVP/s")
    with Timer(device) as t:
        rho, _ = asymmetry_scores(smooth, xs, S.basis.to(device))
    record("detector score", t, rho.double().cpu().numpy())
    out["_subspace_basis"] = S.basis.cpu()
    return out


def compare(key: str, cpu, cuda) -> tuple[bool, str]:
    tol = TOLERANCES[key]
    a, b = np.asarray(cpu["value"], dtype=np.float64), np.asarray(cuda["value"], dtype=np.float64)
    if key == "section":
        same = float((a == b).mean())
        return same >= tol, f"{same:.4f} of labels alike (>= {tol})"
    if key == "path":
        return bool(a[0] == b[0]), f"connected {bool(a[0])} / {bool(b[0])}"
    if a.shape != b.shape:
        return False, f"shapes differ {a.shape} / {b.shape}"
    scale = max(float(np.abs(a).max()), 1e-12)
    err = float(np.abs(a - b).max()) / scale
    return err <= tol, f"{err:.1e} (<= {tol:g})"


def check(quick: bool = False, log=print) -> dict:
    from geometry.data import held_out
    from geometry.loading import load_classifier
    from scale_models import random_torchvision, same_class_pair, smooth_image, smooth_variant

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    s = settings(quick)
    cuda = torch.cuda.is_available()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if cuda else [])
    models = []
    gelu = load_classifier("mnist_lenet_gelu", device="cpu")
    split = held_out("mnist")
    xs = torch.from_numpy(split.x[:40])
    lab = gelu.predict(xs)
    i2 = next(i for i in range(1, 40) if int(lab[i]) == int(lab[0]))
    models.append(("mnist_lenet_gelu", gelu, gelu, xs[0], xs[i2], xs[:s["subspace_images"]]))
    side = s["side"]
    relu = random_torchvision("resnet18", side)
    smooth = smooth_variant(random_torchvision("resnet18", side))
    xr = smooth_image(side)
    xrs = torch.stack([smooth_image(side, i) for i in range(s["subspace_images"])])
    models.append((f"resnet18 3x{side}x{side}", relu, smooth, xr, same_class_pair(relu, xr), xrs))
    rows, failures = [], []
    for name, clf, sm, x, x2, xsub in models:
        res = {}
        for dev in devices:
            log(f"{name} on {dev.type} ...")
            res[dev.type] = run_device(name, clf, sm, x, x2, xsub, s, dev)
        for key in [k for k in res["cpu"] if not k.startswith("_")]:
            c = res["cpu"][key]
            row = {"model": name, "analysis": key, "cpu_s": c["seconds"], "cpu_mb": c["mb"], "cpu_work": c["work"],
                   "unit": c["unit"], "converged_cpu": c.get("converged")}
            if c["unit"] == "points/s":
                row["cpu_vs_forward"] = c["work"] / res["cpu"]["forward"]["work"]
            if cuda:
                g = res["cuda"][key]
                ok, how = compare(key, c, g)
                row.update({"cuda_s": g["seconds"], "cuda_mb": g["mb"], "cuda_work": g["work"],
                            "ratio": c["seconds"] / g["seconds"], "agree": ok, "agreement": how,
                            "converged_cuda": g.get("converged"), "status": "ok" if ok else "FAIL"})
                if g["unit"] == "points/s":
                    row["cuda_vs_forward"] = g["work"] / res["cuda"]["forward"]["work"]
                if not ok:
                    failures.append(f"{name} {key}: {how}")
            else:
                row.update({"status": "cuda skipped (no CUDA device)"})
            rows.append(row)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    return {"quick": quick, "cuda": cuda, "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
            "platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "commit": commit, "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "settings": s, "tolerances": TOLERANCES, "rows": rows, "failures": failures}


def _f(v, fmt="{:.2f}") -> str:
    return "" if v is None else fmt.format(v)


def table(res: dict) -> str:
    lines = ["| model | analysis | CPU s | CUDA s | CPU/CUDA | CPU work | CUDA work | vs forward (CPU / CUDA) | "
             "peak MB (CPU / CUDA) | agreement | status |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in res["rows"]:
        unit = f" {r['unit']}" if r["unit"] else ""
        cw = _f(r.get("cpu_work"), "{:.1f}") + (unit if r.get("cpu_work") is not None else "")
        gw = _f(r.get("cuda_work"), "{:.1f}") + (unit if r.get("cuda_work") is not None else "")
        vf = ""
        if "cpu_vs_forward" in r:
            vf = f"{r['cpu_vs_forward']:.2f} / {_f(r.get('cuda_vs_forward')) or '-'}"
        mb = f"{r['cpu_mb']:.0f} / {_f(r.get('cuda_mb'), '{:.0f}') or '-'}"
        lines.append(f"| {r['model']} | {r['analysis']} | {r['cpu_s']:.2f} | {_f(r.get('cuda_s')) or '-'} | "
                     f"{_f(r.get('ratio'), '{:.1f}') or '-'} | {cw} | {gw or '-'} | {vf} | {mb} | "
                     f"{r.get('agreement', '-')} | {r['status']} |")
    return "\n".join(lines)


def render(res: dict) -> str:
    head = (f"Run {res['date']} at commit {res['commit']} ({'--quick' if res['quick'] else 'full'} settings) on "
            f"{res['platform']}, torch {res['torch']}, {res['threads']} CPU threads; CUDA: "
            f"{res['cuda_device'] or 'none'}. Generated by `scripts/gpu_check.py"
            f"{' --quick' if res['quick'] else ''} --doc docs/gpu.md`.\n\n")
    if not res["cuda"]:
        head += NO_GPU + "\n\n"
    tail = ""
    if res["failures"]:
        tail = "\n\nDisagreements:\n\n" + "\n".join(f"- {f}" for f in res["failures"]) + "\n"
    return head + table(res) + "\n" + tail


def write_doc(doc: Path, res: dict) -> None:
    text = doc.read_text()
    a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
    doc.write_text(text[:a] + "\n" + render(res) + text[b:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small settings and resnet18 at 3x32x32 (the CPU smoke test)")
    ap.add_argument("--doc", help="write the result into this Markdown file between its gpu_check markers")
    ap.add_argument("--json", help="write the result as JSON here")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = check(args.quick, log=lambda m: print(m, file=sys.stderr, flush=True))
    res["seconds"] = round(time.perf_counter() - t0, 1)
    print(render(res))
    print(f"({res['seconds']} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float) + "\n")
    if args.doc:
        write_doc(Path(args.doc), res)
    if res["failures"]:
        print("FAIL: CUDA and CPU disagree: " + "; ".join(res["failures"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
