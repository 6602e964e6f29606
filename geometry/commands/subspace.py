"""``subspace``: compute (or load) and save the shared curved subspace S of a model.

Also home of the S options every vulnerability command shares
(:func:`add_subspace_arguments`, :func:`subspace_from_args`, :func:`stderr_progress`).
"""

from __future__ import annotations

import math
import sys
import time

from ..errors import GeometryError
from ..subspace import (CONSTRUCTIONS, DEFAULT_CONSTRUCTION, DEFAULT_IMAGES, DEFAULT_M, SELECTIONS, SIGNS,
                        model_subspace, resolve_select)
from ._common import add_model_arguments, add_ray_argument, model_from_args, save_npz

HELP = "shared curved subspace S: average curvature over many boundary points, top-m directions (cached per model)"


def add_subspace_arguments(p) -> None:
    g = p.add_argument_group("curved subspace S")
    g.add_argument("--subspace-images", type=int, default=DEFAULT_IMAGES,
                   help=f"training images whose boundary points are averaged (default {DEFAULT_IMAGES})")
    g.add_argument("--m", type=int, default=DEFAULT_M, help=f"dimension of S (default {DEFAULT_M})")
    g.add_argument("--construction", choices=CONSTRUCTIONS, default=DEFAULT_CONSTRUCTION,
                   help="projected (default): average of the projected, normalised curvature operators "
                        "P H P / |grad F| at boundary points; paper: the authors' code, average raw Hessian of "
                        "f_orig - f_fool at x + 0.8 r (r: DeepFool, at most 5 iterations), by finite differences "
                        "(--estimator auto = fd)")
    g.add_argument("--select", choices=SELECTIONS, default=None,
                   help="which eigenvectors span S: most = the m largest |curvatures| (default), positive / negative = "
                        "the m most positive / negative, both-ends = ceil(m/2) most positive and floor(m/2) most "
                        "negative")
    g.add_argument("--signs", choices=SIGNS, default=None,
                   help="older name of --select: both (= most), positive, negative")
    g.add_argument("--estimator", choices=("auto", "exact", "fd"), default="auto",
                   help="Hessian estimator: auto = exact for smooth nets, finite differences (fd) for ReLU nets "
                        "and for --construction paper")
    g.add_argument("--step", type=float, default=None,
                   help="finite-difference step h in pixels (default c*sqrt(d)*pixel_span/512, c=10)")
    g.add_argument("--seed", type=int, default=0, help="seed for image choice, Lanczos start and random draws")
    g.add_argument("--cache-dir", default=None,
                   help="folder for saved S and detectors (default $BOUNDARY_GEOMETRY_CACHE or "
                        "~/.cache/boundary-geometry)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write saved results")
    g.add_argument("--recompute", action="store_true", help="ignore a saved S and compute it again")
    add_ray_argument(g)


def stderr_progress(enabled: bool | None = None):
    """A progress callback printing one line per message change to stderr (None when disabled)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    last = {"msg": None, "t": time.perf_counter()}

    def progress(frac: float, msg: str) -> None:
        head = msg.split(":")[0]
        if head != last["msg"]:
            print(f"[{time.perf_counter() - last['t']:6.1f}s] {msg}", file=sys.stderr, flush=True)
            last["msg"] = head

    return progress


def cache_arg(args):
    return False if getattr(args, "no_cache", False) else args.cache_dir


def validate_subspace_arguments(args) -> None:
    """The S options, checked before the model is loaded."""
    for name in ("subspace_images", "m"):
        if getattr(args, name) < 1:
            raise GeometryError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.step is not None and not (math.isfinite(args.step) and args.step > 0):
        raise GeometryError(f"--step must be a positive number, got {args.step}")
    try:
        resolve_select(getattr(args, "select", None), getattr(args, "signs", None))
    except GeometryError as exc:
        raise GeometryError(str(exc).replace("signs=", "--signs ").replace("select=", "--select ")) from None


def subspace_from_args(args, clf, progress=None):
    validate_subspace_arguments(args)
    return model_subspace(clf, images=args.subspace_images, m=args.m, signs=args.signs, select=args.select,
                          construction=args.construction, estimator=args.estimator, step=args.step, seed=args.seed,
                          cache=cache_arg(args), recompute=args.recompute, progress=progress)


def add_arguments(p):
    add_model_arguments(p)
    add_subspace_arguments(p)
    p.add_argument("--save", help="also write S to this .npz (basis (d, m), directions as images, eigenvalues)")


def validate(args) -> None:
    validate_subspace_arguments(args)


def run(args) -> dict:
    clf = model_from_args(args)
    S = subspace_from_args(args, clf, stderr_progress())
    out = S.summary()
    out["device"] = clf.device.type
    out["saved"] = save_npz(args.save, basis=S.basis, images=S.images(), eigenvalues=S.eigenvalues,
                            spectrum=S.spectrum)
    return out


def text(result: dict) -> str:
    ev = result["eigenvalues"]
    built = ("raw Hessians at x + 0.8 r (the authors' construction)" if result.get("construction") == "paper"
             else "projected curvature operators at boundary points")
    lines = [f"S for {result['model']}: m = {result['m']} of d = {result['d']} "
             f"({result['positive']} positive, {result['negative']} negative curvatures)",
             f"construction {result.get('construction', 'projected')}: {built}; selection "
             f"{result.get('select', 'most')}",
             f"average curvatures along S: {', '.join(f'{v:+.4g}' for v in ev[:8])}{' ...' if len(ev) > 8 else ''}",
             f"{result['num_points']} {'points' if result.get('construction') == 'paper' else 'boundary points'}, "
             f"{result['hvp_count']} Hessian-vector products, "
             f"{result['seconds']:.1f} s, estimator {result['settings']['estimator']}"
             + (f" (h = {result['settings']['step']:.3g})" if result['settings'].get('step') else "")
             + ("" if result["converged"] else "  [Lanczos did not fully converge]"),
             f"random-subspace baseline sqrt(m/d) = {result['random_baseline']:.3f}"]
    if result.get("cache_path"):
        lines.append(f"saved S: {result['cache_path']}")
    if result.get("saved"):
        lines.append(f"wrote {result['saved']}")
    return "\n".join(lines)
