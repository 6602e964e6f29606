"""The app's one way to run anything that touches a model: off the web server.

``compute(fn, *args, what=..., **kwargs)`` runs ``fn(clf, *args, **kwargs)`` on the session's
current model through the executor (``geometry.executor``: by default a pool of worker processes
started with the server, each with a memory cap and a time limit per job). While the job waits,
the page shows how many analyses are ahead of it; while it runs, its progress. Results are cached
across sessions by (function, model digest, arguments); identical requests from several students
share one job. A job one session no longer waits for (the user changed a setting) is dropped from
the queue unless another session waits for it too. Failures (time or memory limit, bad input)
arrive as one plain ``GeometryError`` message, which ``dashboard.ui.guarded`` shows.
"""

from __future__ import annotations

import atexit
import collections
import threading
import time

import streamlit as st

from geometry.executor import Job, JobFailed, ModelRef, executor_from_env, fingerprint

RESULTS_KEPT = 256
POLL_S = 0.2
# A failed job (bad model, time or memory limit) is remembered this long, so every rerun of a page
# (any click) does not resubmit a 60-second failure; after it, the same request is tried again.
FAILURES_KEPT_S = 300.0


class _Failure:
    def __init__(self, error: Exception):
        self.error, self.at = error, time.monotonic()


class _Store:
    """Results (LRU) and in-flight futures, shared by every session of this server."""

    def __init__(self):
        self.lock = threading.Lock()
        self.results: collections.OrderedDict = collections.OrderedDict()
        self.inflight: dict = {}
        self.waiters: collections.Counter = collections.Counter()

    def get(self, key):
        """(True, result) for a stored result; raises a remembered failure; (False, None) otherwise."""
        with self.lock:
            if key in self.results:
                self.results.move_to_end(key)
                value = self.results[key]
                if not isinstance(value, _Failure):
                    return True, value
                if time.monotonic() - value.at < FAILURES_KEPT_S:
                    raise value.error
                del self.results[key]
        return False, None

    def put(self, key, value) -> None:
        with self.lock:
            self.results[key] = value
            self.results.move_to_end(key)
            while len(self.results) > RESULTS_KEPT:
                self.results.popitem(last=False)


@st.cache_resource(show_spinner=False)
def executor():
    """The server's executor, created once (with its workers) when the first session starts."""
    ex = executor_from_env()
    atexit.register(ex.shutdown)
    return ex


@st.cache_resource(show_spinner=False)
def _store() -> _Store:
    return _Store()


def session_id() -> str | None:
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        return ctx.session_id if ctx is not None else None
    except Exception:  # noqa: BLE001 - outside a Streamlit run
        return None


def current_ref() -> ModelRef:
    return st.session_state["_model_ref"]


def compute(fn, *args, what: str = "the analysis", model: ModelRef | None | bool = True, timeout: float | None = None,
            progress: bool = False, **kwargs):
    """Run ``fn(clf, *args, **kwargs)`` for the current model (or ``model``: another ModelRef, or
    False for no model) in the executor and wait for it, showing queue position and progress.

    Returns the result; raises ``GeometryError`` (e.g. ``JobFailed``) with one plain message."""
    ref = current_ref() if model is True else (model or None)
    key = fingerprint((fn, ref.digest if ref else None, args, kwargs, progress))
    store = _store()
    hit, value = store.get(key)
    if hit:
        return value
    with store.lock:
        fut = store.inflight.get(key)
        if fut is None or fut.cancelled():
            job = Job(fn, ref, tuple(args), dict(kwargs), what=what, timeout=timeout, progress=progress,
                      owner=session_id())
            fut = executor().submit(job)   # raises JobFailed when this session has too many queued
            store.inflight[key] = fut

            def _done(f, key=key):
                with store.lock:
                    if store.inflight.get(key) is f:
                        del store.inflight[key]
                if f.cancelled():
                    return
                err = f.exception()
                if err is None:
                    store.put(key, f.result())
                elif not (isinstance(err, JobFailed) and err.kind == "queue"):
                    store.put(key, _Failure(err))

            fut.add_done_callback(_done)
        store.waiters[key] += 1
    try:
        _wait(fut, what)
    finally:
        with store.lock:
            store.waiters[key] -= 1
            alone = store.waiters[key] <= 0
            if alone:
                del store.waiters[key]
        if alone and not fut.done():
            fut.cancel()  # only a job still in the queue can be cancelled; a running one finishes and is cached
    return fut.result()


def _wait(fut, what: str) -> None:
    if fut.done():
        return
    box = st.empty()
    t0 = time.monotonic()
    shown = None
    while not fut.done():
        if not fut.running():
            ahead = fut.position()
            text = (f"Waiting for a free worker: {ahead} {'analysis' if ahead == 1 else 'analyses'} ahead of yours "
                    f"({what})." if ahead else f"Starting {what}…")
            if text != shown:
                box.info(text, icon=":material/hourglass_top:")
                shown = text
        else:
            started = fut.started_at or t0
            frac, msg = fut.progress or (None, "")
            text = f"Computing {what}… {time.monotonic() - started:.0f} s" + (f" — {msg}" if msg else "")
            if text != shown:
                if frac is not None:
                    box.progress(min(max(frac, 0.0), 1.0), text=text)
                else:
                    box.caption(text)
                shown = text
        time.sleep(POLL_S)
    box.empty()


__all__ = ["compute", "executor", "current_ref", "session_id", "JobFailed", "ModelRef"]
