"""``section``: the label map of a 2-D cross-section through one image (the same map as the app's)."""

from __future__ import annotations

import numpy as np

from ..errors import GeometryError
from ..images import load_image
from ..sections import DEFAULT_PLANE, DEFAULT_RESOLUTION, EXTENT_FACTOR, _check_grid_args, cross_section, label_map_text
from ._common import add_image_arguments, add_model_arguments, image_from_args, model_from_args, save_npz

HELP = "2-D cross-section of the decision regions in a plane through an image: label map, margins, range flags"


def add_arguments(p):
    add_model_arguments(p)
    add_image_arguments(p)
    p.add_argument("--plane", default=DEFAULT_PLANE,
                   help="two directions from normal, random, curv+, curv-, adversarial[:deepfool|fgsm|pgd] "
                        "(curv+:fd / curv+:exact pick the curvature estimator; default exact for smooth networks, "
                        "fd for piecewise-linear ones), e.g. normal,random (flat view), normal,curv+ (curved "
                        "view), random,random, adversarial,random; or image:REF (towards another image), "
                        "images:REF1,REF2 (the plane through three images), npy:U.npy,V.npy; "
                        f"default {DEFAULT_PLANE}")
    p.add_argument("--extent", type=float, default=None,
                   help=f"half-width of the square in L2 pixel units (default: {EXTENT_FACTOR:g} x the image's "
                        "DeepFool distance, grown to contain the marked images)")
    p.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION,
                   help=f"grid points per axis (default {DEFAULT_RESOLUTION})")
    p.add_argument("--adaptive", action="store_true",
                   help="refine only near label changes (same labels as the dense grid unless a class pocket "
                        "misses every coarse grid point; far fewer model evaluations)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random directions (default 0)")
    p.add_argument("--save", metavar="PATH.npz", help="write labels, margins, masks, axes, plane vectors and points")


def validate(args) -> None:
    if args.resolution is None or args.resolution < 3:
        raise GeometryError(f"--resolution must be an integer >= 3, got {args.resolution}")
    _check_grid_args(args.extent, args.resolution)


def run(args) -> dict:
    validate(args)
    clf = model_from_args(args)
    img = image_from_args(args, clf)
    sec = cross_section(clf, img.tensor, args.plane, extent=args.extent, resolution=args.resolution,
                        adaptive=args.adaptive, seed=args.seed,
                        image_loader=lambda ref: load_image(ref, clf).tensor)
    saved = None
    if args.save:
        saved = save_npz(args.save, **sec.arrays())
    info = sec.plane.info
    return {"plane": sec.plane.spec, "extent": sec.extent, "resolution": sec.resolution,
            "labels": sec.labels.tolist(), "evaluations": int(sec.evaluations),
            "outside_pixel_range": sec.outside_count,
            "dense_evaluations": int(sec.dense_evaluations), "adaptive": bool(args.adaptive), "seed": args.seed,
            "model": clf.name, "image": img.source, "label": info.get("label"),
            "boundary_label": info.get("boundary_label"), "boundary_distance": info.get("boundary_distance"),
            "class_names": list(clf.class_names), "classes_present": sec.classes_present(),
            "axis_names": list(sec.plane.axis_names), "anchor": info.get("anchor"),
            "estimator": info.get("estimator"), "step": info.get("step"),
            "points": [p.to_dict() for p in sec.points], "a_range": [float(sec.a[0]), float(sec.a[-1])],
            "b_range": [float(sec.b[0]), float(sec.b[-1])], "seconds": round(sec.seconds, 3),
            "warnings": list(info.get("warnings", [])), "saved": saved}


def _num(x: float) -> str:
    return "0" if abs(x) < 5e-7 else f"{x:.3g}"


def text(result: dict) -> str:
    labels = np.asarray(result["labels"])
    names = result["class_names"]
    lines = [f"plane {result['plane']} ({result['axis_names'][0]} x {result['axis_names'][1]}), "
             f"extent +-{result['extent']:.4g}, {result['resolution']}x{result['resolution']} grid, "
             f"{result['evaluations']} model evaluations (dense: {result['dense_evaluations']})",
             f"image {result['image']}: class {names[result['label']]}, DeepFool distance "
             f"{result['boundary_distance']:.4g} to class {names[result['boundary_label']]}"
             + (f"; curvature estimator {result['estimator']}" + (f" (h={result['step']:.3g})" if result['step'] else "")
                if result.get("estimator") else ""),
             f"classes in the plane: {', '.join(names[c] for c in result['classes_present'])}; "
             f"{result['outside_pixel_range']} of {labels.size} points outside the pixel range",
             "marked: " + "; ".join(f"{p['name']} at ({_num(p['a'])}, {_num(p['b'])})"
                                    + (f", {p['offset']:.3g} off the plane" if p['offset'] > 1e-6 else "")
                                    for p in result["points"])]
    lines += [f"warning: {w}" for w in result["warnings"]]
    if result.get("saved"):
        lines.append(f"saved {result['saved']}")
    lines.append("label map (top row = largest b, columns = a from left to right):")
    lines.append(label_map_text(labels))
    return "\n".join(lines)
