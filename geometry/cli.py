"""Command line: ``python -m geometry SUB-COMMAND ...``.

Each sub-command is a module in ``geometry/commands`` exposing ``HELP`` (one
line), ``add_arguments(parser)`` and ``run(args) -> dict``; this file finds them,
adds the shared options, prints the result (``--json`` prints one JSON object),
and turns any :class:`GeometryError` into one clear line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys

from . import commands
from .errors import GeometryError

EXIT_BAD_INPUT = 2


def _command_modules():
    mods = {}
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{commands.__name__}.{info.name}")
        mods[getattr(mod, "NAME", info.name)] = mod
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m geometry",
                                     description="Geometry of deep image classifiers in input space.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in _command_modules().items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.set_defaults(_run=mod.run, _text=getattr(mod, "text", None))
    return parser


def _default_text(result: dict) -> str:
    lines = []
    for k, v in result.items():
        if isinstance(v, list) and len(v) > 12:
            v = f"[{', '.join(f'{x:.4g}' if isinstance(x, float) else str(x) for x in v[:6])}, ... ({len(v)} values)]"
        lines.append(f"{k}: {v}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        result = args._run(args)
    except GeometryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result))
    else:
        print((args._text or _default_text)(result))
    return 0
