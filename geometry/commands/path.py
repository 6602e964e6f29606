"""``path``: a path inside one classification region between two images (or many pairs), proven or sampled."""

from __future__ import annotations

from ..errors import GeometryError
from ..paths import (DEFAULT_MAX_ANCHORS, DEFAULT_SAFETY, PAIR_KINDS, PROJECTION_OVERSHOOT, adversarial_endpoint,
                     connecting_path, gallery_pairs, path_statistics)
from ._common import (add_image_arguments, add_model_arguments, add_ray_argument, image_from_args,
                      model_from_args, save_npz)

HELP = ("connect two images of one class by a path inside its region, proven by a Lipschitz bound or checked on "
        "samples (or --pairs N over the gallery)")


def add_arguments(p):
    add_model_arguments(p)
    add_image_arguments(p, default="gallery:1:0")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--image2", help="the other end: PNG/JPEG, .npy or gallery:CLASS:INDEX, predicted in the same "
                                    "class as --image")
    g.add_argument("--adversarial-from", metavar="IMAGE",
                   help="build the other end from this image of another class, pushed into --image's class by "
                        "targeted DeepFool")
    g.add_argument("--pairs", type=int, metavar="N",
                   help="batch mode: N pairs from the held-out gallery (classes in turn); prints statistics")
    p.add_argument("--kind", choices=PAIR_KINDS, default="natural",
                   help="batch mode: natural (two images of a class) or adversarial (an image and another class's "
                        "image pushed into its class); default natural")
    p.add_argument("--seed", type=int, default=0, help="batch mode: seed for drawing the pairs (default 0)")
    p.add_argument("--max-anchors", type=int, default=DEFAULT_MAX_ANCHORS,
                   help=f"anchor budget per path (default {DEFAULT_MAX_ANCHORS})")
    p.add_argument("--overshoot", type=float, default=PROJECTION_OVERSHOOT,
                   help=f"targeted DeepFool overshoot when moving a midpoint into the region (default "
                        f"{PROJECTION_OVERSHOOT})")
    p.add_argument("--verification", default="auto",
                   help="auto (proven with the weight-derived Lipschitz bound when the model allows it, else local), "
                        "bound, local (sampled, not proven), or a slope bound (number); see docs/paths.md")
    p.add_argument("--safety", type=float, default=DEFAULT_SAFETY,
                   help=f"local verification: factor on the observed slope (default {DEFAULT_SAFETY})")
    p.add_argument("--save", help="write the path's arrays (or the batch table) to this .npz file")
    add_ray_argument(p)


def validate(args) -> None:
    if getattr(args, "ray", None) is not None and args.pairs is None:
        raise GeometryError("--ray applies to batch mode (--pairs N); one path runs in this process")


def _verification(value: str):
    try:
        return float(value)
    except ValueError:
        return value


def run(args) -> dict:
    clf = model_from_args(args)
    kw = dict(max_anchors=args.max_anchors, overshoot=args.overshoot, verification=_verification(args.verification),
              safety=args.safety)
    if args.pairs is not None:
        ps = gallery_pairs(clf, args.pairs, kind=args.kind, seed=args.seed, overshoot=args.overshoot)
        stats = path_statistics(clf, ps.x1, ps.x2, descriptions=ps.descriptions, kind=args.kind, label=ps.labels,
                                **kw)
        out = {"model": clf.name, **stats.summary(), "table": stats.table()}
        out["saved"] = save_npz(args.save, **stats.arrays())
        out["parameters"] = stats.parameters
        return out
    img = image_from_args(args, clf)
    label = int(clf.predict(img.tensor)[0])
    if args.image2 is not None:
        other = image_from_args(args, clf, "image2")
        x2 = other.tensor
        source2 = other.source
    elif args.adversarial_from is not None:
        src = image_from_args(args, clf, "adversarial_from")
        x2 = adversarial_endpoint(clf, src.tensor, label, overshoot=args.overshoot)[0]
        source2 = f"{src.source}, pushed into class {clf.class_names[label]} by targeted DeepFool"
    else:
        raise GeometryError("give the other end: --image2 IMAGE, --adversarial-from IMAGE, or --pairs N for many "
                            "gallery pairs")
    path = connecting_path(clf, img.tensor, x2, **kw)
    out = {"model": clf.name, **path.to_dict(), "class_name": clf.class_names[label], "image": img.source,
           "image2": source2}
    out["saved"] = save_npz(args.save, **path.arrays())
    return out


