"""``asymmetry``: the mean sorted principal-curvature spectrum over many held-out images (the paper's asymmetry)."""

from __future__ import annotations

import math

from ..asymmetry import DEFAULT_K, DEFAULT_POINTS, curvature_asymmetry
from ..errors import GeometryError
from ._common import add_model_arguments, model_from_args, positive

HELP = ("curvature asymmetry over many held-out images: mean sorted spectrum with a 95% band, sign fractions, "
        "at boundary points and at the authors' x + 0.8 r")
MAX_POINTS = 10000
ESTIMATOR_CHOICES = ("auto", "exact", "fd", "both")
LOCATION_CHOICES = ("boundary", "inside", "both")


def add_arguments(p):
    add_model_arguments(p)
    p.add_argument("--points", type=int, default=DEFAULT_POINTS,
                   help=f"held-out images (default {DEFAULT_POINTS}); images whose search fails are dropped and "
                        "counted")
    p.add_argument("--k", type=int, default=DEFAULT_K,
                   help=f"curvatures per end of the spectrum (2k per point; default {DEFAULT_K})")
    p.add_argument("--estimator", choices=ESTIMATOR_CHOICES, default="auto",
                   help="auto (default: exact for smooth networks; fd at 0.5, 1 and 2 x the default step for "
                        "piecewise-linear or unknown ones), exact, fd, or both")
    p.add_argument("--steps", default=None,
                   help="comma-separated finite-difference steps h in pixels, e.g. 0.27,0.55,1.1 (fd only; default: "
                        "the default step c*sqrt(d)*span/512, c=10, for smooth networks, 0.5/1/2 x it otherwise)")
    p.add_argument("--location", choices=LOCATION_CHOICES, default="both",
                   help="boundary (the boundary point of each image), inside (x + 0.8 r, the authors' point) or both "
                        "(default)")
    p.add_argument("--method", choices=("auto", "lanczos", "full"), default="auto",
                   help="eigen-solver: auto (default: dense spectrum for d <= 256 and for fd up to d = 1024, as the "
                        "curvature command does; else signed Lanczos), lanczos or full")
    p.add_argument("--max-iter", type=int, default=None, help="Lanczos product budget (default max(200, 30k))")
    p.add_argument("--seed", type=int, default=0, help="seed of the images, the Lanczos start and the bootstrap")


def _steps(text: str | None):
    if text is None:
        return None
    parts = [s.strip() for s in text.split(",") if s.strip()]
    if not parts:
        raise GeometryError("--steps must list at least one step, e.g. --steps 0.27,0.55,1.1")
    out = []
    for s in parts:
        try:
            v = float(s)
        except ValueError:
            raise GeometryError(f"--steps must be comma-separated numbers (pixels), got {s!r}") from None
        if not (v > 0 and math.isfinite(v)):
            raise GeometryError(f"--steps values must be positive numbers of pixels, got {s}")
        out.append(v)
    return out


def _estimators(choice: str):
    return None if choice == "auto" else (("exact", "fd") if choice == "both" else (choice,))


def validate(args) -> None:
    positive(args.points, "--points", integer=True)
    if args.points > MAX_POINTS:
        raise GeometryError(f"--points must be at most {MAX_POINTS}, got {args.points}")
    positive(args.k, "--k", integer=True)
    positive(args.max_iter, "--max-iter", integer=True)
    if args.seed < 0:
        raise GeometryError(f"--seed must be a non-negative integer, got {args.seed}")
    steps = _steps(args.steps)
    if steps is not None and args.estimator == "exact":
        raise GeometryError("--steps are finite-difference steps; use them with --estimator fd, both or auto")


def run(args) -> dict:
    validate(args)
    clf = model_from_args(args)
    steps = _steps(args.steps)
    estimators = _estimators(args.estimator)
    if steps is not None and estimators is None and clf.piecewise_linear is False:
        raise GeometryError(f"--steps are finite-difference steps, but --estimator auto chose exact for {clf.name} "
                            "(a smooth network); add --estimator fd or both to use them")
    res = curvature_asymmetry(clf, points=args.points, k=args.k, estimators=estimators, steps=steps,
                              locations=args.location, seed=args.seed, method=args.method, max_iter=args.max_iter)
    return res.to_dict()


def _f(v, fmt="{:.3g}") -> str:
    return "-" if v is None else fmt.format(v)


def text(r: dict) -> str:
    lines = [f"curvature asymmetry of {r['model']}: {r['points']} {r['split']} images, k = {r['k']} per end "
             f"({r['seconds']:.1f} s)"]
    for loc, info in r["locations"].items():
        extra = f", {info['past_boundary']} already across the boundary" if info.get("past_boundary") else ""
        lines.append(f"  {loc}: {info['found']} of {info['requested']} points found ({info['dropped']} dropped{extra})")
    head = ("location", "estimator", "used", "mean top-k", "mean |bottom-k|", "ratio [95% band]", "mostly +",
            "mostly -", "values > 0", "converged", "HVPs", "s")
    rows = []
    for e in r["results"]:
        est = e["estimator"] + (f" h={e['step']:.3g}" if e["step"] is not None else "")
        band = e["asymmetry_ratio_band"]
        ratio = _f(e["asymmetry_ratio"]) + (f" [{band[0]:.3g}, {band[1]:.3g}]" if band else "")
        rows.append((e["location"], est, f"{e['points_used']}/{e['points_used'] + e['points_dropped']}",
                     _f(e["mean_top"], "{:+.3g}"), _f(e["mean_abs_bottom"]), ratio,
                     _f(e["mostly_positive"], "{:.0%}"), _f(e["mostly_negative"], "{:.0%}"),
                     _f(e["positive_values"], "{:.0%}"), f"{e['converged']}/{e['points_used']}", str(e["hvp_count"]),
                     f"{e['seconds']:.1f}"))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines.append(fmt.format(*head))
    lines.extend(fmt.format(*row) for row in rows)
    for e in r["results"]:
        if e["warning"]:
            lines.append(f"note ({e['location']}, {e['estimator']}): {e['warning']}")
    lines.append("ratio = mean of the k most positive curvatures / mean |k most negative|; mostly +/-: share of points "
                 "whose 2k values sum > 0 / < 0. Sign: + means sliding along the direction heads back into the image's "
                 "class (docs/science.md section 3).")
    return "\n".join(lines)
