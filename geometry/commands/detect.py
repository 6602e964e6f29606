"""``detect``: is this image carrying a small adversarial perturbation? (curvature-asymmetry detector)."""

from __future__ import annotations

import math

import torch

from ..detection import ATTACKS, DEFAULT_FPR, DIRECTION_SETS, SCORES, attack_batch, model_detector
from ..detector_variant import PREREGISTERED, REQUESTS, VariantChoice, check_request, resolve_variant, variant_detector
from ..errors import GeometryError
from ..subspace import DEFAULT_CONSTRUCTION
from ._common import add_image_arguments, add_model_arguments, image_from_args, model_from_args
from .subspace import (add_subspace_arguments, cache_arg, stderr_progress, subspace_from_args,
                       validate_subspace_arguments)

HELP = "curvature-asymmetry detector: score, threshold, flag and recovered label for one image"


def add_detector_arguments(p) -> None:
    g = p.add_argument_group("detector")
    g.add_argument("--fpr", type=float, default=DEFAULT_FPR,
                   help=f"target false-positive rate on clean held-out images (default {DEFAULT_FPR})")
    g.add_argument("--calibration-images", type=int, default=200,
                   help="clean held-out images used to calibrate the sign and the threshold (default 200)")
    g.add_argument("--directions", choices=DIRECTION_SETS, default="all",
                   help="average over S (the definition, default) or, as a variant, over the m most positively / "
                        "negatively curved directions of the same average operator")


VARIANT_OPTIONS = ("construction", "select", "signs", "directions", "score")
"""Options that choose the detector piece by piece (the older way); they override the --variant default."""


def add_arguments(p):
    add_model_arguments(p)
    add_image_arguments(p)
    add_subspace_arguments(p)
    add_detector_arguments(p)
    g = p.add_argument_group("detector variant")
    g.add_argument("--variant", default=None,
                   help=f"which detector: {PREREGISTERED} (default: for a bundled model the variant chosen on the "
                        "development half of its pre-registered evaluation, assets/precomputed/<model>/"
                        "detector_variant.json; for any other model the fallback projected/negative/runner-up), "
                        f"{REQUESTS[1]} (the paper's definition: paper/most/max), or construction/select/score "
                        "(e.g. projected/most/max). --construction/--select/--directions/--score instead choose it "
                        "piece by piece, as before")
    g.add_argument("--score", choices=SCORES, default=None,
                   help="score over classes: max over c != k (the definition) or the runner-up class only")
    p.set_defaults(construction=None, directions=None)
    g = p.add_argument_group("perturb the image first (optional)")
    g.add_argument("--attack", choices=("none",) + ATTACKS, default="none",
                   help="perturb the image before detection (default none)")
    g.add_argument("--size", type=float, default=1.0,
                   help="attack size: DeepFool x + size*r; FGSM/PGD L2 eps = size * this image's DeepFool norm "
                        "(default 1)")


def _piecewise(args) -> list[str]:
    """The options of :data:`VARIANT_OPTIONS` given on the command line."""
    return [f"--{k}" for k in VARIANT_OPTIONS if getattr(args, k, None) is not None]


def validate(args) -> None:
    given = _piecewise(args)
    if args.variant is not None:
        check_request(args.variant)
        if given:
            raise GeometryError(f"--variant and {'/'.join(given)} both choose the detector; give one of them")
    if args.calibration_images < 2:
        raise GeometryError(f"--calibration-images must be at least 2, got {args.calibration_images}")
    if not 0 < args.fpr < 1:
        raise GeometryError(f"--fpr is a false-positive rate: it must lie strictly between 0 and 1, got {args.fpr}")
    if not (math.isfinite(args.size) and args.size > 0):
        raise GeometryError(f"--size must be a positive number, got {args.size}")
    validate_subspace_arguments(args)