def _fmt(v, digits=4):
    return "-" if v is None else (f"{v:.{digits}g}" if isinstance(v, float) else str(v))


def _count_line(r: dict) -> str:
    """Proven and sampled-only paths counted apart (only proven ones are verified)."""
    parts = [f"{r['proven']} proven"]
    if r.get("given_bound"):
        parts.append(f"{r['given_bound']} proven under the given slope bound")
    parts.append(f"{r['sampled_only']} connected on samples only (not proven)")
    return f"verified paths: {r['verified']}/{r['pairs']} ({', '.join(parts)})"


def text(r: dict) -> str:
    if "pairs" in r:
        a = r["anchors"] or {}
        o = r["chord_outside_fraction"] or {}
        lines = [f"{r['model']}: {r['pairs']} {r['kind']} pairs, {r['connected']} connected "
                 f"({100 * r['connected_fraction']:.0f}%) in {r['seconds']} s",
                 _count_line(r),
                 f"anchors per connected path: {r['anchors_histogram']} (mean {_fmt(a.get('mean'))}, "
                 f"max {_fmt(a.get('max'))})",
                 f"chord leaves the region for {100 * r['chord_leaves_region_fraction']:.0f}% of pairs; fraction of "
                 f"the chord outside: mean {_fmt(o.get('mean'))}, median {_fmt(o.get('median'))}, "
                 f"max {_fmt(o.get('max'))}"]
        for key, name in (("length_ratio", "path length / chord"), ("max_chord_deviation", "largest anchor "
                                                                                           "deviation / chord"),
                          ("min_margin", "smallest margin on the path"), ("evaluations", "model evaluations")):
            s = r[key]
            if s:
                lines.append(f"{name}: median {_fmt(s['median'])}, max {_fmt(s['max'])}")
        for n in r["not_connected"]:
            lines.append(f"NOT CONNECTED {n['pair']}: {n.get('reason')} ({n.get('detail', '')})")
        if r.get("saved"):
            lines.append(f"saved {r['saved']}")
        return "\n".join(lines)
    g = r.get("guarantee")
    if not r["connected"]:
        verdict = "NO path found"
    elif g == "proven":
        verdict = f"CONNECTED by a proven path ({r['samples']} samples)"
    elif g == "given_bound":
        verdict = f"CONNECTED by a path proven under the given slope bound ({r['samples']} samples)"
    else:
        verdict = f"connected on {r['samples']} samples, not proven"
    bound = (f"proven lower bound {_fmt(r['certified_margin'])}" if r["verified"] else
             f"estimated lower bound {_fmt(r['certified_margin'])}, not proven")
    lines = [f"{r['model']}: class {r['class_name']}: {verdict}", f"  from {r['image']}", f"  to   {r['image2']}",
             f"anchors: {r['anchors']} ({r['moved_anchors']} moved into the region)",
             f"path length / chord: {_fmt(r['length_ratio'])}   largest anchor deviation / chord: "
             f"{_fmt(r['max_chord_deviation'])}",
             f"fraction of the straight chord outside the region: {_fmt(r['chord_outside_fraction'])}",
             f"smallest logit margin on the path: {_fmt(r['min_margin'])}"
             + (f" ({bound})" if r["connected"] else ""),
             f"check: {g} -- {r.get('guarantee_text', '')}",
             f"model evaluations: {r['evaluations']} ({r['gradient_evaluations']} with gradients), {r['seconds']} s"]
    if r["stopped"]:
        s = r["stopped"]
        lines.append(f"stopped: {s['reason']} -- {s['detail']}; first failing segment {s['segment']} of "
                     f"{s['segments']} ({s['check']}"
                     + (f" in {s['check_precision']}" if s.get("check_precision") == "float64" else "")
                     + (f", at {100 * s['position']:.1f}% of the path, class {s['bad_label']}" if s["position"]
                        is not None else "") + ")")
    if r.get("saved"):
        lines.append(f"saved {r['saved']}")
    return "\n".join(lines)
