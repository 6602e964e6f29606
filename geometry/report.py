"""Older name of :mod:`geometry.reproduction` (the computation of the reproduction report), kept for library users.

Only the computation lives in the library; the report itself (figures, Markdown, HTML) is rendered by
``dashboard/report.py`` with the app's figure builders. Nothing here draws.
"""

from .reproduction import REPRODUCE_DEFAULTS, Reproduction, run_reproduction, summary_row, verdicts, write_numbers

__all__ = ["REPRODUCE_DEFAULTS", "Reproduction", "run_reproduction", "summary_row", "verdicts", "write_numbers"]
