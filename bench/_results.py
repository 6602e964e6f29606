"""Shared by the benches: interleaved rounds, medians with min-max, and ``bench/results/<bench>.json``.

Every bench times the methods it compares in the same rounds, one after another in a rotating order
(:func:`interleave`), so a burst of load on a shared machine hits all of them; it reports the median
over rounds with the min-max, and a ratio as the median (min-max) of the per-round ratios. What it
measured is written to ``bench/results/<bench>.json`` (:class:`Results`): machine, git commit, date,
rounds, settings, and per measure the methods' median/min/max/values and the ratio. The README's
benchmark table and the docs' tables are generated from those files by ``scripts/readme_numbers.py``.

Never used as a timed test.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SCHEMA = 1


def interleave(methods: dict[str, Callable[[], object]], rounds: int, *, warmup: bool = True,
               sync: Callable[[], None] | None = None, repeat: int | dict[str, int] = 1) -> dict[str, list[float]]:
    """Seconds per call of each method over ``rounds`` rounds; each round calls every method, the order
    rotating from round to round. ``warmup`` calls each once first (lazy imports, allocator, graphs).
    ``repeat`` (one number, or per method): calls per round, timed together and averaged, for calls of about a
    millisecond, where one call alone measures the scheduler more than the method."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    names = list(methods)
    if warmup:
        for k in names:
            methods[k]()
        if sync:
            sync()
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            n = repeat.get(k, 1) if isinstance(repeat, dict) else int(repeat)
            t = time.perf_counter()
            for _ in range(n):
                methods[k]()
            if sync:
                sync()
            times[k].append((time.perf_counter() - t) / n)
    return times


def spread(values) -> dict:
    """Median, min, max (and the values) of a list of numbers."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("no values")
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "values": v}


def paired_ratio(num: list[float], den: list[float]) -> dict:
    """Median (min-max) of the per-round ratios ``num[i] / den[i]`` (same rounds, so same machine load)."""
    if len(num) != len(den):
        raise ValueError("the two lists come from different rounds")
    return spread([a / b for a, b in zip(num, den)])


def fmt(s: dict, digits: int = 2, scale: float = 1.0) -> str:
    """``median (min-max)``."""
    return (f"{s['median'] * scale:.{digits}f} ({s['min'] * scale:.{digits}f}-{s['max'] * scale:.{digits}f})")


def _git(*args) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str = "cpu") -> dict:
    import torch

    cuda = torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else None
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu": _cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": device, "gpu": cuda, "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg")
            else None}


class Results:
    """What one bench measured; :meth:`write` puts it in ``bench/results/<bench>.json``."""

    def __init__(self, bench: str, rounds: int, settings: dict | None = None, device: str = "cpu"):
        self.bench, self.rounds, self.settings, self.device = bench, int(rounds), dict(settings or {}), device
        self.measures: dict[str, dict] = {}

    def add(self, key: str, what: str, *, methods: dict[str, list[float] | dict] | None = None,
            unit: str = "s", ratio: tuple[str, str] | dict | None = None, ratio_meaning: str = "",
            headline: bool = False, docs: str | None = None, extra: dict | None = None) -> dict:
        """One measure. ``methods``: label -> seconds per round (or a :func:`spread`); ``ratio``: a pair of labels
        (num, den) for the paired per-round ratio, or a ready spread; ``headline``: shown in the README table."""
        if key in self.measures:
            raise ValueError(f"measure {key!r} added twice")
        m = {"what": what, "unit": unit, "headline": bool(headline), "docs": docs,
             "methods": {k: (v if isinstance(v, dict) else spread(v)) for k, v in (methods or {}).items()}}
        if isinstance(ratio, tuple):
            num, den = ratio
            m["ratio"] = dict(paired_ratio(m["methods"][num]["values"], m["methods"][den]["values"]),
                              of=f"{num} / {den}", meaning=ratio_meaning)
        elif isinstance(ratio, dict):
            m["ratio"] = dict(ratio, meaning=ratio_meaning)
        if extra:
            m["extra"] = extra
        self.measures[key] = m
        return m

    def to_dict(self) -> dict:
        commit = _git("rev-parse", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
        return {"schema": SCHEMA, "bench": self.bench,
                "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
                "git": {"commit": commit, "dirty": bool(dirty) if dirty is not None else None},
                "machine": machine(self.device), "rounds": self.rounds, "settings": self.settings,
                "measures": self.measures}

    def write(self, path: str | Path | None = None) -> Path:
        path = Path(path) if path else RESULTS / f"{self.bench}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.replace(tmp, path)
        print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        return path
