"""Where analyses run: one small seam, *submit a job, get a future*.

A :class:`Job` names a module-level function ``fn(clf, *args, **kwargs)``, the model it runs on
(a :class:`ModelRef`: a zoo name or a file plus its load options, identified by a digest), its
arguments, and its limits. An executor runs it somewhere and returns a :class:`JobFuture`:

- :class:`InlineExecutor` runs the job in the calling thread (the CLI, tests, scripts);
- :class:`LocalPool` runs jobs in a few worker processes (the app's default): each worker holds a
  memory cap, each job a wall-clock limit; a job past either is stopped, its future gets a
  :class:`JobFailed` with one plain sentence, and the worker is replaced. Jobs wait in one FIFO
  queue whose position the caller can show; each owner (an app session) has at most
  ``max_per_owner`` jobs queued or running. Workers keep loaded models cached by digest.

A distributed backend only has to implement ``submit(job) -> JobFuture`` (and may ignore
``position``); analyses never know which executor ran them. Inside a job, the analyses' loops over images and pairs
run on Ray when ``$BOUNDARY_GEOMETRY_RAY`` is ``auto`` or a cluster's address (``geometry.distributed``, docs/ray.md).

Results and arguments cross process boundaries by pickling *our own* objects between *our own*
processes; no uploaded file is ever unpickled (model files are read by ``geometry.loading``).

Imports the standard library at module level; torch only inside workers and jobs.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import itertools
import os
import pickle
import resource
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Callable

from .errors import GeometryError

ENV_EXECUTOR = "BOUNDARY_GEOMETRY_EXECUTOR"            # "pool" (default in the app) or "inline"
ENV_WORKERS = "BOUNDARY_GEOMETRY_WORKERS"              # worker processes (default: one per core)
ENV_MEMORY_GB = "BOUNDARY_GEOMETRY_WORKER_MEMORY_GB"   # memory cap per worker (default 4)
ENV_TIMEOUT = "BOUNDARY_GEOMETRY_JOB_TIMEOUT"          # wall-clock limit per job in seconds (default 120)
ENV_PER_OWNER = "BOUNDARY_GEOMETRY_JOBS_PER_SESSION"   # queued + running jobs per session (default 3)
# BOUNDARY_GEOMETRY_RAY (geometry.distributed.ENV_RAY): auto or a Ray address: the jobs' loops run on Ray

DEFAULT_MEMORY_GB = 4.0
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_PER_OWNER = 3
MODELS_PER_WORKER = 4


class JobFailed(GeometryError):
    """A job was stopped (time or memory limit), its worker died, or the analysis raised.

    ``kind``: "timeout", "memory" (a limit stopped it), "crashed" (its worker process died),
    "failed" (the analysis raised an unexpected exception), "queue" (refused at submission:
    too many jobs of this owner), "error" (anything else)."""

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelRef:
    """How to load a model anywhere: a zoo name or a file path, with the keyword options of
    :func:`geometry.loading.load_classifier`. ``digest`` identifies the weights and options
    (workers cache loaded models by it)."""

    source: str
    options: tuple = ()
    digest: str = ""

    @classmethod
    def create(cls, source, data_digest: str | None = None, **options) -> "ModelRef":
        """``data_digest``: a hash of the file's bytes (computed from the file when not given;
        for a zoo name, of its weights file)."""
        opts = tuple(sorted((k, _freeze(v)) for k, v in options.items() if v is not None))
        if data_digest is None:
            data_digest = _file_digest(str(source))
        h = hashlib.sha256(repr((str(source), data_digest, opts)).encode()).hexdigest()[:24]
        return cls(str(source), opts, h)

    def load(self):
        from .loading import load_classifier

        return load_classifier(self.source, **{k: _thaw(v) for k, v in self.options})


def _freeze(v):
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return v if isinstance(v, (str, int, float, bool)) else str(v)


def _thaw(v):
    return list(v) if isinstance(v, tuple) else v


def _file_digest(source: str) -> str:
    from .zoo import zoo_names, zoo_weights_path

    path = zoo_weights_path(source) if source in zoo_names() and not os.path.exists(source) else source
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return "missing"
    return h.hexdigest()


# ------------------------------------------------------------------------------------------ jobs
@dataclass
class Job:
    """``fn(clf, *args, **kwargs)`` on the model ``model`` (or ``fn(*args, **kwargs)`` when
    ``model`` is None). ``progress``: pass a ``progress(fraction, message)`` callback as the
    keyword of that name. ``timeout``: seconds (None: the executor's default). ``what`` names
    the analysis in messages; ``owner`` (an app session) bounds how many jobs one user queues;
    ``quick``: a job of a second or less (a prediction, loading a model's facts) that waits only
    behind other quick jobs: it starts before every queued long analysis (though it may wait for
    running ones to finish)."""

    fn: Callable
    model: ModelRef | None = None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    what: str = "the analysis"
    timeout: float | None = None
    progress: bool = False
    owner: str | None = None
    quick: bool = False


class JobFuture(concurrent.futures.Future):
    """A future with the job's latest progress ``(fraction, message)`` and its queue position."""

    def __init__(self, job: Job, executor=None):
        super().__init__()
        self.job = job
        self.progress: tuple[float, str] | None = None
        self.started_at: float | None = None
        self._executor = executor

    def position(self) -> int:
        """Jobs ahead of this one in the queue (0 when running or done)."""
        return self._executor.position(self) if self._executor is not None else 0


def _run_job(job: Job, clf, report: Callable[[float, str], None] | None):
    kwargs = dict(job.kwargs)
    if job.progress:
        kwargs["progress"] = report or (lambda f, m: None)
    if job.model is None:
        return job.fn(*job.args, **kwargs)
    from .distributed import ENV_RAY, backend

    # $BOUNDARY_GEOMETRY_RAY: the job's loops over images and pairs run on Ray (docs/ray.md); Ray is only contacted
    # when a loop has more than one chunk, so quick jobs stay here
    with backend(os.environ.get(ENV_RAY) or None, model=job.model):
        return job.fn(clf, *job.args, **kwargs)


def _is_memory_error(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text
                                              or "failed to allocate" in text)


def _fmt_gb(gb: float) -> str:
    return f"{gb:g} GB"


class _ModelCache:
    """Loaded classifiers by ``ModelRef.digest``, the ``size`` most recently used (thread-safe)."""

    def __init__(self, size: int = MODELS_PER_WORKER):
        self._models: collections.OrderedDict = collections.OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, ref: ModelRef):
        with self._lock:
            if ref.digest in self._models:
                self._models.move_to_end(ref.digest)
                return self._models[ref.digest]
        clf = ref.load()
        with self._lock:
            self._models[ref.digest] = clf
            while len(self._models) > self._size:
                self._models.popitem(last=False)
        return clf

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


class InlineExecutor:
    """Runs each job at once in the calling thread. Loaded models are cached by digest."""

    def __init__(self, models: int = MODELS_PER_WORKER):
        self._models = _ModelCache(models)

    def submit(self, job: Job) -> JobFuture:
        fut = JobFuture(job, self)
        fut.set_running_or_notify_cancel()
        fut.started_at = time.monotonic()

        def report(frac, msg):
            fut.progress = (float(frac), str(msg))

        try:
            clf = self._models.get(job.model) if job.model is not None else None
            fut.set_result(_run_job(job, clf, report))
        except GeometryError as exc:
            fut.set_exception(exc)
        except Exception as exc:  # noqa: BLE001 - the future carries it to the caller
            if _is_memory_error(exc):
                fut.set_exception(JobFailed(f"{job.what} ran out of memory; try smaller settings", "memory"))
            else:
                fut.set_exception(exc)
        return fut

    def position(self, fut) -> int:
        return 0

    def shutdown(self) -> None:
        self._models.clear()


# -------------------------------------------------------------------------------- worker process
def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _vm_size_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _send(conn, obj) -> None:
    # plain pickle: multiprocessing's own pickler lets torch pass tensors as shared-memory file
    # descriptors, which needs a handshake our socket pair does not have
    conn.send_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def _recv(conn):
    return pickle.loads(conn.recv_bytes())


def _die_with_parent() -> None:
    """Exit when the server dies (a busy worker would otherwise compute on). A thread watches for
    this process being re-parented; the kernel's parent-death signal is not used because it follows
    the *thread* that started the worker, and Streamlit's script threads come and go."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _worker_main(conn, memory_bytes: int | None, threads: int) -> None:
    """A worker: load models on demand (cached by digest), run jobs one at a time, report progress.

    The memory cap is an address-space limit set *after* torch is imported, on top of what the
    process has mapped by then (a CUDA context maps far more than it uses, and so does a Ray client's
    shared-memory object store, so no cap is set where CUDA is available or ``$BOUNDARY_GEOMETRY_RAY`` is set; the
    parent's RSS watchdog still applies there)."""
    import logging
    import warnings

    _die_with_parent()
    warnings.simplefilter("ignore")
    logging.getLogger("torch").setLevel(logging.CRITICAL)
    import torch

    torch.set_num_threads(max(1, threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    import geometry  # noqa: F401 - import the whole library before the cap is set

    from .distributed import ENV_RAY

    if memory_bytes and not torch.cuda.is_available() and not os.environ.get(ENV_RAY):
        limit = _vm_size_bytes() + memory_bytes
        try:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError):
            pass
    models = _ModelCache()
    _send(conn, ("ready", os.getpid()))
    while True:
        try:
            msg = _recv(conn)
        except (EOFError, OSError):
            return
        if msg is None:
            return
        job_id, job = msg
        last = [0.0]

        def report(frac, text, _id=job_id):
            now = time.monotonic()
            if now - last[0] >= 0.2 or frac >= 1.0:
                last[0] = now
                try:
                    _send(conn, ("progress", _id, (float(frac), str(text))))
                except (OSError, ValueError):
                    pass

        fatal = False
        try:
            clf = models.get(job.model) if job.model is not None else None
            reply = ("done", job_id, _run_job(job, clf, report))
        except GeometryError as exc:
            reply = ("error", job_id, ("error", str(exc)))
        except BaseException as exc:  # noqa: BLE001 - one plain message to the caller
            if _is_memory_error(exc):
                reply, fatal = ("error", job_id, ("memory", str(exc).splitlines()[0][:200] if str(exc) else "")), True
            else:
                tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
                reply = ("error", job_id, ("failed", tb[:300]))
        try:
            _send(conn, reply)
        except Exception as exc:  # noqa: BLE001 - a result that does not pickle
            if _is_memory_error(exc):
                fatal = True
            _send(conn, ("error", job_id, ("memory" if fatal else "failed",
                                         f"the result could not be sent back ({type(exc).__name__})")))
        if fatal:  # after a failed allocation the process may be in a bad state: let the pool replace it
            return


_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WORKER_CODE = ("import sys; from multiprocessing.connection import Connection; "
                "from geometry.executor import _worker_main; "
                "_worker_main(Connection(int(sys.argv[1])), int(sys.argv[2]) or None, int(sys.argv[3]))")


class _Worker:
    """A fresh interpreter (not a fork of the threaded web server, and not a re-import of its main
    script) speaking over a socket pair with multiprocessing's framing."""

    def __init__(self, memory_bytes, threads):
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        # one thread per worker, no busy-waiting OpenMP threads, few malloc arenas (the cap counts them)
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE",
                   MALLOC_ARENA_MAX="2")
        self.process = subprocess.Popen([sys.executable, "-c", _WORKER_CODE, str(child.fileno()),
                                         str(memory_bytes or 0), str(threads)],
                                        pass_fds=(child.fileno(),), env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, close_fds=True)
        child.close()
        self.conn = Connection(parent.detach())
        self.ready = False
        self.job_id: int | None = None
        self.future: JobFuture | None = None
        self.deadline: float | None = None
        self.peak_rss = 0
        self.broken = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        try:
            self.process.kill()
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.conn.close()


class LocalPool:
    """Worker processes with a memory cap each and a wall-clock limit per job (module docstring).

    ``workers``: processes (default one per core); ``memory_gb``: cap per worker;
    ``timeout``: default seconds per job; ``max_per_owner``: jobs one owner may have queued or
    running at once. Started at construction; :meth:`shutdown` stops every worker.

    One dispatcher thread owns the workers. Futures are resolved *outside* the pool's lock, so a
    done-callback may submit or inspect the pool freely."""

    def __init__(self, workers: int | None = None, memory_gb: float | None = DEFAULT_MEMORY_GB,
                 timeout: float = DEFAULT_TIMEOUT_S, max_per_owner: int = DEFAULT_PER_OWNER, threads: int = 1):
        if not timeout > 0:
            raise GeometryError(f"the time limit per job must be positive, got {timeout}")
        self.workers_n = max(1, int(workers or os.cpu_count() or 1))
        self.memory_gb = memory_gb
        self.memory_bytes = int(memory_gb * 2**30) if memory_gb else None
        self.timeout = float(timeout)
        self.max_per_owner = int(max_per_owner)
        self.threads = threads
        self._lock = threading.Condition()
        self._pending: collections.deque = collections.deque()   # (job_id, future)
        self._outcomes: list = []   # (future, "result" | "exception", value): resolved after the lock is released
        self._ids = itertools.count(1)
        self._workers = [self._spawn() for _ in range(self.workers_n)]
        self._closed = False
        self.stats = collections.Counter()
        self._thread = threading.Thread(target=self._loop, name="geometry-pool", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public
    def submit(self, job: Job) -> JobFuture:
        fut = JobFuture(job, self)
        with self._lock:
            if self._closed:
                raise JobFailed("the analysis pool is shut down", "queue")
            self._drop_cancelled()
            if job.owner is not None and self.max_per_owner > 0:
                mine = sum(1 for _, f in self._pending if f.job.owner == job.owner)
                mine += sum(1 for w in self._workers if w.future is not None and w.future.job.owner == job.owner)
                if mine >= self.max_per_owner:
                    raise JobFailed(f"you already have {mine} analyses queued or running (the limit per session "
                                    f"is {self.max_per_owner}); wait for them to finish, then try again", "queue")
            self._pending.append((next(self._ids), fut))
            self.stats["submitted"] += 1
            self._lock.notify_all()
        return fut

    def position(self, fut: JobFuture) -> int:
        """Live jobs that will start before ``fut`` (quick jobs first, then first come first served)."""
        with self._lock:
            ahead = 0
            for _, f in self._order():
                if f is fut:
                    return ahead
                if not f.cancelled():
                    ahead += 1
        return 0

    def queued(self) -> int:
        with self._lock:
            return sum(1 for _, f in self._pending if not f.cancelled())

    def running(self) -> int:
        with self._lock:
            return sum(1 for w in self._workers if w.future is not None)

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._workers]

    def alive(self) -> bool:
        """True while the dispatcher thread runs (it only stops at :meth:`shutdown`)."""
        return self._thread.is_alive()

    def shutdown(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._pending)
            self._pending.clear()
            busy = [w.future for w in self._workers if w.future is not None]
            self._lock.notify_all()
        for _, f in pending:
            f.cancel()
        for w in self._workers:
            try:
                _send(w.conn, None)
            except (OSError, ValueError):
                pass
        for w in self._workers:
            try:
                w.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            w.kill()
        for f in busy:
            if not f.done():
                f.set_exception(JobFailed("the analysis pool was shut down", "crashed"))

    # ------------------------------------------------------------------ internals (called with the lock held)
    def _spawn(self) -> _Worker:
        return _Worker(self.memory_bytes, self.threads)

    def _order(self) -> list:
        """Pending jobs in the order they will start: quick jobs first, each kind first come first served."""
        return [e for e in self._pending if e[1].job.quick] + [e for e in self._pending if not e[1].job.quick]

    def _drop_cancelled(self) -> None:
        if any(f.cancelled() for _, f in self._pending):
            self._pending = collections.deque((i, f) for i, f in self._pending if not f.cancelled())

    def _replace(self, w: _Worker) -> None:
        if w not in self._workers:  # already replaced in this pass
            return
        w.kill()
        i = self._workers.index(w)
        try:
            self._workers[i] = self._spawn()
        except OSError as exc:  # out of processes or descriptors: keep the dead slot, retry on the next pass
            _log(f"could not start a worker: {exc}")
            w.ready, w.broken = False, True
        self.stats["replaced"] += 1

    def _finish(self, w: _Worker, outcome: str, value) -> None:
        fut = w.future
        w.future, w.job_id, w.deadline = None, None, None
        if fut is not None:
            self._outcomes.append((fut, outcome, value))

    def _fail(self, w: _Worker, kind: str, detail: str = "") -> None:
        if w.future is None:
            return
        job = w.future.job
        limit = job.timeout or self.timeout
        if kind == "timeout":
            msg = (f"{job.what} was stopped after {limit:.0f} s (the time limit per analysis); choose smaller "
                   "settings, or run it from the command line, which has no limit")
        elif kind == "memory":
            msg = (f"this model needs more than {_fmt_gb(self.memory_gb)} of memory for {job.what}; it was stopped "
                   "(the memory limit per analysis). Choose smaller settings or a smaller input")
        elif kind == "failed":
            msg = f"{job.what} failed: {detail}"
        else:
            msg = f"{job.what} stopped unexpectedly (its worker process exited); try again or other settings"
        self.stats[kind] += 1
        self._finish(w, "exception", JobFailed(msg, kind))

    def _dispatch(self) -> None:
        self._drop_cancelled()
        for w in self._workers:
            if not self._pending:
                return
            if not w.ready or w.future is not None:
                continue
            entry = self._order()[0]
            self._pending.remove(entry)
            job_id, fut = entry
            if not fut.set_running_or_notify_cancel():
                continue
            fut.started_at = time.monotonic()
            w.future, w.job_id = fut, job_id
            w.deadline = fut.started_at + (fut.job.timeout or self.timeout)
            try:
                _send(w.conn, (job_id, fut.job))
            except (pickle.PicklingError, TypeError, AttributeError) as exc:  # an argument that does not pickle
                self._finish(w, "exception", JobFailed(f"{fut.job.what} could not be sent to a worker "
                                                       f"({type(exc).__name__}: {exc})", "error"))
            except OSError:  # the worker died in between
                self._fail(w, "crashed")
                self._replace(w)

    def _handle(self, w: _Worker, msg) -> None:
        tag = msg[0]
        if tag == "ready":
            w.ready = True
            return
        if w.future is None or msg[1] != w.job_id:
            return
        if tag == "progress":
            w.future.progress = msg[2]
            return
        if tag == "done":
            self.stats["done"] += 1
            self._finish(w, "result", msg[2])
            return
        kind, text = msg[2]
        if kind == "error":
            self.stats["error"] += 1
            self._finish(w, "exception", GeometryError(text))
        elif kind == "memory":  # the worker exits after a failed allocation: replace it before the next job
            self._fail(w, "memory")
            self._replace(w)
        else:
            self._fail(w, kind, text)

    def _service(self, ready, conns) -> None:
        for c in ready:
            w = conns[c]
            if w not in self._workers:
                continue
            try:
                while w in self._workers and c.poll():
                    self._handle(w, _recv(c))
            except (EOFError, OSError):
                self._fail(w, "crashed")
                self._replace(w)
            except Exception as exc:  # noqa: BLE001 - a reply that does not unpickle: that job fails, not the pool
                self._fail(w, "failed", f"its result could not be read ({type(exc).__name__})")
                self._replace(w)
        now = time.monotonic()
        for w in list(self._workers):
            if getattr(w, "broken", False):
                self._replace(w)
                continue
            if w.future is not None:
                rss = _rss_bytes(w.pid)
                w.peak_rss = max(w.peak_rss, rss)
                if self.memory_bytes and rss > self.memory_bytes:
                    self._fail(w, "memory")
                    self._replace(w)
                    continue
                if w.deadline is not None and now > w.deadline:
                    self._fail(w, "timeout")
                    self._replace(w)
                    continue
            if not w.alive():
                self._fail(w, "memory" if w.process.returncode == -9 else "crashed")
                self._replace(w)
        self._dispatch()

    def _resolve(self) -> None:
        """Hand outcomes to their futures, outside the lock (done-callbacks run here)."""
        with self._lock:
            outcomes, self._outcomes = self._outcomes, []
        for fut, outcome, value in outcomes:
            try:
                if fut.done():
                    continue
                if outcome == "result":
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
            except Exception as exc:  # noqa: BLE001 - a failing callback must not stop the pool
                _log(f"a job's done-callback failed: {type(exc).__name__}: {exc}")

    def _loop(self) -> None:
        from multiprocessing.connection import wait

        while True:
            try:
                with self._lock:
                    if self._closed:
                        return
                    self._dispatch()
                    conns = {w.conn: w for w in self._workers if not getattr(w, "broken", False)}
                try:
                    ready = wait(list(conns), timeout=0.1)
                except (OSError, ValueError):
                    ready = []
                with self._lock:
                    if self._closed:
                        return
                    self._service(ready, conns)
            except Exception as exc:  # noqa: BLE001 - the dispatcher never dies while the pool is open
                _log(f"dispatcher error: {type(exc).__name__}: {exc}")
                time.sleep(0.1)
            finally:
                self._resolve()


def _log(message: str) -> None:
    print(f"geometry.executor: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- the default
def executor_from_env(kind: str | None = None):
    """The executor the environment asks for: ``$BOUNDARY_GEOMETRY_EXECUTOR`` = ``pool`` (default)
    or ``inline``; pool sizes and limits from the other ``BOUNDARY_GEOMETRY_*`` variables."""
    kind = (kind or os.environ.get(ENV_EXECUTOR) or "pool").strip().lower()
    from .distributed import ENV_RAY, check_ray_setting

    if os.environ.get(ENV_RAY):
        check_ray_setting(os.environ[ENV_RAY], ENV_RAY)
    if kind == "inline":
        return InlineExecutor()
    if kind != "pool":
        raise GeometryError(f"{ENV_EXECUTOR}={kind!r} is not an executor; use pool or inline")

    def num(env, default, cast=float):
        raw = os.environ.get(env)
        if raw in (None, ""):
            return default
        try:
            value = cast(raw)
        except ValueError:
            raise GeometryError(f"{env}={raw!r} must be a number") from None
        if value < 0:
            raise GeometryError(f"{env}={raw!r} must not be negative")
        return value

    return LocalPool(workers=num(ENV_WORKERS, None, int), memory_gb=num(ENV_MEMORY_GB, DEFAULT_MEMORY_GB),
                     timeout=num(ENV_TIMEOUT, DEFAULT_TIMEOUT_S), max_per_owner=num(ENV_PER_OWNER, DEFAULT_PER_OWNER, int))


def fingerprint(obj) -> str:
    """A stable hash of job arguments (tensors, arrays, dataclasses, containers, scalars) for caches."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()[:32]


def _feed(h, obj) -> None:
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        h.update(repr((type(obj).__name__, obj)).encode() if not isinstance(obj, bytes) else obj)
        return
    mod = type(obj).__module__
    if mod.startswith("torch") and hasattr(obj, "detach"):
        t = obj.detach().cpu().contiguous()
        h.update(repr(("tensor", str(t.dtype), tuple(t.shape))).encode())
        try:
            h.update(t.numpy().tobytes())
        except (TypeError, RuntimeError):  # dtypes NumPy lacks (bfloat16, ...)
            h.update(pickle.dumps(t.tolist()))
        return
    if mod.startswith("numpy") and hasattr(obj, "tobytes"):
        h.update(repr(("ndarray", str(obj.dtype), getattr(obj, "shape", ()))).encode())
        h.update(obj.tobytes())
        return
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(type(obj).__qualname__.encode())
        for f in dataclasses.fields(obj):
            h.update(f.name.encode())
            _feed(h, getattr(obj, f.name))
        return
    if isinstance(obj, dict):
        h.update(f"dict[{len(obj)}".encode())
        for k in sorted(obj, key=repr):
            _feed(h, k)
            _feed(h, obj[k])
        h.update(b"]")
        return
    if isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}[{len(obj)}".encode())
        for x in obj:
            _feed(h, x)
        h.update(b"]")
        return
    if callable(obj) and hasattr(obj, "__qualname__"):
        h.update(f"{getattr(obj, '__module__', '')}:{obj.__qualname__}".encode())
        return
    h.update(repr(obj).encode())
