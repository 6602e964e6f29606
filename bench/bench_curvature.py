"""Benchmark: Hessian-vector products, signed Lanczos against scipy's eigsh, batched DeepFool.

Prints ratio tables measured in one run (never a timed test): the compared methods run interleaved over
--rounds rounds (each round times each once, the order rotating); times are medians with min-max, ratios the
median (min-max) of per-round ratios; Hessian-vector product counts are exact. Writes
bench/results/bench_curvature.json (bench/_results.py). Run:

    .venv/bin/python bench/bench_curvature.py [--model mnist_lenet_gelu] [--images 50] [--rounds 7] [--quick]

1. HVP engines at one boundary point, in units of one gradient of f_k - f_j:
   exact forward-over-reverse (torch.func jvp of grad, vmap over a block of vectors), exact
   double backward (graph rebuilt per call: a replicated batch; and the operator's retained graph),
   finite differences (two gradients per vector, batched).
2. Lanczos (ours) against scipy.sparse.linalg.eigsh(which="BE") on the same curvature operator
   (float64 model), both asked for the 10 most positive and 10 most negative curvatures, errors
   measured against the dense spectrum.
3. Batched DeepFool / boundary_point against a one-image-at-a-time loop.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench._results import Results, fmt, interleave  # noqa: E402
from geometry.boundary import boundary_point, deepfool  # noqa: E402
from geometry.images import gallery_batch  # noqa: E402
from geometry.lanczos import full_spectrum, signed_eigs  # noqa: E402
from geometry.loading import load_classifier  # noqa: E402
from geometry.operators import (_hvp_fwd_rev, _hvp_rev_rev, batched_hvp, curvature_operator,  # noqa: E402
                                hessian_operator, logit_difference_gradient)


def table(title, header, rows):
    print(f"\n## {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")


def bench_hvp(clf, x, rounds, block, rec):
    b = boundary_point(clf, x[:1])
    z, k, j = b.point, b.side_label, b.boundary_label
    shape = clf.input_shape
    g = torch.Generator().manual_seed(0)
    V1 = torch.randn(1, 1, *shape, generator=g).to(clf.dtype)
    Vb = torch.randn(1, block, *shape, generator=g).to(clf.dtype)
    op = hessian_operator(clf, z, k, j)
    op.matvec(torch.randn(clf.dim, dtype=clf.dtype))  # builds the retained graph once

    def loop_double_backward(V):
        for i in range(V.shape[1]):
            zz = z.detach().clone().requires_grad_(True)
            out = clf.module(zz)
            (gr,) = torch.autograd.grad(out[0, int(k)] - out[0, int(j)], zz, create_graph=True)
            torch.autograd.grad(gr, zz, grad_outputs=V[:, i])

    engines = [
        ("exact: double backward, graph rebuilt per vector (loop)", lambda V: loop_double_backward(V)),
        ("exact: torch.func jvp-of-grad, vmap over vectors", lambda V: _hvp_fwd_rev(clf, z, k, j, V)),
        ("exact: double backward, replicated batch", lambda V: _hvp_rev_rev(clf, z, k, j, V)),
        ("exact: retained graph, one backward per vector (HessianOperator)",
         lambda V: op._exact_cached(V.reshape(V.shape[1], -1).T)),
        ("fd: central differences, batched", lambda V: batched_hvp(clf, z, k, j, V, estimator="fd")),
    ]
    methods = {"gradient": lambda: logit_difference_gradient(clf, z, k, j)}
    for name, fn in engines:
        methods[f"{name} | 1"] = lambda fn=fn: fn(V1)
        methods[f"{name} | block"] = lambda fn=fn: fn(Vb)
    # calls of about a millisecond: each round times 20 (single vectors, the gradient) or 3 (blocks) calls together
    t = interleave(methods, rounds, repeat={k: 3 if k.endswith("| block") else 20 for k in methods})
    t_grad = t["gradient"]
    rows = []
    for i, (name, _) in enumerate(engines):
        one, blk = t[f"{name} | 1"], [v / block for v in t[f"{name} | block"]]
        m1 = rec.add(f"hvp/{i}/one", f"{name}: 1 vector vs one gradient ({clf.name})",
                     methods={"HVP, 1 vector": one, "gradient": t_grad}, ratio=("HVP, 1 vector", "gradient"),
                     ratio_meaning="gradients per product", docs="docs/curvature.md")
        mb = rec.add(f"hvp/{i}/block", f"{name}: per vector in a block of {block} vs one gradient ({clf.name})",
                     methods={f"HVP per vector, block {block}": blk, "gradient": t_grad},
                     ratio=(f"HVP per vector, block {block}", "gradient"), ratio_meaning="gradients per product",
                     headline=name.startswith("exact: torch.func"), docs="docs/curvature.md")
        rows.append((name, fmt(m1["ratio"]), fmt(mb["ratio"]), fmt(m1["methods"]["HVP, 1 vector"], 2, 1e3),
                     fmt(mb["methods"][f"HVP per vector, block {block}"], 3, 1e3)))
    g = rec.measures["hvp/0/one"]["methods"]["gradient"]
    table(f"HVP cost at one boundary point ({clf.name}, {str(clf.dtype)[6:]}, d={clf.dim}); one gradient of "
          f"f_k - f_j = {fmt(g, 2, 1e3)} ms; median (min-max) over {rounds} interleaved rounds of 20 calls "
          "(blocks: 3)",
          ["engine", "1 vector / gradient", f"per vector in a block of {block} / gradient", "1 vector (ms)",
           f"per vector, block {block} (ms)"], rows)
    # agreement of the engines (float)
    a = _hvp_fwd_rev(clf, z, k, j, Vb)
    bb = _hvp_rev_rev(clf, z, k, j, Vb)
    c = op._exact_cached(Vb.reshape(block, -1).T).T.reshape(Vb.shape)
    print(f"\nmax relative difference between exact engines: fwd_rev vs rev_rev "
          f"{float((a - bb).norm() / a.norm()):.1e}, fwd_rev vs retained graph {float((a - c).norm() / a.norm()):.1e}")


def bench_lanczos(clf, x, rec, k=10):
    # a separate float64 copy (Classifier.to moves the shared module in place)
    clf64 = load_classifier(clf.name, device=clf.device, dtype=torch.float64)
    b = boundary_point(clf64, x[:1])
    rows = []
    for est in ("exact", "fd"):
        op = curvature_operator(clf64, b.point, b.side_label, b.boundary_label, estimator=est)
        excl = op.normal[:, None]
        t = time.perf_counter()
        ref = full_spectrum(op, exclude=excl)
        t_full = time.perf_counter() - t
        want = np.r_[ref.values[:k], ref.values[-k:]]
        scale = float(np.abs(ref.values).max())
        rows.append((est, "dense spectrum (d products, eigh)", ref.hvp_count, f"{t_full:.2f}", "0 (reference)", "yes"))
        counts = {"dense": int(ref.hvp_count)}
        for tol in (1e-4, 1e-6, 1e-8):
            op.hvp_count = 0
            t = time.perf_counter()
            ours = signed_eigs(op, k, tol=tol, exclude=excl)
            dt = time.perf_counter() - t
            err = np.abs(ours.values - want).max() / scale
            rows.append((est, f"signed_eigs (ours), tol={tol:g}", ours.hvp_count, f"{dt:.2f}", f"{err:.1e}",
                         "yes" if ours.converged else "no"))
            counts[f"ours {tol:g}"] = {"hvps": int(ours.hvp_count), "error": float(err),
                                       "converged": bool(ours.converged)}
        try:
            from scipy.sparse.linalg import ArpackNoConvergence, eigsh

            for tol in (1e-4, 1e-6, 1e-8):
                op.hvp_count = 0
                lin = op.to_scipy()
                t = time.perf_counter()
                try:
                    vals = np.sort(eigsh(lin, k=2 * k, which="BE", tol=tol, return_eigenvectors=False))[::-1]
                    ok = "yes"
                except ArpackNoConvergence as exc:
                    vals, ok = np.sort(exc.eigenvalues)[::-1], "no"
                dt = time.perf_counter() - t
                err = np.abs(vals - want).max() / scale if len(vals) == 2 * k else float("nan")
                rows.append((est, f"scipy eigsh(which='BE'), tol={tol:g}", op.hvp_count, f"{dt:.2f}", f"{err:.1e}", ok))
                counts[f"eigsh {tol:g}"] = {"hvps": int(op.hvp_count), "error": float(err), "converged": ok == "yes"}
        except ImportError:
            pass
        rec.add(f"lanczos/{est}", f"signed Lanczos vs scipy eigsh(which='BE'), same operator, {k}+{k} eigenpairs "
                f"({clf.name}, float64, {est})", unit="Hessian-vector products", headline=est == "exact",
                docs="docs/curvature.md", extra={"k_per_end": k, "counts": counts})
    table(f"Both ends of the curvature spectrum, k={k} per end ({clf.name}, float64, d={clf.dim}); error = max "
          "|value - dense| / max|curvature|; products are exact counts, seconds one run",
          ["estimator", "method", "HVPs", "seconds", "max rel. error", "converged"],
          rows)


def bench_deepfool(clf, x, rounds, rec):
    n = len(x)
    rows = []
    for key, name, fn in (("deepfool", "deepfool (overshoot 0.02)", lambda xs: deepfool(clf, xs)),
                          ("boundary_point", "boundary_point (DeepFool + bisection)",
                           lambda xs: boundary_point(clf, xs))):
        out = {}

        def batched(fn=fn):
            out["batch"] = fn(x)

        def loop(fn=fn):
            out["singles"] = [fn(x[i:i + 1]) for i in range(n)]

        fn(x[:2])
        t = interleave({"batched": batched, "one at a time": loop}, rounds, warmup=False)
        batch, singles = out["batch"], out["singles"]
        pts = torch.cat([s.point for s in singles])
        diff = float((pts - batch.point).reshape(n, -1).norm(dim=1).max())
        m = rec.add(f"batched/{key}", f"batched {name} vs one image at a time ({n} images, {clf.name})", methods=t,
                    ratio=("one at a time", "batched"), ratio_meaning="speed-up of batching", headline=True,
                    docs="docs/curvature.md", extra={"images": n, "max_point_difference": diff,
                                                     "converged": int(batch.converged.sum())})
        rows.append((name, n, fmt(m["methods"]["batched"]), fmt(m["methods"]["one at a time"]),
                     "x" + fmt(m["ratio"], 1), f"{diff:.1e}", f"{int(batch.converged.sum())}/{n}",
                     f"{float(batch.norms().median()):.3f}"))
    # gradients of the 10 candidate logits of every image: vmap over vjp against a replicated batch
    from geometry import boundary as bmod

    cand = clf.logits(x).topk(min(10, clf.num_classes), dim=1).indices
    methods = {}
    for name, flag in (("torch.func.vjp + vmap over candidates", True), ("replicated batch, one backward", False)):
        def run(flag=flag):
            bmod._vjp_ok[clf.module] = flag
            return bmod.candidate_gradients(clf, x, cand)
        methods[name] = run
    t = interleave(methods, rounds, repeat=3)
    bmod._vjp_ok.pop(clf.module, None)
    names = list(methods)
    m = rec.add("candidate_gradients", f"candidate gradients for DeepFool ({n} images x {cand.shape[1]} classes)",
                methods=t, ratio=(names[1], names[0]), ratio_meaning="replicated batch time / vmap time",
                docs="docs/curvature.md")
    table(f"Candidate gradients for DeepFool ({n} images x {cand.shape[1]} classes); median (min-max) over {rounds} "
          "interleaved rounds", ["method", "ms"], [(k, fmt(m["methods"][k], 1, 1e3)) for k in names])
    table(f"Batched DeepFool against one image at a time ({clf.name}, {str(clf.dtype)[6:]}); median (min-max) over "
          f"{rounds} interleaved rounds",
          ["run", "images", "batched (s)", "loop (s)", "speed-up", "max |point difference|", "converged",
           "median |r|"], rows)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist_lenet_gelu")
    p.add_argument("--images", type=int, default=50)
    p.add_argument("--block", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="fewer repeats and images")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: hvp,lanczos,deepfool")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 9; --quick 3)")
    p.add_argument("--out", default=None, help="results file (default bench/results/bench_curvature.json)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clf = load_classifier(args.model, device=args.device)
    reps = args.rounds or (3 if args.quick else 9)
    rec = Results("bench_curvature", reps, {k: v for k, v in vars(args).items() if k != "out"}, args.device)
    x, _ = gallery_batch(clf, per_class=max(1, args.images // 10))
    x = x[:args.images].to(clf.device)
    print(f"# bench_curvature: {clf.describe()}; torch {torch.__version__}, {torch.get_num_threads()} threads"
          + (f", {torch.cuda.get_device_name()}" if clf.device.type == "cuda" else ""))
    skip = set(args.skip.split(","))
    if "hvp" not in skip:
        bench_hvp(clf, x, reps, args.block, rec)
    if "lanczos" not in skip:
        bench_lanczos(clf, x, rec)
    if "deepfool" not in skip:
        bench_deepfool(clf, x if not args.quick else x[:20], reps, rec)
    rec.write(args.out)


if __name__ == "__main__":
    main()
