#!/usr/bin/env python
"""Load test of the app: K real Chromium sessions at once against one `streamlit run`, plus hostile uploads.

    python tests/loadtest.py --sessions 8          # what `make loadtest` runs (about 8 minutes on 2 cores)
    python tests/loadtest.py --sessions 3 --models digits_mlp,mnist_lenet_gelu --hostile-lanes 2 \
        --page-timeout 150 --deadline 420          # the small version tests/test_loadtest.py runs (~4 min)
    python tests/loadtest.py --doc-from out/loadtest.json --doc docs/loadtest.md   # regenerate the doc

Phase 1 ("alone"): a fresh server; one session per bundled model used below, one after the other, each
walking Overview -> Curvature -> Cross-sections -> Paths -> Vulnerability on its own gallery image.
Phase 2 ("load"): a fresh server (caches cold again); K sessions at once, each on a different gallery
image (session i: class 3i+1 mod 10, the first index from 1 + i // len(models) whose image and the
next one the model classifies right) and model (--models in turn), walk the same pages, while the
hostile corpus of tests/hostile.py is uploaded through the sidebar (each file in a fresh session:
"Upload a model file…", its sidecar when it has one, the file; complex.npy through the Image upload). Sessions open the app at
`/?model=NAME&image=gallery:CLASS:INDEX`; when the sidebar does not show those, they pick them there.
Each phase starts with one untimed warm-up session (the pool's workers start, the default model loads).

A page is done when its heading is shown, the script is no longer running, no spinner / queue notice
remains and every plotly figure is drawn (at least as many as the same session's page showed alone),
or when an error box appears. Page time: from the click (or the first load) until then.

Invariants (exit status 1 when one fails): the server never died and answers /_stcore/health at the
end; benign sessions show no error or exception box; no page shows "Traceback"; every page finished
within its time-out; every session shows its own model and image (sidebar widgets, the "Source" and
"True label" captions, and the image figures' pixels compared with the gallery image) and no other
session's image; each hostile upload ends in a refusal message (not a traceback, not the app's generic
"... failed: SomeError" catch-all, not accepted, not hung); no payload of the corpus ran.

Measured and saved as JSON (--out, default out/loadtest.json): page times alone and under load
(p50/p95 and their ratios), error texts, hostile outcomes, the server's peak RSS and its child
processes' (sampled from /proc every 0.5 s), CPU seconds of the server, its workers and the browsers,
the verdict of each invariant. Beside it: each server's log (a page time-out makes the server print
every thread's stack there, via faulthandler on SIGUSR1) and screenshots of failing pages.

The server runs under an address-space limit (--server-mem-gb, RLIMIT_AS, inherited by its workers) so
that a memory bomb cannot take a shared machine down, with its own empty BOUNDARY_GEOMETRY_CACHE and no
file watcher. Every browser request that is not for 127.0.0.1 is aborted (and counted). Every wait is
bounded: per page (--page-timeout), per upload (--hostile-timeout) and overall (--deadline).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlparse

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
for p in (str(ROOT), str(TESTS)):
    if p not in sys.path:
        sys.path.insert(0, p)

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
# the order decides which models a small run uses: K=3 -> one smooth LeNet, the 8x8 MLP, the ReLU LeNet
MODELS = ["mnist_lenet_gelu", "digits_mlp", "mnist_lenet_relu", "mnist_lenet_gelu_pgd"]
UPLOAD = "Upload a model file…"
PAGES = [  # (key, URL path, navigation label, heading, figures a finished page shows at least)
    ("overview", "overview", "Overview", "What the model sees", 2),
    ("curvature", "curvature", "Curvature", "Principal curvatures of the decision boundary", 4),
    ("sections", "sections", "Cross-sections", "Cross-sections of the decision boundary", 2),
    ("paths", "paths", "Paths", "Connecting paths inside a classification region", 3),
    ("vulnerability", "vulnerability", "Vulnerability", "Curvature and vulnerability", 6),
]
PAGE_KEYS = [p[0] for p in PAGES]
IMAGE_TITLES = ("Input (", "Image x", "Chosen image")  # figures that draw the session's own image
SOURCE_RE = re.compile(r"gallery (\w+), class (\d+), #(\d+)")
GENERIC_FAILURE_RE = re.compile(r"\bfailed: [A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")
POLL_S = 0.4
STABLE_POLLS = 3

SNAPSHOT_JS = r"""
(full) => {  // cheap unless full: the page's whole text is only read once the page looks done
  const app = document.querySelector('[data-testid="stApp"]');
  const main = document.querySelector('[data-testid="stMain"]') || document.body;
  const side = document.querySelector('[data-testid="stSidebar"]');
  const plots = [...main.querySelectorAll('.js-plotly-plot')];
  const texts = sel => [...document.querySelectorAll(sel)].map(e => e.innerText.slice(0, 2000));
  const chipErrs = [...document.querySelectorAll('[data-testid="stFileChip"]')]
      .filter(c => c.querySelector('[data-testid="stFileChipIconError"]')).map(c => c.innerText);
  const val = label => { const i = side && side.querySelector(`input[aria-label^="${label}"]`); return i ? i.value : null; };
  if (app && !window.__ltObserver) {  // counts every change of the script state, even runs shorter than a poll
    window.__ltRuns = 0;
    window.__ltObserver = new MutationObserver(ms => { window.__ltRuns += ms.length; });
    window.__ltObserver.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
  }
  const heads = [...main.querySelectorAll('h1, h2')];
  const snap = {
    runs: window.__ltRuns || 0,
    script: app ? app.getAttribute('data-test-script-state') : null,
    conn: app ? app.getAttribute('data-test-connection-state') : null,
    headings: heads.map(h => h.textContent.trim()),
    heading_ok: heads.length > 0,
    plots: plots.length,
    drawn: plots.filter(g => g.querySelector('.main-svg')).length,
    spinners: document.querySelectorAll('[data-testid="stSpinner"]').length,
    uploading: document.querySelectorAll('[data-testid="stFileChipIconSpinner"]').length,
    queued: texts('[data-testid="stAlertContainer"]').some(t => /ahead of yours/.test(t)),
    errors: texts('[data-testid="stAlertContentError"]'), exceptions: texts('[data-testid="stException"]'),
    chip_errors: chipErrs,
    model: val('Model'), cls: val('Class ('), index: val('Index ('),
    path: location.pathname,
  };
  if (full) {
    const body = document.body ? document.body.innerText : '';
    snap.traceback = body.includes('Traceback');
    snap.sources = [...body.matchAll(/gallery (\w+), class (\d+), #(\d+)/g)].map(m => m[0]);
    snap.true_label = (body.match(/True label: (\S+)/) || [null, null])[1];
    snap.main_text_tail = main.innerText.slice(-1500);
  }
  return snap;
}
"""

IMAGES_JS = r"""
(prefixes) => [...document.querySelectorAll('[data-testid="stMain"] .js-plotly-plot')].map(g => {
  const t = (g.layout && g.layout.title && (g.layout.title.text || g.layout.title)) || '';
  const title = String(t).replace(/<[^>]*>/g, '');
  if (!prefixes.some(p => title.startsWith(p))) return null;
  const d = g._fullData && g._fullData[0];
  if (!d || !d.z) return {title: title, z: null};
  return {title: title, z: Array.from(d.z, row => Array.from(row, v => Array.isArray(v) ? Array.from(v) : v))};
}).filter(x => x)
"""


# ---------------------------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    pos = (len(v) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def rnd(x, n=3):
    return None if x is None else round(float(x), n)


def health(url: str, timeout: float = 5) -> bool:
    try:
        return urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout).read() == b"ok"
    except OSError:
        return False


def classify_refusal(texts: list[str]) -> str:
    """'refused' for a clear message, 'generic_failure' for the app's catch-all "... failed: SomeError"."""
    return "generic_failure" if any(GENERIC_FAILURE_RE.search(t) for t in texts) else "refused"


# ---------------------------------------------------------------------------------------------- server
def _status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


TICK = os.sysconf("SC_CLK_TCK")


def _proc_table() -> tuple[dict[int, list[int]], dict[int, float]]:
    """(children of each pid, CPU seconds (user + system) of each pid) from /proc."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            ppid, utime, stime = int(fields[1]), int(fields[11]), int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        cpu[int(entry)] = (utime + stime) / TICK
    return children, cpu


def _descendants(pid: int, children: dict[int, list[int]] | None = None) -> list[int]:
    children = _proc_table()[0] if children is None else children
    out, todo = [], [pid]
    while todo and len(out) < 10_000:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class Server:
    """`streamlit run dashboard/app.py` on 127.0.0.1 under RLIMIT_AS, with a /proc RSS sampler."""

    def __init__(self, name: str, cache_dir: Path, log_path: Path, mem_gb: float, sample_s: float = 0.5):
        self.name, self.log_path, self.mem_bytes, self.sample_s = name, log_path, int(mem_gb * 2**30), sample_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cache_dir = cache_dir
        self.samples: list[tuple[float, float, float, int]] = []  # (t, server MB, children MB, children)
        self.peak_rss_kb = self.peak_children_kb = self.peak_child_kb = self.max_children = 0
        self.cpu: dict[str, dict[int, float]] = {"server": {}, "workers": {}, "browser": {}}
        self.died_at: float | None = None
        self.returncode: int | None = None
        self._stop = threading.Event()
        self.t0 = time.monotonic()

    def _limit(self) -> None:  # runs in the child before exec
        if self.mem_bytes > 0:
            resource.setrlimit(resource.RLIMIT_AS, (self.mem_bytes, self.mem_bytes))

    def start(self, timeout: float = 120) -> None:
        env = dict(os.environ, BOUNDARY_GEOMETRY_CACHE=str(self.cache_dir), PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "w")
        # SIGUSR1 makes the server print every thread's stack into its log (sent when a page times out)
        launcher = ("import faulthandler, runpy, signal, sys; faulthandler.register(signal.SIGUSR1, all_threads=True);"
                    " sys.argv = ['streamlit'] + sys.argv[1:]; runpy.run_module('streamlit', run_name='__main__')")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", launcher, "run", "dashboard/app.py", "--server.address=127.0.0.1",
             f"--server.port={self.port}", "--server.headless=true", "--server.fileWatcherType=none",
             "--browser.gatherUsageStats=false"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=self._limit,
            start_new_session=True)
        self.t0 = time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode}; see {self.log_path}")
            if health(self.url, 2):
                break
            time.sleep(0.5)
        else:
            self.stop()
            raise RuntimeError(f"streamlit did not answer {self.url}/_stcore/health within {timeout:.0f} s")
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def dump_stacks(self) -> None:
        """Once per server: every thread's stack into the server log (faulthandler, SIGUSR1)."""
        if self.alive() and not getattr(self, "_dumped", False):
            self._dumped = True
            os.kill(self.proc.pid, signal.SIGUSR1)

    def _sample(self) -> None:
        pid = self.proc.pid
        while not self._stop.is_set():
            if self.proc.poll() is not None:
                if self.died_at is None:
                    self.died_at = time.monotonic() - self.t0
                    self.returncode = self.proc.returncode
                break
            rss = _status_kb(pid, "VmRSS") or 0
            table, cpu = _proc_table()
            kid_pids = _descendants(pid, table)
            kids = [(_status_kb(c, "VmRSS") or 0) for c in kid_pids]
            # CPU seconds, last value seen per process: the server, its workers, and this driver's browser
            self.cpu["server"][pid] = cpu.get(pid, 0.0)
            for c in kid_pids:
                self.cpu["workers"][c] = cpu.get(c, 0.0)
            mine = set(kid_pids) | {pid}
            for c in _descendants(os.getpid(), table):
                if c not in mine:
                    self.cpu["browser"][c] = cpu.get(c, 0.0)
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            self.peak_children_kb = max(self.peak_children_kb, sum(kids))
            self.peak_child_kb = max(self.peak_child_kb, max(kids, default=0))
            self.max_children = max(self.max_children, len(kids))
            if len(self.samples) < 20_000:
                self.samples.append((round(time.monotonic() - self.t0, 1), round(rss / 1024, 1),
                                     round(sum(kids) / 1024, 1), len(kids)))
            self._stop.wait(self.sample_s)

    def stop(self) -> dict:
        hwm = _status_kb(self.proc.pid, "VmHWM") if self.alive() else None
        vmpeak = _status_kb(self.proc.pid, "VmPeak") if self.alive() else None
        ok = self.alive() and health(self.url)
        self._stop.set()
        if getattr(self, "_thread", None):
            self._thread.join(timeout=5)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:  # the server's own process group (start_new_session), nothing else
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=15)
        self._log.close()
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        tb = [i for i, line in enumerate(text.splitlines()) if "Traceback" in line]
        lines = text.splitlines()
        return {
            "url": self.url, "memory_limit_gb": rnd(self.mem_bytes / 2**30, 2),
            "died": self.died_at is not None, "died_at_s": rnd(self.died_at, 1), "returncode": self.returncode,
            "health_at_end": ok,
            "peak_rss_mb": rnd(self.peak_rss_kb / 1024, 1), "vmhwm_mb": rnd(hwm / 1024, 1) if hwm else None,
            "vmpeak_mb": rnd(vmpeak / 1024, 1) if vmpeak else None,
            "peak_children_rss_mb": rnd(self.peak_children_kb / 1024, 1),
            "peak_single_child_rss_mb": rnd(self.peak_child_kb / 1024, 1), "max_children": self.max_children,
            "cpu_s": {k: rnd(sum(v.values()), 1) for k, v in self.cpu.items()},
            "cpu_s_note": "CPU seconds while sampled: this server, its child processes, this driver's Chromium "
                          "(processes that lived under 0.5 s are missed)",
            "samples": len(self.samples), "rss_timeline": self.samples[:: max(1, len(self.samples) // 400)],
            "log": str(self.log_path), "log_tracebacks": len(tb),
            "log_traceback_excerpts": ["\n".join(lines[i:i + 40])[-3000:] for i in tb[:3]],
        }


# ---------------------------------------------------------------------------------------------- browser
class PageTimeout(Exception):
    def __init__(self, snap: dict, seconds: float):
        super().__init__(f"not done after {seconds:.0f} s (script {snap.get('script')}, {snap.get('drawn')}/"
                         f"{snap.get('plots')} figures drawn, headings {snap.get('headings')})")
        self.snap = snap


class ServerDied(Exception):
    pass


class Run:
    """Shared state of one phase: the server, its browser, the blocked-request counter, time-outs."""

    def __init__(self, server: Server, browser, page_timeout: float, shots: Path | None, deadline: float):
        self.server, self.browser, self.page_timeout, self.shots = server, browser, page_timeout, shots
        self.deadline = deadline  # time.monotonic() past which every wait gives up (--deadline)
        self.blocked: dict[str, int] = {}  # URL -> times the browser asked for it (aborted)
        self.shot_count = 0

    async def new_page(self):
        ctx = await self.browser.new_context(viewport={"width": 1400, "height": 1000})

        async def guard(route):
            host = urlparse(route.request.url).hostname
            if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1",):
                await route.continue_()
            else:
                url = route.request.url[:200]
                if url in self.blocked or len(self.blocked) < 50:
                    self.blocked[url] = self.blocked.get(url, 0) + 1
                await route.abort()

        await ctx.route("**/*", guard)
        page = await ctx.new_page()
        page.set_default_timeout(60_000)
        return ctx, page

    async def shot(self, page, name: str) -> str | None:
        if self.shots is None or self.shot_count >= 40:
            return None
        self.shot_count += 1
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{name}.png"
        try:
            await page.screenshot(path=str(path), full_page=True, timeout=20_000)
            return str(path)
        except Exception:  # noqa: BLE001 - a screenshot is a courtesy
            return None

    async def mark(self, page) -> int:
        """How many script-state changes the page has seen so far (call before an action, pass to settle)."""
        try:
            return int((await page.evaluate(SNAPSHOT_JS, False)).get("runs") or 0)
        except Exception:  # noqa: BLE001
            return 0

    async def settle(self, page, *, heading: str | None = None, min_plots: int = 0, timeout: float | None = None,
                     started: float | None = None, since: int | None = None,
                     accept_error: bool = True) -> tuple[float, dict]:
        """Poll until the page is done; return (seconds since ``started``, snapshot).

        ``since``: the count :meth:`mark` gave before the action; the page must have run its script after it
        (without it, two seconds without a run also count)."""
        timeout = self.page_timeout if timeout is None else timeout
        t0 = time.monotonic() if started is None else started
        saw_running, stable, first_ok, last_key, snap = False, 0, None, None, {}
        while True:
            now = time.monotonic()
            if not self.server.alive():
                raise ServerDied(f"the server exited ({self.server.proc.returncode})")
            try:
                snap = await page.evaluate(SNAPSHOT_JS, False)
            except Exception as exc:  # noqa: BLE001 - navigation in progress; poll again
                snap = {"script": None, "error": str(exc)[:200]}
            if snap.get("script") in ("running", "rerunRequested") or (since is not None and
                                                                          (snap.get("runs") or 0) > since):
                saw_running = True
            failed = bool(snap.get("errors") or snap.get("exceptions") or snap.get("chip_errors"))
            finished = (snap.get("heading_ok") if heading is None else
                        any(heading in h for h in snap.get("headings") or [])) \
                and snap.get("plots", 0) >= min_plots and not snap.get("queued")
            ok = (snap.get("script") == "notRunning" and snap.get("conn") == "CONNECTED"
                  and not snap.get("spinners") and not snap.get("uploading")
                  and snap.get("drawn") == snap.get("plots")
                  and (finished or (accept_error and failed))
                  and (saw_running or now - t0 > (2.0 if since is None else 15.0)))
            key = (snap.get("plots"), len(snap.get("errors") or []), len(snap.get("exceptions") or []),
                   tuple(snap.get("headings") or []))
            if ok:
                if stable and key == last_key:
                    stable += 1
                else:
                    stable, first_ok = 1, now
                if stable >= STABLE_POLLS:
                    return first_ok - t0, await page.evaluate(SNAPSHOT_JS, True)
            else:
                stable = 0
            last_key = key
            if now - t0 > timeout or now > self.deadline:
                try:  # everything the page said last, for the report
                    snap = await page.evaluate(SNAPSHOT_JS, True)
                except Exception:  # noqa: BLE001
                    pass
                self.server.dump_stacks()
                raise PageTimeout(snap, now - t0)
            await asyncio.sleep(POLL_S)

    async def sidebar_select(self, page, label: str, option: str) -> None:
        box = page.locator('[data-testid="stSidebar"]').get_by_role("combobox", name=label).first
        await box.click()
        await page.get_by_role("option", name=option, exact=True).first.click()

    async def upload(self, page, label: str, path: Path) -> None:
        side = page.locator('[data-testid="stSidebar"]')
        up = side.locator('[data-testid="stFileUploader"]').filter(
            has=page.locator('[data-testid="stWidgetLabel"]', has_text=label)).first
        await up.locator('input[type="file"]').set_input_files(str(path))


# ---------------------------------------------------------------------------------------------- sessions
def session_specs(k: int, models: list[str]) -> list[dict]:
    """Session i: model models[i % len], gallery class (3i + 1) mod 10, index 1 + i // len(models)."""
    return [{"id": i, "model": models[i % len(models)], "cls": (3 * i + 1) % 10, "index": 1 + i // len(models)}
            for i in range(k)]


def choose_images(specs: list[dict]) -> dict[int, dict]:
    """Move each session's index to the first image from its start that the model classifies correctly, and
    the next one too (the Paths page's default second end), so that benign sessions meet no legitimate
    "pick another image" message; no two sessions share an image. Returns what each session must show: its
    pixels as displayed, its "Source" caption and its true label's name."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from dashboard.figures.common import _as_display
    from geometry.images import gallery_counts, gallery_dataset, gallery_image
    from geometry.loading import load_classifier

    clfs, out, used = {}, {}, set()
    for s in specs:
        if s["model"] not in clfs:
            clfs[s["model"]] = load_classifier(s["model"], device="cpu")
        clf = clfs[s["model"]]
        n = gallery_counts(gallery_dataset(clf))[s["cls"]]

        def right(i):
            return int(clf.predict(gallery_image(clf, s["cls"], i).tensor)[0]) == s["cls"]

        for i in list(range(s["index"], n - 1)) + list(range(0, s["index"])):
            src = gallery_image(clf, s["cls"], i).source
            if src not in used and right(i) and right(i + 1):
                s["index"] = i
                break
        img = gallery_image(clf, s["cls"], s["index"])
        used.add(img.source)
        t = img.tensor[0] if img.tensor.ndim == 4 else img.tensor
        out[s["id"]] = {"pixels": np.asarray(_as_display(t), dtype=float), "source": img.source,
                        "label_name": str(clf.class_names[s["cls"]])}
    return out


def identity_problems(snap: dict, images: list[dict], spec: dict, expected: dict, all_expected: dict,
                      page_key: str) -> list[str]:
    """Everything on this page that is not the session's own model and image."""
    import numpy as np

    mine = expected[spec["id"]]
    probs = []
    if snap.get("model") != spec["model"]:
        probs.append(f"sidebar model is {snap.get('model')!r}, not {spec['model']!r}")
    if snap.get("cls") != str(spec["cls"]) or snap.get("index") != str(spec["index"]):
        probs.append(f"sidebar image is class {snap.get('cls')} #{snap.get('index')}, not {spec['cls']} "
                     f"#{spec['index']}")
    others = {e["source"]: sid for sid, e in all_expected.items() if sid != spec["id"]}
    sources = snap.get("sources") or []
    for src in sources:  # a page may name images of its own (the Paths page's second end), never another's
        if src in others:
            probs.append(f"shows {src!r}, session {others[src]}'s image")
    if page_key in ("overview", "paths") and mine["source"] not in sources:
        probs.append(f"does not name this session's image {mine['source']!r}")
    if page_key == "overview" and snap.get("true_label") != mine["label_name"]:
        probs.append(f"Overview's true label is {snap.get('true_label')!r}, not {mine['label_name']!r}")
    want = mine["pixels"]
    for fig in images:
        z = fig.get("z")
        if z is None:
            probs.append(f"figure {fig['title']!r} carries no pixel data")
            continue
        try:
            arr = np.asarray(z, dtype=float)
        except (TypeError, ValueError):
            probs.append(f"figure {fig['title']!r}: unreadable pixels")
            continue
        if arr.shape != want.shape or not np.allclose(arr, want, atol=2e-3):
            who = [sid for sid, e in all_expected.items() if sid != spec["id"] and e["pixels"].shape == arr.shape
                   and np.allclose(arr, e["pixels"], atol=2e-3)]
            probs.append(f"figure {fig['title']!r} is not this session's image"
                         + (f" (it is session {who[0]}'s)" if who else ""))
    if page_key in ("overview", "curvature", "vulnerability") and not images:
        probs.append("no image figure found to compare")
    return probs


async def benign_session(run: Run, spec: dict, expected: dict, min_plots: dict | None, label: str) -> dict:
    """Open the app on the session's model and image, then walk every page; times and checks per page."""
    res = {**spec, "image": f"gallery:{spec['cls']}:{spec['index']}", "setup": None, "pages": {},
           "errors": [], "exceptions": [], "traceback": False, "identity_problems": [], "failure": None}
    need = {key: (min_plots or {}).get(key, floor) for key, _, _, _, floor in PAGES}
    ctx, page = await run.new_page()
    sb = page.locator('[data-testid="stSidebar"]')
    try:
        for key, path, nav, heading, _ in PAGES:
            t0 = time.monotonic()
            if key == "overview":  # the first load: the URL names the model and the image
                await page.goto(f"{run.server.url}/{path}?model={quote(spec['model'])}&image={quote(res['image'])}")
                secs, snap = await run.settle(page, heading=heading, min_plots=need[key], started=t0)
                res["setup"] = "url"
                for what, want in (("model", spec["model"]), ("cls", str(spec["cls"])),
                                   ("index", str(spec["index"]))):
                    if snap.get(what) == want:
                        continue
                    res["setup"] = "widgets"  # the URL did not choose it (yet): use the sidebar like a student
                    since = await run.mark(page)
                    if what == "model":
                        await run.sidebar_select(page, "Model", want)
                    elif what == "cls":
                        await run.sidebar_select(page, "Class (", want)
                    else:
                        box = sb.locator('input[aria-label^="Index ("]').first
                        await box.fill(want)
                        await box.press("Enter")
                    secs, snap = await run.settle(page, heading=heading, min_plots=need[key], started=t0,
                                                  since=since)
            else:
                since = await run.mark(page)
                t0 = time.monotonic()
                await page.locator(f'a[href$="/{path}"]').first.click()  # the navigation bar at the top
                secs, snap = await run.settle(page, heading=heading, min_plots=need[key], started=t0, since=since)
            images = await page.evaluate(IMAGES_JS, list(IMAGE_TITLES))
            probs = identity_problems(snap, images, spec, expected, run.all_expected, key)
            if snap.get("path") != f"/{path}":
                probs.append(f"served at {snap.get('path')!r}, expected '/{path}'")
            entry = {"seconds": rnd(secs), "figures": snap.get("plots"), "errors": snap.get("errors") or [],
                     "exceptions": snap.get("exceptions") or [], "traceback": bool(snap.get("traceback")),
                     "url_path": snap.get("path"), "identity_ok": not probs, "identity_problems": probs}
            res["pages"][key] = entry
            res["errors"] += [f"{key}: {e}" for e in entry["errors"] + (snap.get("chip_errors") or [])]
            res["exceptions"] += [f"{key}: {e}" for e in entry["exceptions"]]
            res["traceback"] |= entry["traceback"]
            res["identity_problems"] += [f"{key}: {p}" for p in probs]
            if entry["errors"] or entry["exceptions"] or probs or entry["traceback"]:
                entry["screenshot"] = await run.shot(page, f"{label}-s{spec['id']}-{key}")
            log(f"{label} session {spec['id']} ({spec['model']}, {res['image']}): {key} {secs:.1f} s, "
                f"{snap.get('plots')} figures" + (f", ERRORS {entry['errors'] + entry['exceptions']}"
                                                  if entry["errors"] or entry["exceptions"] else "")
                + (f", IDENTITY {probs}" if probs else ""))
    except PageTimeout as exc:
        res["failure"] = f"timeout: {exc}"
        res["failure_page_text"] = exc.snap.get("main_text_tail")
        res["traceback"] |= bool(exc.snap.get("traceback"))
        res["errors"] += exc.snap.get("errors") or []
        res["exceptions"] += exc.snap.get("exceptions") or []
        res["screenshot"] = await run.shot(page, f"{label}-s{spec['id']}-timeout")
        log(f"{label} session {spec['id']}: {res['failure']}; page ends with: "
            f"{(res['failure_page_text'] or '')[-300:]!r}")
    except ServerDied as exc:
        res["failure"] = f"server died: {exc}"
    except Exception as exc:  # noqa: BLE001 - recorded as this session's failure
        res["failure"] = f"{type(exc).__name__}: {str(exc)[:500]}"
        res["screenshot"] = await run.shot(page, f"{label}-s{spec['id']}-failure")
        log(f"{label} session {spec['id']}: {res['failure']}")
    finally:
        await ctx.close()
    return res


# ---------------------------------------------------------------------------------------------- hostile
MODEL_EXTS = (".safetensors", ".pt", ".pt2", ".pth", ".ts", ".jit")
IMAGE_EXTS = (".npy", ".png", ".jpg", ".jpeg")


def hostile_items(corpus: dict[str, Path]) -> list[dict]:
    """Model files (with their sidecar when the corpus has '<stem>.json'), then images; slow.pt last."""
    items = []
    for name, path in corpus.items():
        stem, ext = os.path.splitext(name)
        if ext in MODEL_EXTS:
            side = corpus.get(f"{stem}.json")
            items.append({"file": name, "path": path, "sidecar": side.name if side else None, "sidecar_path": side,
                          "kind": "model"})
        elif ext in IMAGE_EXTS:
            items.append({"file": name, "path": path, "sidecar": None, "sidecar_path": None, "kind": "image"})
    items.sort(key=lambda it: (it["file"] == "slow.pt", it["kind"] == "image"))
    return items


async def hostile_item(run: Run, item: dict, timeout: float) -> dict:
    """Upload one hostile file in a fresh session; how the app answered."""
    out = {"file": item["file"], "sidecar": item["sidecar"], "kind": item["kind"], "outcome": None,
           "messages": [], "seconds": None}
    if time.monotonic() > run.deadline:
        out["outcome"] = "not run: past the overall deadline"
        return out
    ctx, page = await run.new_page()
    try:
        await page.goto(f"{run.server.url}/{PAGES[0][1]}")
        await run.settle(page, heading=PAGES[0][3], min_plots=1, timeout=timeout)
        if item["kind"] == "model":
            since = await run.mark(page)
            await run.sidebar_select(page, "Model", UPLOAD)
            await run.settle(page, heading=PAGES[0][3], min_plots=1, timeout=timeout, since=since)
            if item["sidecar_path"]:
                since = await run.mark(page)
                await run.upload(page, "Sidecar JSON", item["sidecar_path"])
                await run.settle(page, min_plots=1, timeout=timeout, since=since)
            since, t0 = await run.mark(page), time.monotonic()
            await run.upload(page, "Model file", item["path"])
        else:
            since = await run.mark(page)
            await page.locator('[data-testid="stSidebar"] [data-testid="stRadio"] label').filter(
                has_text="Upload").first.click()
            await run.settle(page, min_plots=1, timeout=timeout, since=since)
            since, t0 = await run.mark(page), time.monotonic()
            await run.upload(page, "Image file", item["path"])
        try:
            secs, snap = await run.settle(page, min_plots=1, timeout=timeout, started=t0, since=since)
        except PageTimeout as exc:
            out["outcome"], out["seconds"], snap = "timeout", rnd(time.monotonic() - t0), exc.snap
            out["messages"] = (snap.get("errors") or []) + (snap.get("chip_errors") or [])
            out["page_text"] = snap.get("main_text_tail")
            out["screenshot"] = await run.shot(page, f"hostile-{item['file']}")
            return out
        out["seconds"] = rnd(secs)
        msgs = (snap.get("errors") or []) + (snap.get("chip_errors") or [])
        out["messages"] = msgs
        out["exceptions"] = snap.get("exceptions") or []
        if snap.get("traceback") or snap.get("exceptions"):
            out["outcome"] = "traceback"
        elif not msgs:
            out["outcome"] = "accepted"
            out["model_shown"] = snap.get("model")
        else:
            out["outcome"] = classify_refusal(msgs)
        if out["outcome"] != "refused":
            out["screenshot"] = await run.shot(page, f"hostile-{item['file']}")
    except ServerDied as exc:
        out["outcome"] = f"server died: {exc}"
    except PageTimeout as exc:  # the app did not even get to the upload
        out["outcome"] = f"timeout before the upload: {exc}"
        out["page_text"] = exc.snap.get("main_text_tail")
        out["screenshot"] = await run.shot(page, f"hostile-{item['file']}")
    except Exception as exc:  # noqa: BLE001 - recorded
        out["outcome"] = f"driver error: {type(exc).__name__}: {str(exc)[:300]}"
        out["screenshot"] = await run.shot(page, f"hostile-{item['file']}")
    finally:
        await ctx.close()
        log(f"hostile {item['file']}" + (f" + {item['sidecar']}" if item["sidecar"] else "")
            + f": {out['outcome']} after {out['seconds']} s {[m[:160] for m in out['messages']]}")
    return out


async def hostile_lane(run: Run, items: list[dict], timeout: float) -> list[dict]:
    return [await hostile_item(run, it, timeout) for it in items]


# ---------------------------------------------------------------------------------------------- phases
async def phase(name: str, server: Server, specs: list[dict], expected: dict, args, *, sequential: bool,
                min_plots: dict | None = None, hostile: list[dict] | None = None, deadline: float) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        run = Run(server, browser, args.page_timeout, Path(args.out).parent / "loadtest-shots", deadline)
        run.all_expected = expected
        # warm-up, not timed: the first session of a fresh server starts its workers and loads the default model
        t0 = time.monotonic()
        ctx, page = await run.new_page()
        try:
            await page.goto(f"{server.url}/{PAGES[0][1]}")
            await run.settle(page, heading=PAGES[0][3], min_plots=1, timeout=args.page_timeout)
        finally:
            await ctx.close()
        warmup = time.monotonic() - t0
        log(f"{name}: server warmed up in {warmup:.1f} s")
        t0 = time.monotonic()
        tasks = []

        async def benign(spec):
            return await benign_session(run, spec, expected, (min_plots or {}).get(spec["id"]), name)

        if sequential:
            async def all_seq():
                return [await benign(s) for s in specs]
            tasks.append(all_seq())
        else:
            tasks += [benign(s) for s in specs]
        lanes = []
        if hostile:
            n = max(1, min(args.hostile_lanes, len(hostile)))
            # one lane: every file in turn, slow.pt last; more lanes: slow.pt alone in the first, the rest shared
            slow = [it for it in hostile if it["file"] == "slow.pt"] if n > 1 else []
            rest = [it for it in hostile if it not in slow]
            lanes = [list(slow)] + [[] for _ in range(n - 1)] if slow else [[] for _ in range(n)]
            free = lanes[1:] if slow else lanes
            for i, it in enumerate(rest):
                free[i % len(free)].append(it)
            lanes = [lane for lane in lanes if lane]
            tasks += [hostile_lane(run, lane, args.hostile_timeout) for lane in lanes]
        remaining = max(10.0, deadline - time.monotonic()) + 120  # waits stop at the deadline; this is a backstop
        try:
            results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=remaining)
        except asyncio.TimeoutError:
            await browser.close()
            raise RuntimeError(f"the {name} phase ran past the overall deadline (--deadline)")
        wall = time.monotonic() - t0
        await browser.close()
    sessions = results[0] if sequential else results[:len(specs)]
    hostile_out = [r for lane in results[(1 if sequential else len(specs)):] for r in lane]
    return {"wall_s": rnd(wall, 1), "warmup_s": rnd(warmup, 1), "sessions": sessions, "hostile": hostile_out,
            "blocked_requests": run.blocked}


# ---------------------------------------------------------------------------------------------- main
def summarize(alone: dict, load: dict, specs: list[dict]) -> dict:
    alone_t = {s["model"]: {k: v["seconds"] for k, v in s["pages"].items()} for s in alone["sessions"]}
    pages = {}
    for key in PAGE_KEYS:
        times, ratios = [], []
        for s in load["sessions"]:
            t = s["pages"].get(key, {}).get("seconds")
            base = alone_t.get(s["model"], {}).get(key)
            if t is None:
                continue
            times.append(t)
            if base:
                ratios.append(t / max(base, 0.05))
        base_all = [v.get(key) for v in alone_t.values() if v.get(key) is not None]
        p50, p95 = percentile(times, 50), percentile(times, 95)
        pages[key] = {
            "alone_s": {m: alone_t[m].get(key) for m in alone_t},
            "alone_p50_s": rnd(percentile(base_all, 50)),
            "load_p50_s": rnd(p50), "load_p95_s": rnd(p95), "load_max_s": rnd(max(times) if times else None),
            "ratio_p50": rnd(percentile(ratios, 50), 2), "ratio_p95": rnd(percentile(ratios, 95), 2),
            "ratio_of_p50s": rnd(p50 / percentile(base_all, 50), 2) if p50 and base_all else None,
            "completed": len(times), "sessions": len(load["sessions"]),
        }
    return pages


def check(result: dict, want_hostile: bool) -> dict:
    inv = {}
    phases = [result["alone"], result["load"]]
    sessions = [s for ph in phases for s in ph["sessions"]]
    servers = [result["server"]["alone"], result["server"]["load"]]

    def put(name, ok, detail):
        inv[name] = {"ok": bool(ok), "detail": detail}

    put("server_alive", all(not s["died"] and s["health_at_end"] for s in servers),
        [{"died": s["died"], "returncode": s["returncode"], "health_at_end": s["health_at_end"]} for s in servers])
    errs = [f"{s['id']}: {e}" for s in sessions for e in s["errors"] + s["exceptions"]]
    put("no_unexpected_errors", not errs, errs)
    tb = [f"session {s['id']}" for s in sessions if s["traceback"]] + \
         [f"hostile {h['file']}" for h in result["load"]["hostile"] if h["outcome"] == "traceback"]
    put("no_traceback_visible", not tb, tb)
    fails = [f"session {s['id']} ({s['model']}): {s['failure']}" for s in sessions if s["failure"]]
    put("every_page_done", not fails, fails)
    ident = [f"session {s['id']}: {p}" for s in sessions for p in s["identity_problems"]]
    put("own_image", not ident, ident)
    if want_hostile:
        h = result["hostile"]
        bad = [f"{x['file']}: {x['outcome']} {x['messages'][:1]}" for x in result["load"]["hostile"]
               if x["outcome"] != "refused"]
        put("hostile_corpus_built", h.get("built"), h.get("error") or f"{len(h.get('files', []))} files")
        put("hostile_uploads_refused", h.get("built") and not bad and result["load"]["hostile"], bad)
        put("no_payload_ran", h.get("built") and not h.get("payload_ran"), h.get("payload_ran"))
    blocked: dict[str, int] = {}
    for ph in phases:
        for url, n in ph["blocked_requests"].items():
            blocked[url] = blocked.get(url, 0) + n
    # the guard aborts them, so this always holds; the detail says what the app tried to reach
    put("browser_traffic_local_only", True, "no request left 127.0.0.1" + (
        f"; aborted {sum(blocked.values())} requests the app made elsewhere: "
        + ", ".join(f"{u} (x{n})" for u, n in blocked.items()) if blocked else ""))
    return inv


def render_doc(r: dict) -> str:
    """docs/loadtest.md from a saved result (numbers only from the JSON)."""
    c, pages, srv = r["config"], r["pages"], r["server"]
    L = ["# Load test", "",
         "<!-- generated from the JSON a run saved (`make loadtest`, then `python tests/loadtest.py --doc-from "
         "out/loadtest.json --doc docs/loadtest.md`); do not edit by hand -->", "",
         "`make loadtest` (= `python tests/loadtest.py --sessions 8`) starts one `streamlit run dashboard/app.py` "
         "on 127.0.0.1 and drives real Chromium sessions (Debian's `/usr/bin/chromium`, one browser context each) "
         "through Overview, Curvature, Cross-sections, Paths and Vulnerability, each session on its own gallery "
         "image and bundled model, while one more session uploads the hostile corpus of `tests/hostile.py` "
         "through the sidebar. `make test` runs the small version (3 sessions, `tests/test_loadtest.py`).", "",
         "Each page is first measured alone (a fresh server, one session per model, one after the other), then "
         "under load (a fresh server, all sessions at once). A page counts as done when its heading is shown, the "
         "script has stopped running, no spinner or queue notice remains and all its figures are drawn (as many "
         "as alone), or when an error box appears. The server runs under an address-space limit "
         f"(RLIMIT_AS {c['server_mem_gb']} GiB) so a memory bomb cannot take the machine down; its RSS and its "
         "child processes' are sampled from /proc every 0.5 s. The browser may only reach 127.0.0.1.", "",
         f"## Last run: {c['sessions']} sessions, {c['started']}", "",
         f"Machine: {c['cpus']} CPUs, {c['mem_gb']} GiB, shared (load average {c.get('load_average_at_start')} at "
         f"the start); commit `{c['commit']}`"
         + (" (with uncommitted changes)" if c.get("dirty") else "") + f"; Streamlit {c['streamlit']}, "
         f"torch {c['torch']}. Verdict: **{'all invariants hold' if r['ok'] else 'FAILED'}** "
         f"(alone phase {r['alone']['wall_s']} s, load phase {r['load']['wall_s']} s).", "",
         "| page | alone (s, per model) | under load p50 / p95 (s) | ratio to alone p50 / p95 | done |",
         "|---|---|---|---|---|"]
    for key in PAGE_KEYS:
        p = pages[key]
        alone = ", ".join(f"{m} {v:.1f}" for m, v in p["alone_s"].items() if v is not None) or "—"
        fmt = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
        L.append(f"| {key} | {alone} | {fmt(p['load_p50_s'])} / {fmt(p['load_p95_s'])} | "
                 f"x{fmt(p['ratio_p50'])} / x{fmt(p['ratio_p95'])} | {p['completed']}/{p['sessions']} |")
    L += ["", "The ratio is each session's page time under load divided by the same page alone on the same model "
          "(p50 / p95 over the sessions). Per session (seconds under load; setup `url`: the model and image came "
          "from `?model=…&image=gallery:…`, `widgets`: chosen in the sidebar):", "",
          "| session | model | image | setup | " + " | ".join(PAGE_KEYS) + " | own image on every page |",
          "|---" * (5 + len(PAGE_KEYS)) + "|"]
    for x in r["load"]["sessions"]:
        secs = [x["pages"].get(k, {}).get("seconds") for k in PAGE_KEYS]
        L.append(f"| {x['id']} | {x['model']} | {x['image']} | {x['setup']} | "
                 + " | ".join("—" if v is None else f"{v:.1f}" for v in secs)
                 + f" | {'yes' if not x['identity_problems'] and not x['failure'] else 'NO'} |")
    L += ["",
          "| phase | wall (s) | server peak RSS (MB) | child processes: peak RSS, sum (MB) / count | CPU s: server / "
          "workers / browsers | died | /_stcore/health at the end |", "|---|---|---|---|---|---|---|"]
    for ph in ("alone", "load"):
        s = srv[ph]
        cpu = s.get("cpu_s") or {}
        L.append(f"| {ph} | {r[ph]['wall_s']} | {s['peak_rss_mb']} | {s['peak_children_rss_mb']} / {s['max_children']}"
                 f" | {cpu.get('server', '—')} / {cpu.get('workers', '—')} / {cpu.get('browser', '—')} | "
                 f"{'yes' if s['died'] else 'no'} | {'ok' if s['health_at_end'] else 'NO'} |")
    cpu, wall = srv["load"].get("cpu_s") or {}, r["load"]["wall_s"]
    if cpu.get("browser") is not None and wall:
        avail = c["cpus"] * wall
        L += ["", f"The browsers run on the same {c['cpus']} cores as the server. In the load phase they used "
              f"{cpu['browser']:.0f} CPU-seconds ({100 * cpu['browser'] / avail:.0f}% of the {avail:.0f} the machine "
              f"had), the analysis workers {cpu['workers']:.0f} ({100 * cpu['workers'] / avail:.0f}%) and the web "
              f"server {cpu['server']:.0f} ({100 * cpu['server'] / avail:.0f}%): the ratios include the browsers' "
              "rendering, which in a class runs on the students' machines."]
    h = r["hostile"]
    L += ["", "## Hostile uploads", ""]
    if not h.get("built"):
        L.append(f"Not run: {h.get('error')}.")
    else:
        L += [f"Payload markers left behind: {h['payload_ran'] or 'none'}.", "",
              "| file | sidecar | outcome | seconds | message |", "|---|---|---|---|---|"]
        for x in r["load"]["hostile"]:
            msg = (x["messages"][0] if x["messages"] else "").replace("|", "\\|").replace("\n", " ")[:200]
            L.append(f"| {x['file']} | {x['sidecar'] or ''} | {x['outcome']} | {x['seconds']} | {msg} |")
    L += ["", "## Invariants", "", "| invariant | holds | detail |", "|---|---|---|"]
    for name, v in r["invariants"].items():
        d = v["detail"]
        d = "; ".join(map(str, d[:4])) + (f" (+{len(d) - 4})" if len(d) > 4 else "") if isinstance(d, list) else d
        d = str(d).replace("|", "\\|").replace("\n", " ")[:300]
        L.append(f"| {name} | {'yes' if v['ok'] else '**no**'} | {d} |")
    errs = r["errors"]
    L += ["", f"Unexpected error boxes: {errs['count']}."]
    for t in errs["texts"][:10]:
        L.append(f"- {t[:300]}".replace("\n", " "))
    L.append("")
    return "\n".join(L)


def git_info() -> tuple[str, bool]:
    if os.environ.get("LOADTEST_COMMIT"):  # a run from an exported copy of a commit (no .git there)
        return os.environ["LOADTEST_COMMIT"], False
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=8, help="concurrent benign sessions K (default 8)")
    ap.add_argument("--models", default=",".join(MODELS), help="bundled models, assigned to sessions in turn")
    ap.add_argument("--out", default=str(ROOT / "out" / "loadtest.json"), help="where the JSON goes")
    ap.add_argument("--page-timeout", type=float, default=300, help="seconds one page may take under load")
    ap.add_argument("--alone-timeout", type=float, default=300, help="seconds one page may take alone")
    ap.add_argument("--hostile-timeout", type=float, default=300, help="seconds one hostile upload may take")
    ap.add_argument("--hostile-lanes", type=int, default=1,
                    help="hostile uploads run in this many sessions at once (slow.pt alone in the first)")
    ap.add_argument("--no-hostile", action="store_true", help="skip the hostile uploads")
    ap.add_argument("--server-mem-gb", type=float, default=12.0, help="RLIMIT_AS of the server process (GiB, > 0)")
    ap.add_argument("--deadline", type=float, default=3600, help="overall wall-clock limit (s)")
    ap.add_argument("--doc", help="also write this Markdown report (e.g. docs/loadtest.md)")
    ap.add_argument("--doc-from", help="only render --doc from this saved JSON, run nothing")
    args = ap.parse_args(argv)

    if args.doc_from:
        r = json.loads(Path(args.doc_from).read_text())
        Path(args.doc or ROOT / "docs" / "loadtest.md").write_text(render_doc(r))
        return 0
    if args.server_mem_gb <= 0:
        ap.error("--server-mem-gb must be > 0: the hostile corpus holds memory bombs")
    if not os.path.exists(CHROMIUM):
        print(f"{CHROMIUM} is missing: run `make browser` (Debian's chromium)", file=sys.stderr)
        return 2
    start = time.monotonic()
    deadline = start + args.deadline
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    specs = session_specs(args.sessions, models)
    import streamlit
    import torch

    commit, dirty = git_info()
    result: dict = {"config": {
        "sessions": args.sessions, "models": models, "page_timeout_s": args.page_timeout,
        "hostile_timeout_s": args.hostile_timeout, "hostile_lanes": args.hostile_lanes,
        "server_mem_gb": args.server_mem_gb, "cpus": os.cpu_count(),
        "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "streamlit": streamlit.__version__, "torch": torch.__version__, "commit": commit, "dirty": dirty,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "out": os.path.relpath(out, ROOT),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "specs": specs}}
    expected = choose_images(specs)
    log(f"{args.sessions} sessions: " + "; ".join(f"{s['id']}={s['model']} gallery:{s['cls']}:{s['index']}"
                                                   for s in specs))

    hostile_items_list, hostile_dir = [], None
    result["hostile"] = {"built": False, "error": "skipped (--no-hostile)" if args.no_hostile else None}
    tmp = tempfile.TemporaryDirectory(prefix="loadtest-")
    if not args.no_hostile:
        try:
            from hostile import build_corpus

            hostile_dir = Path(tmp.name) / "corpus"
            corpus = build_corpus(hostile_dir)
            hostile_items_list = hostile_items(corpus)
            result["hostile"].update(built=True, folder=str(hostile_dir), files=sorted(corpus))
        except Exception as exc:  # noqa: BLE001 - reported as a failed invariant
            result["hostile"]["error"] = f"{type(exc).__name__}: {exc}"
    result["server"] = {}
    try:
        # phase 1: every page alone, one session per model, on a fresh server
        alone_specs = [next(s for s in specs if s["model"] == m) for m in dict.fromkeys(s["model"] for s in specs)]
        srv = Server("alone", Path(tmp.name) / "cache-alone", out.with_name(out.stem + "-server-alone.log"),
                     args.server_mem_gb)
        srv.start()
        log(f"alone phase on {srv.url}")
        try:
            alone_args = argparse.Namespace(**{**vars(args), "page_timeout": args.alone_timeout})
            result["alone"] = asyncio.run(phase("alone", srv, alone_specs, expected, alone_args, sequential=True,
                                                deadline=deadline))
        finally:
            result["server"]["alone"] = srv.stop()
        # a page under load must draw as many figures as it did alone (same session, same image)
        min_plots = {s["id"]: {k: v["figures"] for k, v in s["pages"].items() if not v["errors"]}
                     for s in result["alone"]["sessions"]}
        # phase 2: all sessions at once (+ the hostile uploads) on a fresh server
        srv = Server("load", Path(tmp.name) / "cache-load", out.with_name(out.stem + "-server-load.log"),
                     args.server_mem_gb)
        srv.start()
        log(f"load phase on {srv.url}: {len(specs)} sessions + {len(hostile_items_list)} hostile uploads")
        try:
            result["load"] = asyncio.run(phase("load", srv, specs, expected, args, sequential=False,
                                               min_plots=min_plots, hostile=hostile_items_list, deadline=deadline))
        finally:
            result["server"]["load"] = srv.stop()
    except Exception as exc:  # noqa: BLE001 - a run that could not finish still writes what it has
        result["fatal"] = f"{type(exc).__name__}: {exc}"
        log(f"FATAL {result['fatal']}")
    if hostile_dir is not None:
        from hostile import payload_ran

        result["hostile"]["payload_ran"] = payload_ran(hostile_dir)
    tmp.cleanup()

    if "fatal" in result:
        result["ok"] = False
        for key in ("alone", "load"):
            result.setdefault(key, {"sessions": [], "hostile": [], "blocked_requests": {}, "wall_s": None})
        out.write_text(json.dumps(result, indent=1, default=str))
        print(f"loadtest FAILED: {result['fatal']} (partial results in {out})")
        return 1
    result["pages"] = summarize(result["alone"], result["load"], specs)
    sessions = result["alone"]["sessions"] + result["load"]["sessions"]
    texts = [f"{s['id']}: {e}" for s in sessions for e in s["errors"] + s["exceptions"]]
    result["errors"] = {"count": len(texts), "texts": texts,
                        "hostile_refusals": sum(h["outcome"] == "refused" for h in result["load"]["hostile"])}
    result["invariants"] = check(result, not args.no_hostile)
    result["ok"] = all(v["ok"] for v in result["invariants"].values())
    result["wall_s"] = rnd(time.monotonic() - start, 1)
    result["config"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out.write_text(json.dumps(result, indent=1, default=str))
    if args.doc:
        Path(args.doc).write_text(render_doc(result))

    # ---- what a person reads
    print()
    print(f"{'page':14s} {'alone p50':>10s} {'load p50':>9s} {'load p95':>9s} {'ratio p50':>10s} {'ratio p95':>10s}"
          f" {'done':>6s}")
    for key, p in result["pages"].items():
        f = lambda v: "-" if v is None else f"{v:g}"  # noqa: E731
        print(f"{key:14s} {f(p['alone_p50_s']):>10s} {f(p['load_p50_s']):>9s} {f(p['load_p95_s']):>9s} "
              f"{f(p['ratio_p50']):>10s} {f(p['ratio_p95']):>10s} {p['completed']:>3d}/{p['sessions']}")
    for ph in ("alone", "load"):
        s = result["server"][ph]
        print(f"server ({ph}): peak RSS {s['peak_rss_mb']} MB (VmHWM {s['vmhwm_mb']}), children peak "
              f"{s['peak_children_rss_mb']} MB in {s['max_children']} processes, died={s['died']}, "
              f"health at end={s['health_at_end']}")
    print(f"errors: {result['errors']['count']} unexpected; hostile refusals: {result['errors']['hostile_refusals']}"
          f"/{len(result['load']['hostile'])}; payload ran: {result['hostile'].get('payload_ran')}")
    for name, v in result["invariants"].items():
        print(f"  {'ok  ' if v['ok'] else 'FAIL'} {name}" + ("" if v["ok"] else f": {v['detail']}"))
    print(f"{'loadtest passed' if result['ok'] else 'loadtest FAILED'} in {result['wall_s']} s; JSON: {out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
