"""``evaluate-detector``: the pre-registered detector evaluation (geometry/preregistered.py).

Splits held-out images into a development and a test half, chooses the detector variant on the development
half only, evaluates it once on the test half (AUC with a bootstrap interval, detection rate, label recovery)
beside the paper's definition; ``--out FILE.json`` also writes a Markdown summary next to it (FILE.md).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..errors import GeometryError
from ..preregistered import (BOOTSTRAP_SEED, DEFAULT_DEV_IMAGES, DEFAULT_RESAMPLES, DEFAULT_TEST_IMAGES,
                             GRID_CONSTRUCTIONS, GRID_SCORES, GRID_SELECTIONS, SPLIT_SEED, declared_grid, markdown,
                             preregistered_evaluation)
from ..detection import DEFAULT_FPR, DEFAULT_SIZES
from ..subspace import DEFAULT_IMAGES, DEFAULT_M
from ._common import add_model_arguments, add_ray_argument, check_out_folder, model_from_args
from .subspace import stderr_progress

NAME = "evaluate-detector"
HELP = ("pre-registered detector evaluation: choose the variant on a development half of the held-out images, "
        "evaluate it once on the test half (AUC with bootstrap 95% interval), beside the paper's definition")


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def add_arguments(p):
    add_model_arguments(p)
    g = p.add_argument_group("split")
    g.add_argument("--dev-images", type=int, default=DEFAULT_DEV_IMAGES,
                   help=f"held-out images in the development half (default {DEFAULT_DEV_IMAGES})")
    g.add_argument("--test-images", type=int, default=DEFAULT_TEST_IMAGES,
                   help=f"held-out images in the test half (default {DEFAULT_TEST_IMAGES})")
    g.add_argument("--split-seed", type=int, default=SPLIT_SEED,
                   help=f"seed of the stratified development/test split (default {SPLIT_SEED})")
    g = p.add_argument_group("grid of variants (chosen on the development half)")
    g.add_argument("--constructions", default=",".join(GRID_CONSTRUCTIONS),
                   help=f"comma-separated constructions of S (default {','.join(GRID_CONSTRUCTIONS)})")
    g.add_argument("--selections", default=",".join(GRID_SELECTIONS),
                   help=f"comma-separated selections of S's directions (default {','.join(GRID_SELECTIONS)})")
    g.add_argument("--scores", default=",".join(GRID_SCORES),
                   help=f"comma-separated scores over classes (default {','.join(GRID_SCORES)})")
    g.add_argument("--fpr", type=float, default=DEFAULT_FPR,
                   help=f"target false-positive rate of the threshold on clean development images (default "
                        f"{DEFAULT_FPR})")
    g = p.add_argument_group("S and attacks")
    g.add_argument("--subspace-images", type=int, default=DEFAULT_IMAGES,
                   help=f"training images S is built from (default {DEFAULT_IMAGES})")
    g.add_argument("--m", type=int, default=DEFAULT_M, help=f"dimension of S (default {DEFAULT_M})")
    g.add_argument("--seed", type=int, default=0, help="seed of S (Lanczos start) and of the attacks (default 0)")
    g.add_argument("--sizes", default=",".join(f"{s:g}" for s in DEFAULT_SIZES),
                   help="attack sizes on the test half: DeepFool x + size*r, FGSM/PGD L2 eps = size x median DeepFool "
                        f"norm (default {','.join(f'{s:g}' for s in DEFAULT_SIZES)})")
    g.add_argument("--bootstrap", type=int, default=DEFAULT_RESAMPLES,
                   help=f"bootstrap resamples for the AUC interval (default {DEFAULT_RESAMPLES})")
    g.add_argument("--bootstrap-seed", type=int, default=BOOTSTRAP_SEED,
                   help=f"seed of the bootstrap (default {BOOTSTRAP_SEED})")
    g.add_argument("--out", default=None,
                   help="write the result to this .json file and a Markdown summary next to it (.md)")
    g.add_argument("--cache-dir", default=None,
                   help="folder for saved S (default $BOUNDARY_GEOMETRY_CACHE or ~/.cache/boundary-geometry)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write saved S")
    g.add_argument("--recompute", action="store_true", help="ignore a saved S and compute it again")
    add_ray_argument(g)


def _sizes(text: str) -> tuple[float, ...]:
    try:
        sizes = tuple(float(t) for t in _names(text))
    except ValueError:
        raise GeometryError(f"--sizes must be comma-separated positive numbers, got {text!r}") from None
    if not sizes or any(not (math.isfinite(s) and s > 0) for s in sizes):
        raise GeometryError(f"--sizes must be comma-separated positive numbers, got {text!r}")
    return sizes


def validate(args) -> None:
    for name in ("dev_images", "test_images"):
        if getattr(args, name) < 2:
            raise GeometryError(f"--{name.replace('_', '-')} must be at least 2, got {getattr(args, name)}")
    for name in ("subspace_images", "m", "bootstrap"):
        if getattr(args, name) < 1:
            raise GeometryError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if not (math.isfinite(args.fpr) and 0 < args.fpr < 1):
        raise GeometryError(f"--fpr is a false-positive rate: it must lie strictly between 0 and 1, got {args.fpr}")
    _sizes(args.sizes)
    try:
        declared_grid(_names(args.constructions), _names(args.selections), _names(args.scores))
    except GeometryError as exc:
        raise GeometryError(f"--constructions/--selections/--scores: {exc}") from None
    if args.out:
        out = Path(args.out)
        if out.suffix != ".json":
            raise GeometryError(f"--out must name a .json file, got {args.out!r}")
        if out.exists() and not out.is_file():
            raise GeometryError(f"--out {args.out!r} exists and is not a regular file")
        check_out_folder(str(out.parent) if str(out.parent) else ".", "--out's folder")
        if out.exists() and not os.access(out, os.W_OK):
            raise GeometryError(f"--out {args.out!r} cannot be written (no permission)")


def run(args) -> dict:
    validate(args)
    clf = model_from_args(args)
    grid = declared_grid(_names(args.constructions), _names(args.selections), _names(args.scores))
    res = preregistered_evaluation(clf, dev_images=args.dev_images, test_images=args.test_images,
                                   split_seed=args.split_seed, grid=grid, subspace_images=args.subspace_images,
                                   m=args.m, seed=args.seed, fpr=args.fpr, sizes=_sizes(args.sizes),
                                   resamples=args.bootstrap, bootstrap_seed=args.bootstrap_seed,
                                   cache=False if args.no_cache else args.cache_dir, recompute=args.recompute,
                                   progress=stderr_progress())
    out = res.to_dict()
    out["device"] = clf.device.type
    out["written"] = None
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        out["written"] = [str(path), str(path.with_suffix(".md"))]
        path.write_text(json.dumps(out, indent=1) + "\n")
        path.with_suffix(".md").write_text(markdown(out))
    return out


def text(r: dict) -> str:
    ch = r["chosen"]
    lines = [f"{r['model']}: chosen on the development half ({r['split']['dev_correct']} images): "
             f"{ch['construction']}/{ch['select']}/{ch['score']}"
             + (" (the paper's definition)" if r["chosen_is_paper_definition"] else "")]
    blocks = [("chosen", r["test"]["chosen"])]
    if not r["chosen_is_paper_definition"]:
        blocks.append(("paper definition", r["test"]["paper_definition"]))
    for name, b in blocks:
        lines.append(f"test half ({r['split']['test_correct']} images), {name}: clean false positives "
                     f"{b['clean_fpr']:.3f}")
        for row in b["rows"]:
            auc = "n/a" if row["auc"] is None else (f"{row['auc']:.3f} [{row['auc_low']:.3f}, "
                                                    f"{row['auc_high']:.3f}]")
            det = "n/a" if row["detection_rate"] is None else f"{row['detection_rate']:.2f}"
            rec = "n/a" if row["recovery_detected"] is None else f"{row['recovery_detected']:.2f}"
            lines.append(f"  {row['attack']:8s} x{row['size']:<4g} AUC {auc}  detected {det}  recovery {rec}")
    if r.get("written"):
        lines.append(f"wrote {', '.join(r['written'])}")
    lines.append(f"{r['seconds']['total']:.0f} s")
    return "\n".join(lines)
