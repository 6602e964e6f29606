"""``curvature``: principal curvatures of the decision boundary at the image's boundary point."""

from __future__ import annotations

from ..boundary import boundary_point
from ..curvature import principal_curvatures, resolve_estimator
from ..errors import GeometryError
from ._common import add_image_arguments, add_model_arguments, image_from_args, model_from_args, positive, save_npz
from .deepfool import add_target_argument, parse_target

HELP = "principal curvatures (signed) of the decision boundary at the image's boundary point"


def add_arguments(p):
    add_model_arguments(p)
    add_image_arguments(p)
    p.add_argument("--estimator", choices=("auto", "exact", "fd"), default="auto",
                   help="auto (default: exact for smooth networks, fd for piecewise-linear or unknown ones), exact "
                        "(autograd Hessian; zero almost everywhere for ReLU nets, so not computed there) or fd "
                        "(finite differences of gradients)")
    p.add_argument("--step", type=float, default=None,
                   help="finite-difference step h in pixels (default c*sqrt(d)*pixel_span/512, c=10)")
    p.add_argument("--k", type=int, default=10, help="curvatures per end of the spectrum (Lanczos; default 10)")
    method = p.add_mutually_exclusive_group()
    method.add_argument("--full", action="store_true", help="every curvature (d-1 values; d <= 4096)")
    method.add_argument("--lanczos", action="store_true",
                        help="only the k most positive and k most negative curvatures, by Lanczos (default when d > "
                             "256, or d > 1024 for --estimator fd; smaller d gets the full spectrum)")
    add_target_argument(p)
    p.add_argument("--tol", type=float, default=1e-6, help="Lanczos relative residual tolerance (default 1e-6)")
    p.add_argument("--max-iter", type=int, default=None, help="Lanczos product budget (default max(200, 30k))")
    p.add_argument("--seed", type=int, default=0, help="Lanczos start vector seed")
    p.add_argument("--save", help="write the boundary point, curvatures and directions to this .npz file")


def validate(args) -> None:
    if args.step is not None and args.estimator == "exact":
        raise GeometryError("--step is the finite-difference step; use it with --estimator fd")
    positive(args.step, "--step")
    positive(args.k, "--k", integer=True)
    positive(args.tol, "--tol")
    positive(args.max_iter, "--max-iter", integer=True)


def run(args) -> dict:
    validate(args)
    clf = model_from_args(args)
    estimator = resolve_estimator(clf, args.estimator)
    if args.step is not None and estimator != "fd":
        raise GeometryError(f"--step is the finite-difference step, but --estimator auto chose exact for {clf.name} "
                            "(a smooth network); add --estimator fd to use it")
    img = image_from_args(args, clf)
    target = parse_target(args.target, clf)
    b = boundary_point(clf, img.tensor, target=target)
    res = principal_curvatures(clf, img.tensor, estimator=estimator, step=args.step, k=args.k, boundary=b,
                               target=target, full=True if args.full else (False if args.lanczos else None), tol=args.tol,
                               max_iter=args.max_iter, seed=args.seed)
    out = {"model": clf.name, **res.summary(), "class_name": clf.class_names[res.label],
           "boundary_class_name": clf.class_names[res.boundary_label], "target": target}
    out["saved"] = save_npz(args.save, **res.arrays())
    return out


def text(r: dict) -> str:
    c = r["curvatures"]
    est = "exact Hessian" if r["estimator"] == "exact" else f"finite differences, h = {r['step']:.4g}"
    lines = [f"boundary {r['class_name']} ({r['label']}) | {r['boundary_class_name']} ({r['boundary_label']}) at "
             f"distance {r['boundary_distance']:.4g}, |grad F| = {r['gradient_norm']:.4g}",
             f"{len(c)} principal curvatures ({est}, {r['method']}, {r['hvp_count']} Hessian-vector products, "
             f"{'converged' if r['converged'] else 'NOT converged'}):",
             "  most positive: " + ", ".join(f"{v:+.4g}" for v in c[:5]),
             "  most negative: " + ", ".join(f"{v:+.4g}" for v in c[-5:][::-1])]
    if r["warning"]:
        lines.append("note: " + r["warning"])
    if r["saved"]:
        lines.append(f"saved {r['saved']}")
    return "\n".join(lines)