def run(args) -> dict:
    validate(args)
    clf = model_from_args(args)
    img = image_from_args(args, clf)
    progress = stderr_progress()
    if _piecewise(args):  # the older way: S from the S options, then directions and score
        args.construction = args.construction or DEFAULT_CONSTRUCTION
        S = subspace_from_args(args, clf, progress)
        if progress:
            progress(0.0, f"calibrating the detector on {args.calibration_images} clean held-out images")
        det = model_detector(clf, S, fpr=args.fpr, images=args.calibration_images, seed=args.seed,
                             directions=args.directions or "all", score=args.score or "max", cache=cache_arg(args),
                             recompute=args.recompute)
        from ..preregistered import Variant

        choice = VariantChoice(Variant(**det.variant), "options", "requested")
    else:
        choice = resolve_variant(clf, args.variant or PREREGISTERED)
        if progress:
            progress(0.0, f"detector {choice.describe()}; S and the calibration on {args.calibration_images} clean "
                          "held-out images")
        S, det = variant_detector(clf, choice.variant, images=args.subspace_images, m=args.m,
                                  estimator=args.estimator, step=args.step, seed=args.seed, fpr=args.fpr,
                                  calibration_images=args.calibration_images, cache=cache_arg(args),
                                  recompute=args.recompute, progress=progress, with_subspace=True)
    x = clf.as_batch(img.tensor)
    clean_label = int(clf.predict(x)[0])
    eps = None
    if args.attack != "none":
        from ..boundary import deepfool

        ref = deepfool(clf, x)
        if not bool(ref.converged[0]):
            raise GeometryError("DeepFool did not find an adversarial perturbation for this image, so there is no "
                                "attack size to scale; pick another image or --attack none")
        y = torch.tensor([clean_label], device=x.device)
        x, eps = attack_batch(clf, x, y, args.attack, args.size, float(ref.norms()[0]), seed=args.seed)
    res = det.detect(clf, x)
    out = res.item(0)
    out.update({"model": clf.name, "device": clf.device.type, "class_name": clf.class_names[out["label"]],
                "recovered_class_name": clf.class_names[out["recovered_label"]], "clean_label": clean_label,
                "true_label": img.label, "attack": args.attack, "attack_size": args.size if args.attack != "none"
                else None, "eps": eps, "perturbation_norm": float((x - clf.as_batch(img.tensor)).norm()),
                "sign": det.sign, "fpr": det.fpr, "m": det.m, "directions": det.directions, "variant": det.variant,
                "variant_choice": choice.to_dict(), "estimator": det.estimator, "step": det.step,
                "calibration": det.calibration, "subspace_path": S.path, "detector_path": det.path})
    return out


def text(r: dict) -> str:
    verdict = "FLAGGED as perturbed" if r["flagged"] else "not flagged (looks clean)"
    lines = [f"label {r['label']} ({r['class_name']}): score {r['score']:+.4g} vs threshold {r['threshold']:+.4g} "
             f"(target FPR {r['fpr']:g}) -> {verdict}"]
    if r["flagged"]:
        lines.append(f"recovered label: {r['recovered_label']} ({r['recovered_class_name']})")
    if r["attack"] != "none":
        lines.append(f"attacked with {r['attack']} size {r['attack_size']:g}: |perturbation| = "
                     f"{r['perturbation_norm']:.3g}; label {r['clean_label']} -> {r['label']}")
    lines.append(f"rho_c: {', '.join(f'{c}:{v:+.3g}' for c, v in enumerate(r['rho']))}  (sign s = {r['sign']:+d}, "
                 f"m = {r['m']}, {r['estimator']})")
    v, ch = r["variant"], r["variant_choice"]
    why = {"preregistered": "chosen on the development half of this model's pre-registered evaluation",
           "fallback": "the fallback for a model without a pre-registered evaluation"}.get(ch["source"], "as requested")
    pd = ch["paper_definition"]
    lines.append(f"detector variant {v['construction']}/{v['select']}/{v['score']} ({why})"
                 + ("" if ch["is_paper_definition"] else
                    f"; the paper's definition: --variant paper ({pd['construction']}/{pd['select']}/{pd['score']})"))
    return "\n".join(lines)
