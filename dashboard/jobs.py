"""The app's one way to run anything that touches a model: off the web server.

``compute(fn, *args, what=..., **kwargs)`` runs ``fn(clf, *args, **kwargs)`` on the session's
current model through the executor (``geometry.executor``: by default a pool of worker processes
started with the first session, each with a memory cap and a time limit per job). While the job
waits, the page shows how many analyses are ahead of it; while it runs, its progress. Results are
cached across sessions by (function, model digest, arguments), within a byte budget; identical
requests from several students share one job. A job no session waits for any more (the user
changed a setting) is dropped from the queue. Failures (time or memory limit, bad input) arrive
as one plain ``GeometryError`` message, which ``dashboard.ui.guarded`` shows, and are remembered
for a few minutes so that reruns do not resubmit them.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import pickle
import threading
import time

import streamlit as st

from geometry.errors import GeometryError
from geometry.executor import DEFAULT_TIMEOUT_S, Job, JobFailed, ModelRef, executor_from_env, fingerprint

RESULTS_KEPT = 256                 # entries
RESULTS_MAX_BYTES = 1 << 30        # all cached results together (pickled size)
RESULT_MAX_BYTES = 128 << 20       # a larger single result is returned but not kept
POLL_S = 0.2
LONG_JOB_FACTOR = 5                # S, the experiments, the ROC: 5 x the time limit per job (600 s by default)
# A failed job (bad model, time or memory limit) is remembered this long, so every rerun of a page
# (any click) does not resubmit a 60-second failure; after it, the same request is tried again.
FAILURES_KEPT_S = 300.0
NOT_REMEMBERED = ("queue", "crashed")   # about the pool's state, not about the request


class _Failure:
    """A remembered failure: its class, message and kind (never the exception object, whose
    traceback would keep every rerun's page state alive)."""

    def __init__(self, error: BaseException):
        self.cls = type(error) if isinstance(error, GeometryError) else JobFailed
        self.message = str(error) if isinstance(error, GeometryError) else f"{type(error).__name__}: {error}"
        self.kind = getattr(error, "kind", "error")
        self.at = time.monotonic()

    def fresh(self) -> GeometryError:
        return _fresh_error(self.cls, self.message, self.kind)


def _fresh_error(cls, message: str, kind: str) -> GeometryError:
    if issubclass(cls, JobFailed):
        return JobFailed(message, kind)
    try:
        return cls(message)
    except Exception:  # noqa: BLE001 - an error class with another signature
        return GeometryError(message)


class _Store:
    """Results (LRU within a byte budget) and in-flight futures, shared by every session of this server."""

    def __init__(self):
        self.lock = threading.RLock()  # re-entrant: cancelling a future runs its done-callback in this thread
        self.results: collections.OrderedDict = collections.OrderedDict()   # key -> (value, nbytes)
        self.nbytes = 0
        self.inflight: dict = {}
        self.waiters: collections.Counter = collections.Counter()

    def get(self, key):
        """(True, result) for a stored result; raises a remembered failure; (False, None) otherwise."""
        with self.lock:
            if key in self.results:
                self.results.move_to_end(key)
                value, _ = self.results[key]
                if not isinstance(value, _Failure):
                    return True, value
                if time.monotonic() - value.at < FAILURES_KEPT_S:
                    raise value.fresh() from None
                self._drop(key)
        return False, None

    def put(self, key, value, nbytes: int = 0) -> None:
        if nbytes > RESULT_MAX_BYTES:
            return
        with self.lock:
            if key in self.results:
                self._drop(key)
            self.results[key] = (value, nbytes)
            self.nbytes += nbytes
            while self.results and (len(self.results) > RESULTS_KEPT or self.nbytes > RESULTS_MAX_BYTES):
                self._drop(next(iter(self.results)))

    def _drop(self, key) -> None:
        _, nbytes = self.results.pop(key)
        self.nbytes -= nbytes


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


def _size(value) -> int:
    try:
        return len(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - not picklable (inline executor): count it as small
        return 0


def compute(fn, *args, what: str = "the analysis", model: ModelRef | None | bool = True, timeout: float | None = None,
            long: bool = False, quick: bool = False, progress: bool = False, **kwargs):
    """Run ``fn(clf, *args, **kwargs)`` for the current model (or ``model``: another ModelRef, or
    False for no model) in the executor and wait for it, showing queue position and progress.

    ``timeout``: seconds for this job (default: the executor's limit); ``long=True``: a job that
    loops over hundreds of images gets ``LONG_JOB_FACTOR`` times the limit; ``quick=True``: a job of
    about a second that starts before queued long ones (a prediction, a model's facts). Returns the result;
    raises ``GeometryError`` (e.g. ``JobFailed``) with one plain message."""
    ref = current_ref() if model is True else (model or None)
    key = fingerprint((fn, ref.digest if ref else None, args, kwargs, progress))
    if long and timeout is None:
        timeout = LONG_JOB_FACTOR * float(getattr(executor(), "timeout", DEFAULT_TIMEOUT_S))
    store = _store()
    for attempt in range(2):
        hit, value = store.get(key)
        if hit:
            return value
        fut = _attach(store, key, lambda: Job(fn, ref, tuple(args), dict(kwargs), what=what, timeout=timeout,
                                               progress=progress, owner=session_id(), quick=quick))
        try:
            _wait(fut, what)
        finally:
            _detach(store, key, fut)
        try:
            return fut.result()
        except concurrent.futures.CancelledError:
            if attempt == 0:  # the last other waiter dropped it just as we attached: submit again
                continue
            raise JobFailed(f"{what} was cancelled; try again", "queue") from None
        except GeometryError as exc:
            raise _fresh_error(type(exc), str(exc), getattr(exc, "kind", "error")) from None
        except Exception as exc:  # noqa: BLE001 - the inline executor passes the analysis' own exceptions
            raise JobFailed(f"{what} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}",
                            "failed") from None
    raise AssertionError("unreachable")


def _attach(store: _Store, key, make_job):
    """The in-flight future for ``key`` (submitting the job when there is none), counted as waited for."""
    with store.lock:
        fut = store.inflight.get(key)
        if fut is not None and not fut.cancelled():
            store.waiters[key] += 1
            return fut
    fut = executor().submit(make_job())   # outside the lock: raises JobFailed when this session has too many
    with store.lock:
        other = store.inflight.get(key)
        if other is not None and not other.cancelled():  # another session submitted the same job meanwhile
            fut.cancel()
            store.waiters[key] += 1
            return other
        store.inflight[key] = fut
        store.waiters[key] += 1

    def _done(f, key=key):
        with store.lock:
            if store.inflight.get(key) is f:
                del store.inflight[key]
        if f.cancelled():
            return
        err = f.exception()
        if err is None:
            value = f.result()
            store.put(key, value, _size(value))
        elif getattr(err, "kind", None) not in NOT_REMEMBERED:
            store.put(key, _Failure(err))

    fut.add_done_callback(_done)   # outside the lock (an inline future is already done: this runs now)
    return fut


def _detach(store: _Store, key, fut) -> None:
    with store.lock:
        store.waiters[key] -= 1
        if store.waiters[key] <= 0:
            del store.waiters[key]
            if not fut.done():
                fut.cancel()  # only a job still in the queue can be cancelled; a running one finishes and is kept


def _wait(fut, what: str) -> None:
    """Show the queue position, then progress, until ``fut`` is done. The box is redrawn every
    second at least: Streamlit notices a rerun request (a changed setting, a closed tab) only when
    the script writes to the page, and that is when a job no one waits for leaves the queue."""
    if fut.done():
        return
    box = st.empty()
    t0 = time.monotonic()
    shown = None
    while not fut.done():
        now = time.monotonic()
        if not fut.running():
            ahead = fut.position()
            text = (f"Waiting for a free worker: {ahead} {'analysis' if ahead == 1 else 'analyses'} ahead of yours "
                    f"({what}; {now - t0:.0f} s)." if ahead else f"Starting {what}… {now - t0:.0f} s")
            if text != shown:
                box.info(text, icon=":material/hourglass_top:")
                shown = text
        else:
            started = fut.started_at or t0
            frac, msg = fut.progress or (None, "")
            text = f"Computing {what}… {now - started:.0f} s" + (f" — {msg}" if msg else "")
            if text != shown:
                if frac is not None:
                    box.progress(min(max(frac, 0.0), 1.0), text=text)
                else:
                    box.caption(text)
                shown = text
        time.sleep(POLL_S)
    box.empty()


__all__ = ["compute", "executor", "current_ref", "session_id", "JobFailed", "ModelRef"]
