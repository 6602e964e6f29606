"""Seconds from navigation to the first figure of each app page, in a real browser, now and in the previous release.

For every page of dashboard/app.py's PAGES (read from the tree being measured), in each round:

- **cold**: a fresh ``streamlit run`` with an empty cache folder (``BOUNDARY_GEOMETRY_CACHE`` = a new temporary
  folder), then one browser tab opens the page's URL: the time until the first Plotly figure of the main area
  is drawn (its SVG exists). It includes starting the worker pool and loading the model, as for the first
  student to open a link to that page on a freshly started server.
- **warm**: a second tab (a new session) opens the same URL on the same server.

Each visit also records when the page finished (the script stopped running with every figure drawn) and
where the page's first figure (in page order, once finished) sits in the 1280x720 window. Chromium is Debian's
(/usr/bin/chromium) with the flags of tests/test_browser.py, viewport 1280x720.

The previous release is measured the same way from a ``git worktree`` of ``--baseline`` (default 9302294,
the commit before the classroom work) with this checkout's virtual environment, and printed beside it.
Results go to bench/results/bench_first_figure.json (committed with the other benches' results, so the doc can
be regenerated from a committed file); ``--doc`` also writes docs/timing.md from them, and
``--doc-from bench/results/bench_first_figure.json`` only rewrites the doc. (It takes about 17 minutes, so
``make bench`` runs it like the others but it is rarely rerun; current and previous release are measured one
after the other, not interleaved, and the doc gives medians with min-max over rounds.)

    .venv/bin/python bench/bench_first_figure.py --rounds 2 --doc
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = ROOT / ".venv" / "bin" / "python"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 720}
OUT = ROOT / "bench" / "results" / "bench_first_figure.json"
DOC = ROOT / "docs" / "timing.md"
DEFAULT_BASELINE = "9302294"
POLL_S = 0.1

PROBE_JS = r"""
() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const main = document.querySelector('[data-testid="stMain"]');
  const plots = main ? [...main.querySelectorAll('.js-plotly-plot')].filter(g => g.querySelector('.main-svg')) : [];
  const every = main ? [...main.querySelectorAll('.js-plotly-plot')] : [];
  const box = every.length ? every[0].getBoundingClientRect() : null;  // the page's first figure (in page order)
  const scroller = main ? (main.scrollTop || 0) : 0;
  return {
    script: app ? app.getAttribute('data-test-script-state') : null,
    drawn: plots.length,
    all: every.length,
    top: box ? box.top + scroller : null,
    bottom: box ? box.bottom + scroller : null,
    errors: document.querySelectorAll('[data-testid="stException"], [data-testid="stAlertContentError"]').length,
  };
}
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the tree being measured
def app_pages(tree: Path) -> list[dict]:
    """PAGES of the tree's dashboard/app.py: file, title, URL path; the default page is at "/"."""
    src = (tree / "dashboard" / "app.py").read_text()
    mod = ast.parse(src)
    pages, default = [], None
    for node in ast.walk(mod):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PAGES" for t in node.targets):
            pages = [tuple(ast.literal_eval(e)) for e in node.value.elts]
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DEFAULT_PAGE" for t in node.targets):
            default = ast.literal_eval(node.value)
    if default is None:  # older app.py: default=(f == "overview.py")
        for node in ast.walk(mod):
            if isinstance(node, ast.keyword) and node.arg == "default" and isinstance(node.value, ast.Compare):
                default = ast.literal_eval(node.value.comparators[0])
    out = []
    for f, title, _icon in pages:
        if (tree / "dashboard" / "views" / f).exists():
            out.append({"file": f, "title": title, "path": "" if f == default else Path(f).stem})
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``streamlit run dashboard/app.py`` in ``tree`` with an empty cache folder."""

    def __init__(self, tree: Path):
        self.tree = tree
        self.cache = Path(tempfile.mkdtemp(prefix="bench-first-figure-cache-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile(prefix="bench-first-figure-server-", suffix=".log", delete=False)
        env = dict(os.environ, BOUNDARY_GEOMETRY_CACHE=str(self.cache), PYTHONPATH=str(tree))
        env.pop("BOUNDARY_GEOMETRY_PRECOMPUTED", None)
        self.proc = subprocess.Popen([str(PY), "-m", "streamlit", "run", "dashboard/app.py",
                                      "--server.address=127.0.0.1", f"--server.port={self.port}",
                                      "--server.headless=true", "--browser.gatherUsageStats=false"],
                                     cwd=tree, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2).read() == b"ok":
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"streamlit in {tree} did not answer within 120 s (log: {self.log.name})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)  # the server and its worker processes (its own session)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=15)
        shutil.rmtree(self.cache, ignore_errors=True)


def visit(browser, url: str, timeout: float) -> dict:
    """Open ``url`` in a new tab; seconds to the first drawn figure and to the finished page."""
    ctx = browser.new_context(viewport=VIEWPORT)
    page = ctx.new_page()
    t0 = time.monotonic()
    first = done = top = bottom = None
    errors = 0
    stable_since = None
    try:
        page.goto(url, wait_until="commit", timeout=timeout * 1000)
        while time.monotonic() - t0 < timeout:
            try:
                s = page.evaluate(PROBE_JS)
            except Exception:  # noqa: BLE001 - navigation in progress: poll again
                s = {"script": None, "drawn": 0, "all": 0, "top": None, "bottom": None, "errors": 0}
            now = time.monotonic() - t0
            if first is None and s["drawn"] >= 1:
                first = now
            errors = s["errors"]
            finished = s["script"] == "notRunning" and s["drawn"] >= 1 and s["drawn"] == s["all"]
            if finished:
                stable_since = now if stable_since is None else stable_since
                if now - stable_since >= 1.0:
                    done, top, bottom = stable_since, s["top"], s["bottom"]  # where the first figure ended up
                    break
            else:
                stable_since = None
            time.sleep(POLL_S)
    finally:
        ctx.close()
    return {"first_figure_s": first, "done_s": done, "first_figure_top_px": top, "first_figure_bottom_px": bottom,
            "above_fold": (top is not None and top < VIEWPORT["height"] - 100),
            "whole_in_window": (bottom is not None and bottom <= VIEWPORT["height"]), "errors": errors}


def measure(tree: Path, rounds: int, timeout: float, only: list[str] | None) -> dict:
    from playwright.sync_api import sync_playwright

    pages = [p for p in app_pages(tree) if not only or p["title"] in only]
    res = {p["title"]: {"cold": [], "warm": []} for p in pages}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            for r in range(rounds):
                for p in pages:
                    server = Server(tree)
                    try:
                        url = f"{server.url}/{p['path']}"
                        for kind in ("cold", "warm"):
                            v = visit(browser, url, timeout)
                            v["load_1min"] = os.getloadavg()[0]
                            res[p["title"]][kind].append(v)
                            log(f"{tree.name} round {r + 1} {p['title']:<15} {kind}: first figure "
                                f"{_fmt(v['first_figure_s'])}, done {_fmt(v['done_s'])}, "
                                f"{'above' if v['above_fold'] else 'below'} the fold, load {v['load_1min']:.1f}")
                    finally:
                        server.stop()
        finally:
            browser.close()
    return res


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.1f} s"


# ------------------------------------------------------------------ baseline worktree
def baseline_tree(rev: str) -> tuple[Path, str]:
    full = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    path = Path(tempfile.mkdtemp(prefix="bench-first-figure-baseline-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), full], cwd=ROOT, check=True,
                   capture_output=True, text=True)
    return path, full


def remove_tree(path: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True, text=True)
    shutil.rmtree(path.parent, ignore_errors=True)


# ------------------------------------------------------------------ summary and doc
def stats(visits: list[dict], field: str) -> dict:
    vals = [v[field] for v in visits]
    got = [v for v in vals if v is not None]
    return {"median": statistics.median(got) if got else None, "min": min(got) if got else None,
            "max": max(got) if got else None, "n": len(vals), "missing": len(vals) - len(got)}


def summarize(res: dict) -> dict:
    return {page: {kind: {"first_figure": stats(v, "first_figure_s"), "done": stats(v, "done_s"),
                          "above_fold": sum(bool(x.get("above_fold")) for x in v),
                          "whole_in_window": sum(bool(x.get("whole_in_window")) for x in v), "visits": len(v)}
                   for kind, v in kinds.items()} for page, kinds in res.items()}


def cell(s: dict) -> str:
    if s["median"] is None:
        return "not drawn"
    spread = f" ({s['min']:.1f}–{s['max']:.1f})" if s["n"] > 1 else ""
    miss = f", {s['missing']} of {s['n']} not drawn" if s["missing"] else ""
    return f"{s['median']:.1f}{spread}{miss}"


def render_doc(data: dict) -> str:
    summary = {k: summarize(v) for k, v in data["results"].items()}  # from the raw visits
    cur, base = summary["current"], summary.get("baseline") or {}
    pages = list(cur) + [p for p in base if p not in cur]
    na = "— (no such page)"
    nb = "not measured" if not base else na
    lines = [
        "# Time to the first figure, per page",
        "",
        f"<!-- generated by bench/bench_first_figure.py from {data.get('source', 'bench/results/bench_first_figure.json')}; "
        "do not edit by hand -->",
        "",
        f"Measured {data['when']} on commit `{data['commit'][:10]}`{' (with uncommitted changes)' if data['dirty'] else ''}"
        f" against the previous release `{data['baseline_commit'][:10]}` (`--baseline {data['baseline']}`), "
        f"{data['rounds']} round(s), on {data['machine']['cpus']} CPU cores (1-minute load average "
        f"{data['machine']['load_min']:.1f}–{data['machine']['load_max']:.1f} during the run: other work shared "
        "the machine).",
        "",
        "Seconds from opening the page's URL in a real browser (Chromium, 1280x720) to the first Plotly figure "
        "of the page drawn. **Cold**: a freshly started server with an empty cache folder (it includes starting "
        "the worker processes and loading the model). **Warm**: a second visit (a new session) to the same "
        "server. Median (min–max) over the rounds.",
        "",
        "| page | cold, now | cold, before | warm, now | warm, before |",
        "|---|---|---|---|---|",
    ]
    for p in pages:
        c, b = cur.get(p), base.get(p)
        lines.append(f"| {p} | {cell(c['cold']['first_figure']) if c else na} | "
                     f"{cell(b['cold']['first_figure']) if b else nb} | {cell(c['warm']['first_figure']) if c else na}"
                     f" | {cell(b['warm']['first_figure']) if b else nb} |")
    lines += ["", "Seconds until the page has finished (the script stopped, every figure drawn):", "",
              "| page | cold, now | cold, before | warm, now | warm, before |", "|---|---|---|---|---|"]
    for p in pages:
        c, b = cur.get(p), base.get(p)
        lines.append(f"| {p} | {cell(c['cold']['done']) if c else na} | {cell(b['cold']['done']) if b else nb} | "
                     f"{cell(c['warm']['done']) if c else na} | {cell(b['warm']['done']) if b else nb} |")
    lines += ["", "Where the page's first figure sits in the 1280x720 window once the page has finished, without "
              "scrolling: *visible* = at least its top 100 px are inside the window, *whole* = all of it is "
              "(visits, of all visits):",
              "", "| page | visible, now | whole, now | visible, before | whole, before |", "|---|---|---|---|---|"]

    def fold(s, field):
        return "—" if not s else f"{s['cold'][field] + s['warm'][field]} of {s['cold']['visits'] + s['warm']['visits']}"

    for p in pages:
        c, b = cur.get(p), base.get(p)
        lines.append(f"| {p} | {fold(c, 'above_fold')} | {fold(c, 'whole_in_window')} | {fold(b, 'above_fold')} | "
                     f"{fold(b, 'whole_in_window')} |")
    lines += ["", "Regenerate: `.venv/bin/python bench/bench_first_figure.py --rounds 2 --doc` (several minutes; "
              "the previous release's Vulnerability page computes everything from scratch). The Vulnerability page "
              "of bundled models now opens from results shipped in `assets/precomputed` (`make precompute`).", ""]
    return "\n".join(lines)


def git(*args) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--baseline", default=DEFAULT_BASELINE, help="revision of the previous release (default %(default)s)")
    p.add_argument("--no-baseline", action="store_true", help="measure this tree only")
    p.add_argument("--pages", default=None, help="comma-separated page titles (default: every page)")
    p.add_argument("--timeout", type=float, default=420.0, help="seconds per visit before giving up")
    p.add_argument("--doc", action="store_true", help="also write docs/timing.md")
    p.add_argument("--doc-from", default=None, help="only write docs/timing.md from this JSON")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop servers and remove the worktree on kill
    if args.doc_from:
        DOC.write_text(render_doc(dict(json.loads(Path(args.doc_from).read_text()), source=args.doc_from)))
        print(f"wrote {DOC}")
        return 0
    if not os.path.exists(CHROMIUM):
        print(f"error: {CHROMIUM} is missing (make browser installs it)", file=sys.stderr)
        return 2
    if args.rounds < 1:
        print("error: --rounds must be at least 1", file=sys.stderr)
        return 2
    only = [s.strip() for s in args.pages.split(",")] if args.pages else None
    loads = [os.getloadavg()[0]]
    started = time.strftime("%Y-%m-%d %H:%M")
    results, base_commit = {"current": measure(ROOT, args.rounds, args.timeout, only)}, ""
    loads.append(os.getloadavg()[0])
    if not args.no_baseline:
        tree, base_commit = baseline_tree(args.baseline)
        try:
            results["baseline"] = measure(tree, args.rounds, args.timeout, only)
        finally:
            remove_tree(tree)
        loads.append(os.getloadavg()[0])
    for kinds in results.values():
        loads += [v["load_1min"] for visits in kinds.values() for vs in visits.values() for v in vs]
    data = {"when": started, "commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain")),
            "baseline": args.baseline, "baseline_commit": base_commit, "rounds": args.rounds,
            "viewport": VIEWPORT, "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                               "load_min": min(loads), "load_max": max(loads)},
            "results": results, "summary": {k: summarize(v) for k, v in results.items()}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    print(render_doc(data))
    if args.doc:
        DOC.write_text(render_doc(data))
        print(f"wrote {DOC} and {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
