"""Command line: ``python -m geometry SUB-COMMAND ...``.

Each sub-command is a module in ``geometry/commands`` exposing ``HELP`` (one
line), ``add_arguments(parser)`` and ``run(args) -> dict`` (and optionally
``validate(args)``, run before anything is loaded); this file finds them, adds
the shared options, prints the result (``--json`` prints one JSON object).

The error contract: every bad input ends in exactly one line on stderr starting
with ``error:`` and exit status 2, without a traceback. Argument errors, values
that can be checked without the model (``--device``, ``--save``, ``--out``, the
sub-command's own ``validate``) are checked before the model is loaded; any
:class:`GeometryError` becomes that line; any other exception is reported the
same way, naming its type, as a last resort. torch's warnings and log lines are
kept off the terminal unless ``--verbose``/``-v`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import pkgutil
import sys
import traceback
import warnings

from . import commands
from .errors import GeometryError

EXIT_BAD_INPUT = 2
QUIET_LOGGERS = ("torch", "py.warnings", "torchvision", "PIL")


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one ``error:`` line (exit 2) instead of the usage block and a message."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def _command_modules():
    mods = {}
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{commands.__name__}.{info.name}")
        mods[getattr(mod, "NAME", info.name)] = mod
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m geometry",
                            description="Geometry of deep image classifiers in input space.")
    parser.add_argument("-v", "--verbose", action="store_true", default=False,
                        help="show torch's warnings and log lines (hidden by default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)
    for name, mod in _command_modules().items():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.add_argument("--json", action="store_true", help="print one JSON object")
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="show torch's warnings and log lines (hidden by default)")
        p.set_defaults(_run=mod.run, _text=getattr(mod, "text", None), _validate=getattr(mod, "validate", None))
    return parser


def _default_text(result: dict) -> str:
    lines = []
    for k, v in result.items():
        if isinstance(v, list) and len(v) > 12:
            v = f"[{', '.join(f'{x:.4g}' if isinstance(x, float) else str(x) for x in v[:6])}, ... ({len(v)} values)]"
        lines.append(f"{k}: {v}")
    return "\n".join(lines)


class _DropAll(logging.Filter):
    def filter(self, record):
        return False


@contextlib.contextmanager
def _quiet(verbose: bool):
    """Unless ``verbose``, keep Python warnings and torch's log lines off the terminal for the duration of the
    command: warnings are ignored (and routed through logging's ``py.warnings``), torch's loggers (which carry their
    own handlers) get a level above CRITICAL and their handlers drop everything; all is restored afterwards."""
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in QUIET_LOGGERS]
    loggers = [logging.getLogger(n) for n in set(names) | set(QUIET_LOGGERS)]
    saved = [(lg, lg.level) for lg in loggers]
    drop = _DropAll()
    handlers = [h for lg in loggers for h in lg.handlers]
    with warnings.catch_warnings():
        if verbose:  # warnings print as Python prints them; torch's loggers keep their own settings
            warnings.simplefilter("default")
        else:
            logging.captureWarnings(True)
            warnings.simplefilter("ignore")
            for lg in loggers:
                lg.setLevel(logging.CRITICAL + 1)
            for h in handlers:
                h.addFilter(drop)
        try:
            yield
        finally:
            if not verbose:
                logging.captureWarnings(False)
            for lg, level in saved:
                lg.setLevel(level)
            for h in handlers:
                h.removeFilter(drop)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


def _validate_common(args) -> None:
    """Checks every sub-command shares, made before the model is loaded."""
    from .commands._common import validate_common

    validate_common(args)
    if getattr(args, "_validate", None):
        args._validate(args)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    verbose = bool(getattr(args, "verbose", False))
    try:
        with _quiet(verbose):
            _validate_common(args)
            from .commands._common import distributed_from_args

            with distributed_from_args(args):  # --ray: the loops run on Ray (geometry.distributed)
                result = args._run(args)
            # strict JSON: a NaN or infinity anywhere (e.g. a hostile model's logits) becomes null
            from .serialization import jsonable

            out = (json.dumps(jsonable(result), allow_nan=False) if args.json
                   else (args._text or _default_text)(result))
    except GeometryError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory (MemoryError); use a smaller model, image or setting", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # last resort: still one line, naming what went wrong
        if verbose:
            traceback.print_exc(file=sys.stderr)
        detail = " ".join(_first_line(exc).split())
        print(f"error: unexpected {type(exc).__name__}{': ' + detail if detail else ''} (run with --verbose for the "
              "traceback, and report it if the input looks right)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        print(out)
    except BrokenPipeError:
        pass
    return 0
