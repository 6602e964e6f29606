"""``deepfool``: the minimal L2 perturbation that changes the label (or a point on the boundary)."""

from __future__ import annotations

from ..boundary import ATTACK_OVERSHOOT, BOUNDARY_TOL, DEFAULT_CANDIDATES, boundary_point, deepfool
from ..errors import GeometryError
from ._common import add_image_arguments, add_model_arguments, image_from_args, model_from_args, positive, save_npz

HELP = "DeepFool: minimal L2 perturbation to the nearest decision boundary (attack, or a point on the boundary)"


def add_target_argument(p) -> None:
    p.add_argument("--target", default=None,
                   help="push the image INTO this class (index or class name) instead of the nearest other class")


def parse_target(text, clf):
    """A class index or name -> index (None stays None)."""
    if text is None or text == "":
        return None
    names = clf.class_names
    if str(text) in names and not str(text).lstrip("-").isdigit():
        return names.index(str(text))
    try:
        t = int(text)
    except ValueError:
        raise GeometryError(f"--target {text!r} is neither a class index (0..{clf.num_classes - 1}) nor a class name "
                            f"({', '.join(names[:12])}{', ...' if len(names) > 12 else ''})") from None
    if not 0 <= t < clf.num_classes:
        raise GeometryError(f"--target must be a class index in 0..{clf.num_classes - 1}, got {t}")
    return t


def add_arguments(p):
    add_model_arguments(p)
    add_image_arguments(p)
    p.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES,
                   help=f"top classes of the initial logits considered (default {DEFAULT_CANDIDATES})")
    p.add_argument("--overshoot", type=float, default=ATTACK_OVERSHOOT,
                   help=f"final point x + (1 + overshoot) r (default {ATTACK_OVERSHOOT}; ignored with --on-boundary)")
    p.add_argument("--max-iter", type=int, default=50, help="iteration budget (default 50)")
    add_target_argument(p)
    p.add_argument("--no-clip", action="store_true", help="do not keep the iterates in the pixel range")
    p.add_argument("--on-boundary", action="store_true",
                   help="no overshoot, then bisect onto the boundary until |f_k - f_j| <= --tol")
    p.add_argument("--tol", type=float, default=BOUNDARY_TOL,
                   help=f"logit tolerance of --on-boundary (default {BOUNDARY_TOL})")
    p.add_argument("--save", help="write the point and perturbation to this .npz file")


def validate(args) -> None:
    if args.candidates < 2:
        raise GeometryError(f"--candidates must be an integer >= 2 (the label plus at least one other class), got "
                            f"{args.candidates}")
    positive(args.max_iter, "--max-iter", integer=True)
    positive(args.overshoot, "--overshoot", allow_zero=True)
    positive(args.tol, "--tol")


def run(args) -> dict:
    clf = model_from_args(args)
    img = image_from_args(args, clf)
    target = parse_target(args.target, clf)
    common = dict(candidates=args.candidates, max_iter=args.max_iter, target=target, clip=not args.no_clip)
    if args.on_boundary:
        res = boundary_point(clf, img.tensor, tol=args.tol, **common)
    else:
        res = deepfool(clf, img.tensor, overshoot=args.overshoot, **common)
    label, j = int(res.label[0]), int(res.boundary_label[0])
    saved = save_npz(args.save, image=res.x[0], point=res.point[0], perturbation=res.perturbation[0])
    return {"model": clf.name, "label": label, "class_name": clf.class_names[label], "boundary_label": j,
            "boundary_class_name": clf.class_names[j], "perturbation_norm": float(res.norms()[0]),
            "residual": float(res.residual[0]), "iterations": int(res.iterations[0]),
            "converged": bool(res.converged[0]), "clipped": bool(res.clipped[0]),
            "overshoot": 0.0 if args.on_boundary else float(args.overshoot), "on_boundary": bool(args.on_boundary),
            "target": target, "saved": saved}


def text(r: dict) -> str:
    state = "converged" if r["converged"] else "NOT converged"
    lines = [f"{r['class_name']} ({r['label']}) -> {r['boundary_class_name']} ({r['boundary_label']}): "
             f"|r| = {r['perturbation_norm']:.4g} after {r['iterations']} iterations, {state}",
             f"residual |f_k - f_j| = {r['residual']:.3g}; pixel range clipped the step: {r['clipped']}"]
    if r["saved"]:
        lines.append(f"saved {r['saved']}")
    return "\n".join(lines)
