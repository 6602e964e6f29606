"""``reproduce``: run the paper's experiments on a model and write the reproduction report.

The numbers come from ``geometry.reproduction``; the report (Plotly figures, Markdown, HTML) is rendered by
``dashboard/report.py``, imported only when the report is written (the library never imports Plotly)."""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import GeometryError
from ..reproduction import REPRODUCE_DEFAULTS as D
from ..reproduction import run_reproduction, summary_row, verdicts
from ..subspace import resolve_select
from ._common import add_model_arguments, check_out_folder, model_from_args
from .subspace import add_subspace_arguments, cache_arg, stderr_progress, validate_subspace_arguments

HELP = ("run the paper's experiments (curvature, S in both constructions, vulnerability, detector, pre-registered "
        "detector evaluation) and write a Markdown + HTML report")


def _sizes(text: str):
    try:
        vals = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise GeometryError(f"--sizes must be comma-separated numbers such as 1,1.5,2, got {text!r}") from None
    if not vals or any(not (v > 0 and math.isfinite(v)) for v in vals):
        raise GeometryError(f"--sizes must be positive finite numbers, got {text!r}")
    return vals


def add_arguments(p):
    add_model_arguments(p)
    add_subspace_arguments(p)
    g = p.add_argument_group("report")
    g.add_argument("--out", default=None, help="output folder (default reports/<model>)")
    g.add_argument("--format", choices=("md", "html", "both"), default="both", help="report format (default both)")
    g.add_argument("--curvature-images", type=int, default=D["curvature_images"],
                   help=f"held-out images whose principal curvatures are plotted (default {D['curvature_images']})")
    g.add_argument("--curvature-k", type=int, default=D["curvature_k"],
                   help=f"curvatures per end of each spectrum (default {D['curvature_k']})")
    g.add_argument("--images", type=int, default=D["images"],
                   help=f"held-out images for the vulnerability experiments (default {D['images']})")
    g.add_argument("--draws", type=int, default=D["draws"], help=f"random draws per image and eps ({D['draws']})")
    g.add_argument("--calibration-images", type=int, default=D["calibration_images"],
                   help=f"clean held-out images for the detector's sign and threshold ({D['calibration_images']})")
    g.add_argument("--evaluation-images", type=int, default=D["evaluation_images"],
                   help=f"other held-out images to attack and score ({D['evaluation_images']})")
    g.add_argument("--fpr", type=float, default=D["fpr"], help=f"target false-positive rate ({D['fpr']})")
    g.add_argument("--sizes", default=",".join(f"{s:g}" for s in D["sizes"]),
                   help="attack sizes: DeepFool x + s*r; FGSM/PGD eps = s * median DeepFool norm (default 1,1.5,2)")
    g.add_argument("--connectivity-pairs", type=int, default=D["connectivity_pairs"],
                   help="same-class pairs for connectivity statistics when geometry.paths is installed (0: skip)")
    g.add_argument("--no-preregistered", action="store_true",
                   help="skip the pre-registered detector evaluation (geometry/preregistered.py; by default it runs "
                        "with --calibration-images development and --evaluation-images test images)")
    g.add_argument("--asymmetry-points", type=int, default=D["asymmetry_points"],
                   help="held-out images for the curvature-asymmetry statistics (geometry.asymmetry at its defaults; "
                        f"0: skip; default {D['asymmetry_points']})")
    g.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def validate(args) -> None:
    for name in ("curvature_images", "curvature_k", "images", "draws", "calibration_images", "evaluation_images"):
        if getattr(args, name) < 1:
            raise GeometryError(f"--{name.replace('_', '-')} must be a positive integer")
    if args.asymmetry_points < 0:
        raise GeometryError(f"--asymmetry-points must be 0 (skip) or more, got {args.asymmetry_points}")
    if args.connectivity_pairs < 0:
        raise GeometryError(f"--connectivity-pairs must be 0 or more, got {args.connectivity_pairs}")
    if not 0 < args.fpr < 1:
        raise GeometryError(f"--fpr is a false-positive rate: it must lie strictly between 0 and 1, got {args.fpr}")
    _sizes(args.sizes)
    check_out_folder(args.out)
    validate_subspace_arguments(args)


def run(args) -> dict:
    validate(args)
    clf = model_from_args(args)
    out = Path(args.out) if args.out else Path("reports") / clf.name
    check_out_folder(str(out))
    progress = stderr_progress(not args.quiet)
    rep = run_reproduction(clf, subspace_images=args.subspace_images, m=args.m, estimator=args.estimator,
                           step=args.step, seed=args.seed, curvature_images=args.curvature_images,
                           curvature_k=args.curvature_k, images=args.images, draws=args.draws,
                           calibration_images=args.calibration_images, evaluation_images=args.evaluation_images,
                           fpr=args.fpr, sizes=_sizes(args.sizes), connectivity_pairs=args.connectivity_pairs,
                           construction=args.construction, select=resolve_select(args.select, args.signs),
                           preregistered=not args.no_preregistered, asymmetry_points=args.asymmetry_points,
                           cache=cache_arg(args), recompute=args.recompute,
                           progress=progress)
    try:
        from dashboard.report import write_report  # Plotly: only here, never in the library
    except ImportError as exc:
        raise GeometryError(f"writing the report needs Plotly and the dashboard package (run from the repository "
                            f"root with requirements.txt installed): {exc}") from None

    formats = ("md", "html") if args.format == "both" else (args.format,)
    written = write_report(rep, out, formats)
    return {"model": clf.name, "device": clf.device.type, "seconds": rep.seconds, "written": written,
            "summary": summary_row(rep.numbers, rep.settings), "verdicts": verdicts(rep.numbers),
            "notes": rep.notes}


def text(r: dict) -> str:
    lines = [f"report for {r['model']} ({r['seconds']:.0f} s):"] + [f"  {k}: {v}" for k, v in r["written"].items()]
    lines += [f"- {v}" for v in r["verdicts"].values()]
    return "\n".join(lines)
