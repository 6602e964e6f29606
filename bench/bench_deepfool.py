"""Benchmark: our DeepFool against foolbox's L2DeepFoolAttack and torchattacks' DeepFool.

The same 100 held-out MNIST images (every 10th of the fixed held-out split) for every bundled MNIST
model; labels are the model's own predictions (an attack succeeds when the prediction changes).
Same settings for all three where they have them: overshoot 0.02, 50 steps, 10 candidate classes.
The three methods run interleaved over several rounds (each round times each method once, in a
rotating order); the table gives median seconds with min-max, success rate, the per-image L2 ratio
to foolbox (median, and the fraction of images where ours is larger), whether every returned point
is inside the pixel range, and the margin past the boundary (median of 1/t - 1, t the first crossing
on the segment x -> x + r, found by bisection). Speed-ups are the median (min-max) of per-round ratios. Writes
bench/results/bench_deepfool.json (bench/_results.py).

The peers are a bench extra, not a dependency (requirements-bench.txt):

    .venv/bin/pip install --no-deps -r requirements-bench.txt
    .venv/bin/python bench/bench_deepfool.py [--rounds 5] [--models mnist_lenet_relu,...]

Without them the bench says so and exits 0 (so `make bench` still runs the others).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench._results import Results, fmt, paired_ratio  # noqa: E402
from geometry.boundary import ATTACK_OVERSHOOT, DEFAULT_CANDIDATES, deepfool  # noqa: E402
from geometry.data import held_out  # noqa: E402
from geometry.loading import load_classifier  # noqa: E402
from geometry.zoo import zoo_card, zoo_names  # noqa: E402

STEPS = 50


def peers():
    try:
        import foolbox
        import torchattacks
    except Exception as exc:  # noqa: BLE001 - any import failure means: not installed here
        return None, f"{type(exc).__name__}: {exc}"
    return (foolbox, torchattacks), None


def margin_past(clf, x, adv, label, iters=30):
    """Median of 1/t - 1 over successful images: how far past the first crossing on x -> adv the point is."""
    far = clf.logits(adv).argmax(1) != label
    x, adv, label = x[far], adv[far], label[far]
    if len(x) == 0:
        return float("nan")
    r = adv - x
    lo, hi = torch.zeros(len(x)), torch.ones(len(x))
    for _ in range(iters):
        m = (lo + hi) / 2
        f = clf.logits(x + m.reshape(-1, 1, 1, 1) * r).argmax(1) != label
        hi, lo = torch.where(f, m, hi), torch.where(f, lo, m)
    return float(torch.median(1 / hi - 1))


def bench_model(name, x, rounds, fb, ta):
    clf = load_classifier(name, device="cpu")
    module = clf.module.eval()
    label = clf.logits(x).argmax(1)
    lo, hi = clf.pixel_range
    fmodel = fb.PyTorchModel(module, bounds=(lo, hi))
    fb_attack = fb.attacks.L2DeepFoolAttack(steps=STEPS, candidates=DEFAULT_CANDIDATES, overshoot=ATTACK_OVERSHOOT)
    ta_attack = ta.DeepFool(module, steps=STEPS, overshoot=ATTACK_OVERSHOOT)

    def ours():
        return deepfool(clf, x, overshoot=ATTACK_OVERSHOOT, max_iter=STEPS, candidates=DEFAULT_CANDIDATES).point

    def foolbox():
        _, adv, _ = fb_attack(fmodel, x, fb.criteria.Misclassification(label), epsilons=None)
        return adv

    def torchattacks():
        return ta_attack(x, label)

    methods = {"ours": ours, "foolbox": foolbox, "torchattacks": torchattacks}
    times = {k: [] for k in methods}
    out = {}
    names = list(methods)
    for rnd in range(rounds):
        order = names[rnd % 3:] + names[:rnd % 3]
        for k in order:
            t = time.perf_counter()
            adv = methods[k]().detach()
            times[k].append(time.perf_counter() - t)
            out[k] = adv
    norms = {k: (a - x).reshape(len(x), -1).norm(dim=1) for k, a in out.items()}
    success = {k: clf.logits(a).argmax(1) != label for k, a in out.items()}
    both = success["ours"] & success["foolbox"]
    ratio = norms["ours"][both] / norms["foolbox"][both]
    row = {"model": name, "images": len(x), "rounds": rounds}
    for k in methods:
        row[k] = {"seconds_median": statistics.median(times[k]), "seconds_min": min(times[k]),
                  "seconds_max": max(times[k]), "success": float(success[k].float().mean()),
                  "median_l2": float(norms[k][success[k]].median()) if success[k].any() else float("nan"),
                  "in_range": bool(((out[k] >= lo) & (out[k] <= hi)).all()),
                  "margin_past_boundary": margin_past(clf, x, out[k], label)}
    row["l2_ratio_ours_to_foolbox"] = {"median": float(ratio.median()), "frac_ours_larger": float((ratio > 1).float().mean()),
                                       "images": int(both.sum())}
    row["speedup_vs_foolbox"] = paired_ratio(times["foolbox"], times["ours"])
    row["speedup_vs_torchattacks"] = paired_ratio(times["torchattacks"], times["ours"])
    row["times"] = times
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--models", default=None, help="comma-separated (default: every bundled MNIST model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="results file (default bench/results/bench_deepfool.json)")
    args = ap.parse_args(argv)
    mods, why = peers()
    if mods is None:
        print(f"bench_deepfool: skipped: foolbox / torchattacks are not installed ({why}); "
              "install them with: .venv/bin/pip install --no-deps -r requirements-bench.txt")
        return 0
    fb, ta = mods
    torch.set_num_threads(args.threads)
    names = args.models.split(",") if args.models else [n for n in zoo_names() if zoo_card(n).get("dataset") == "mnist"]
    xs, _ = held_out("mnist").tensors()
    x = xs[::10][:100].contiguous()
    rows = []
    rec = Results("bench_deepfool", args.rounds, {"models": names, "images": len(x), "threads": args.threads,
                                                  "overshoot": ATTACK_OVERSHOOT, "steps": STEPS,
                                                  "candidates": DEFAULT_CANDIDATES, "foolbox": fb.__version__,
                                                  "torchattacks": ta.__version__})
    print(f"\n## DeepFool: ours vs foolbox {fb.__version__} L2DeepFoolAttack vs torchattacks {ta.__version__} DeepFool "
          f"({len(x)} held-out images, overshoot {ATTACK_OVERSHOOT}, {STEPS} steps, {DEFAULT_CANDIDATES} candidates, "
          f"{args.rounds} interleaved rounds, {args.threads} threads)\n")
    print("| model | seconds ours / foolbox / torchattacks (median, min-max) | speed-up vs foolbox / torchattacks "
          "| success ours / foolbox / torchattacks | L2 ratio ours/foolbox: median, frac ours larger "
          "| median L2 ours / foolbox / torchattacks | margin past boundary ours / foolbox | all in range |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        row = bench_model(name, x, args.rounds, fb, ta)
        rows.append(row)
        m = ("ours", "foolbox", "torchattacks")
        secs = " / ".join(f"{row[k]['seconds_median']:.2f} ({row[k]['seconds_min']:.2f}-{row[k]['seconds_max']:.2f})"
                          for k in m)
        times = row.pop("times")
        rec.add(f"peers/{name}", f"our batched DeepFool vs foolbox {fb.__version__} / torchattacks {ta.__version__} "
                f"({len(x)} images, {name})", methods={"ours": times["ours"], "foolbox": times["foolbox"],
                                                       "torchattacks": times["torchattacks"]},
                ratio=("foolbox", "ours"), ratio_meaning="speed-up over foolbox", headline=True,
                docs="docs/curvature.md", extra=row)
        print(f"| {name} | {secs} | x{fmt(row['speedup_vs_foolbox'], 1)} / x{fmt(row['speedup_vs_torchattacks'], 1)} | "
              + " / ".join(f"{row[k]['success']:.2f}" for k in m)
              + f" | {row['l2_ratio_ours_to_foolbox']['median']:.4f}, {row['l2_ratio_ours_to_foolbox']['frac_ours_larger']:.2f} | "
              + " / ".join(f"{row[k]['median_l2']:.4f}" for k in m)
              + f" | {row['ours']['margin_past_boundary']:.4f} / {row['foolbox']['margin_past_boundary']:.4f} | "
              + ("yes" if all(row[k]["in_range"] for k in m) else "NO: " + ", ".join(k for k in m if not row[k]["in_range"]))
              + " |", flush=True)
    rec.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
