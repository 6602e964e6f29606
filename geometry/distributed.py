"""Where the loops over images and pairs run: in this process, or on Ray actors (docs/ray.md).

One small seam, *map a function over fixed chunks*:

- :func:`map_chunks` ``(fn, clf, chunks, *args)`` returns ``[fn(clf, chunk, *args) for chunk in chunks]``, in chunk
  order. ``fn`` is a module-level function; ``chunks`` are small descriptions of the work (slices, index ranges,
  configurations); ``args`` are shared by every chunk (sent once).
- :func:`stateful_chunks` ``(init, clf, chunks, *args)`` keeps ``state_i = init(clf, chunk_i, *args)`` where the
  chunk runs, and its ``map(step, *args)`` returns ``[step(clf, state_i, *args) for i]`` in chunk order (the
  Lanczos products of ``geometry.subspace``: each state holds a chunk of boundary points and their graphs).

The active backend comes from a context (a ``contextvars.ContextVar``), so the analyses deep inside need no new
parameter: ``with backend("auto", model=ref): ...`` sends the work to Ray, ``with backend(None)`` (the default)
keeps it in this process. :class:`LocalBackend` runs the chunks in order, in the caller. :class:`RayBackend` runs
them on a pool of Ray actors that live as long as the backend: each loads the model once, from a
:class:`geometry.executor.ModelRef` (a zoo name or a file plus load options, never a pickled model), checks that its
weights match the caller's (``subspace.model_fingerprint``), computes with the caller's number of torch threads and
declares that many CPUs (and, when the model is on CUDA, :data:`GPU_FRACTION` of a GPU). Chunks go to idle actors in
chunk order; an actor whose process dies is restarted by Ray and its call retried (:data:`ACTOR_RESTARTS`; chunk
states are built again from the same data). A loop of one chunk always runs in the caller.

Same results: the chunks are the same whichever backend runs them (they never depend on the backend or the number
of workers), every chunk computes exactly what the local loop computes for it (same code, same thread count), and
every reduction over chunks is done by the caller in chunk order; so a Ray run gives bitwise the numbers of a local
run (tests/test_ray.py checks it with exact equality, also after a worker is killed mid-run).

Ray is an optional extra (requirements-ray.txt), imported only when a Ray backend is used. Imports the standard
library at module level.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import importlib.util
import logging
import math
import os
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

from .errors import GeometryError

ENV_RAY = "BOUNDARY_GEOMETRY_RAY"   # "auto" or a Ray address: the app's jobs run their loops on Ray
ENV_RAY_CPUS = "BOUNDARY_GEOMETRY_RAY_CPUS"  # CPUs of a local cluster this process starts (default: all)
ACTOR_RESTARTS = 3      # an actor whose process dies is restarted, and its pending call retried (that many times)
GPU_FRACTION = 0.25     # GPU share declared per actor when the model runs on CUDA
INSTALL_HINT = "install requirements-ray.txt (pip install -r requirements-ray.txt)"

Progress = Callable[[float, str], None]


# --------------------------------------------------------------------------------------------- local
class LocalBackend:
    """Runs every chunk in this process, in order (the default)."""

    name = "local"

    def map(self, fn, clf, chunks: Sequence, args: tuple, progress: Progress | None, what: str) -> list:
        out = []
        for i, chunk in enumerate(chunks):
            out.append(fn(clf, chunk, *args))
            _report(progress, i + 1, len(chunks), what)
        return out

    def stateful(self, init, clf, chunks: Sequence, args: tuple) -> "_LocalStates":
        return _LocalStates(clf, [init(clf, chunk, *args) for chunk in chunks])

    def close(self) -> None:
        pass


class _LocalStates:
    def __init__(self, clf, states: list):
        self.clf, self.states = clf, states

    def map(self, step, *args) -> list:
        return [step(self.clf, s, *args) for s in self.states]

    def close(self) -> None:
        self.states = []


LOCAL = LocalBackend()
_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("geometry_distributed_backend", default=None)


def _report(progress: Progress | None, done: int, total: int, what: str) -> None:
    """``progress(fraction, "<what> (done/total tasks done)")`` about every tenth of the tasks and at the end."""
    if progress is not None and total and (done == total or done % max(1, total // 10) == 0):
        progress(done / total, f"{what} ({done}/{total} tasks done)")


# ------------------------------------------------------------------------------------------- the seam
def current():
    """The active backend (:data:`LOCAL` outside any :func:`backend` context)."""
    return _ACTIVE.get() or LOCAL


def map_chunks(fn: Callable, clf, chunks: Sequence, *args, progress: Progress | None = None,
               what: str = "chunks") -> list:
    """``[fn(clf, chunk, *args) for chunk in chunks]`` on the active backend, in chunk order. ``progress(fraction,
    message)`` hears "tasks done / total" as chunks finish."""
    chunks = list(chunks)
    if not chunks:
        return []
    # one chunk is the same computation wherever it runs: keep it here (a quick job never waits for workers)
    be = current() if len(chunks) > 1 else LOCAL
    return be.map(fn, clf, chunks, tuple(args), progress, what)


def stateful_chunks(init: Callable, clf, chunks: Sequence, *args):
    """States ``init(clf, chunk, *args)`` kept where their chunk runs; ``.map(step, *args)`` -> ``[step(clf, state,
    *args)]`` in chunk order; ``.close()`` frees them."""
    chunks = list(chunks)
    return (current() if len(chunks) > 1 else LOCAL).stateful(init, clf, chunks, tuple(args))


def even_chunks(n: int, most: int, align: int = 1) -> list[tuple[int, int]]:
    """``[0, n)`` cut into ``ceil(n / most)`` contiguous ranges of nearly equal length whose starts are multiples
    of ``align`` (a function of n, most and align only, never of the backend)."""
    if n <= 0:
        return []
    align = max(1, int(align))
    units = math.ceil(n / align)
    parts = min(units, max(1, math.ceil(n / max(1, int(most)))))
    bounds = [min(n, round(i * units / parts) * align) for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i + 1] > bounds[i]]


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def check_ray_setting(address: str | None, option: str = "--ray") -> str | None:
    """``address`` (``"auto"`` or a Ray address) checked without starting anything; None stays None."""
    if address is None:
        return None
    address = str(address).strip()
    if not address:
        raise GeometryError(f"{option} needs 'auto' or the address of a Ray cluster (host:port or ray://host:port)")
    if not ray_available():
        raise GeometryError(f"{option} needs Ray, which is not installed here; {INSTALL_HINT}")
    return address


PROBE_TIMEOUT_S = 5.0  # seconds to wait for a TCP answer at a cluster's address before giving up


def probe_address(address: str | None, timeout: float = PROBE_TIMEOUT_S, option: str = "--ray") -> None:
    """Refuse, in one line and within ``timeout`` seconds, a cluster address where nothing answers (``ray.init``
    itself retries such an address for minutes, printing its own log lines). ``"auto"``, ``"local"`` and None are
    not probed; ``host:port``, ``ray://host:port`` and ``[v6]:port`` are."""
    import socket

    if address is None:
        return
    address = str(address).strip()
    if address == "auto" and os.environ.get("RAY_ADDRESS", "").strip() not in ("", "auto", "local"):
        # "auto" joins $RAY_ADDRESS when it is set (Ray's rule): probe that address instead
        return probe_address(os.environ["RAY_ADDRESS"].strip(), timeout, f"{option} auto ($RAY_ADDRESS)")
    if address in ("auto", "local"):
        return
    rest = address.split("://", 1)[1] if "://" in address else address
    rest = rest.split("/", 1)[0]
    if address.startswith("ray://") and not rest.rpartition(":")[2].isdigit():
        rest += ":10001"  # the Ray Client's default port
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise GeometryError(f"{option} {address!r} is not 'auto' or a cluster address of the form host:port "
                            "(or ray://host:port)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise GeometryError(f"{option}: nothing answers at {host}:{port} ({reason}); start the cluster there "
                            "(ray start --head) or use --ray auto") from None


@contextlib.contextmanager
def backend(address: str | None, *, model=None):
    """Run the loops inside this block on Ray (``address`` = ``"auto"``: the running cluster, or a local one started
    for the block; or a cluster's address), or locally when ``address`` is None. ``model``: the
    :class:`geometry.executor.ModelRef` of the classifier the analyses receive (Ray workers load it themselves)."""
    address = check_ray_setting(address)
    if address is None:
        token = _ACTIVE.set(LOCAL)
        try:
            yield LOCAL
        finally:
            _ACTIVE.reset(token)
        return
    be = RayBackend(address, model)
    token = _ACTIVE.set(be)
    try:
        yield be
    finally:
        _ACTIVE.reset(token)
        be.close()


@contextlib.contextmanager
def using(be):
    """Make an existing backend (e.g. one :class:`RayBackend` kept for many runs) the active one in this block,
    without closing it afterwards."""
    token = _ACTIVE.set(be)
    try:
        yield be
    finally:
        _ACTIVE.reset(token)


# --------------------------------------------------------------------------------------------- worker
@dataclass(frozen=True)
class WorkerModel:
    """What a worker needs to compute as the caller does: the model's ModelRef, device, dtype, weights fingerprint,
    and the caller's number of intra-op threads (some CPU kernels, e.g. in DeepFool, round differently with another
    thread count, so workers use the caller's)."""

    ref: object
    device: str
    dtype: str
    fingerprint: str
    threads: int = 1


_WORKER_MODELS: dict = {}
_WORKER_LOCK = threading.Lock()


def worker_classifier(spec: WorkerModel):
    """The classifier of ``spec`` in this (worker) process, loaded once and cached; torch set to the caller's
    thread count."""
    import torch

    if torch.get_num_threads() != spec.threads:
        torch.set_num_threads(spec.threads)
    key = (spec.ref.digest, spec.device, spec.dtype)
    with _WORKER_LOCK:
        clf = _WORKER_MODELS.get(key)
        if clf is None:
            from .loading import load_classifier
            from .subspace import model_fingerprint

            options = {k: v for k, v in spec.ref.options}
            options.update(device=spec.device, dtype=getattr(torch, spec.dtype))
            options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()}
            clf = load_classifier(spec.ref.source, **options)
            if model_fingerprint(clf) != spec.fingerprint:
                raise GeometryError(f"the model a Ray worker loaded from {spec.ref.source!r} has other weights than "
                                    "the caller's; give the same file on every machine of the cluster")
            _WORKER_MODELS[key] = clf
        return clf


_MISSING = "geometry.distributed: no such states"  # a restarted actor lost a chunk set: install it again


class _PoolWorker:
    """A Ray actor's body: loads models once (:func:`worker_classifier`), runs chunks, and keeps chunk states."""

    def __init__(self):
        self.sets: dict = {}

    def pid(self) -> int:
        return os.getpid()

    def run(self, spec: WorkerModel, fn, chunk, *args):
        return fn(worker_classifier(spec), chunk, *args)

    def install(self, key: str, spec: WorkerModel, init, chunks: list, *args) -> int:
        clf = worker_classifier(spec)
        self.sets[key] = (spec, [init(clf, c, *args) for c in chunks])
        return len(chunks)

    def map(self, key: str, step, *args):
        if key not in self.sets:
            return _MISSING
        spec, states = self.sets[key]
        clf = worker_classifier(spec)
        return [step(clf, st, *args) for st in states]

    def drop(self, key: str) -> None:
        self.sets.pop(key, None)


# ------------------------------------------------------------------------------------------------ Ray
def _ray():
    try:
        import ray
    except ImportError:
        raise GeometryError(f"Ray is not installed; {INSTALL_HINT}") from None
    return ray


def _package_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


class RayBackend:
    """Chunks and chunk states on a pool of Ray actors (module docstring): as many as the cluster's CPUs divided by
    the caller's torch threads (each declares that many CPUs and, for a model on CUDA, :data:`GPU_FRACTION` of a
    GPU). The actors load the model once each and live as long as the backend, so every loop of a run (S, the
    experiments, the detector) reuses them.

    Connects lazily, at the first chunk: to the cluster already initialised in this process, else to ``address``
    (``"auto"``: a running cluster if there is one, else a local one started here); :meth:`close` stops the actors
    and a cluster started here. ``workers``: actors in the pool (default: the cluster's CPUs)."""

    name = "ray"

    def __init__(self, address: str, model=None, workers: int | None = None):
        self.address = address
        self.model = model
        self.workers = workers
        self._started = False
        self._specs: dict = {}
        self._actor_cls = None
        self._pools: dict = {}
        self._keys = 0
        self._lock = threading.RLock()

    # -------------------------------------------------------------- connection
    def _connect(self):
        """Ray, initialised: a cluster this process started or joined carries the package to its workers
        (``py_modules``); a cluster initialised by the caller gets the package's folder on the workers' path
        (a cluster on other machines then needs the project installed there)."""
        ray = _ray()
        with self._lock:
            task_env = None
            if not ray.is_initialized():
                kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                              runtime_env={"py_modules": [_package_dir()]})
                try:
                    if self.address == "auto":
                        probe_address("auto", option="the Ray address")
                        try:
                            ray.init(address="auto", **kwargs)
                        except ConnectionError:
                            cpus = os.environ.get(ENV_RAY_CPUS)
                            ray.init(num_cpus=int(cpus) if cpus else None, **kwargs)
                    else:
                        probe_address(self.address, option="the Ray address")
                        ray.init(address=self.address, **kwargs)
                    self._started = True
                except GeometryError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one plain line for the user
                    raise GeometryError(f"could not connect to Ray at {self.address!r}: "
                                        f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
            elif self._actor_cls is None:
                task_env = {"env_vars": {"PYTHONPATH": os.path.dirname(_package_dir())}}
            if self._actor_cls is None:
                opts = {"runtime_env": task_env} if task_env else {}
                self._actor_cls = ray.remote(max_restarts=ACTOR_RESTARTS, max_task_retries=ACTOR_RESTARTS,
                                             **opts)(_PoolWorker)
        return ray

    def close(self) -> None:
        with self._lock:
            if self._pools:
                ray = _ray()
                for actors in self._pools.values():
                    for a in actors:
                        try:
                            ray.kill(a, no_restart=True)
                        except Exception:  # noqa: BLE001 - already gone
                            pass
                self._pools = {}
            if self._started:
                ray = _ray()
                if ray.is_initialized():
                    ray.shutdown()
                self._started = False
            self._actor_cls = None

    # -------------------------------------------------------------- the model and the pool
    def _spec(self, clf) -> WorkerModel:
        import torch

        key = id(clf)
        if key not in self._specs:
            from .executor import ModelRef

            if not isinstance(self.model, ModelRef):
                raise GeometryError("work on Ray needs the model as a bundled name or a model file (a ModelRef that "
                                    "workers can load); this model was given another way")
            from .subspace import model_fingerprint

            device = "cpu" if clf.device.type == "cpu" else "cuda"
            self._specs[key] = (clf, WorkerModel(self.model, device, str(clf.dtype).replace("torch.", ""),
                                                 model_fingerprint(clf)))
        return dataclasses.replace(self._specs[key][1], threads=max(1, torch.get_num_threads()))

    def pool(self, spec: WorkerModel) -> list:
        """The actors for ``spec``'s device and thread count (started at the first call): each declares as many CPUs
        as it runs threads (the caller's), so the cluster's CPUs / threads of them run at once."""
        ray = self._connect()
        key = (spec.device, spec.threads)
        with self._lock:
            if key not in self._pools:
                cpus = int(ray.cluster_resources().get("CPU", 1))
                n = max(1, int(self.workers) if self.workers else cpus // spec.threads)
                res = {"num_cpus": spec.threads, "num_gpus": GPU_FRACTION if spec.device == "cuda" else 0}
                self._pools[key] = [self._actor_cls.options(**res).remote() for _ in range(n)]
            return self._pools[key]

    def pids(self, clf) -> list[int]:
        """Process ids of the actors serving ``clf`` (tests kill one to check that the work still finishes)."""
        ray = self._connect()
        return ray.get([a.pid.remote() for a in self.pool(self._spec(clf))])

    # -------------------------------------------------------------- chunks
    def map(self, fn, clf, chunks: Sequence, args: tuple, progress: Progress | None, what: str) -> list:
        spec = self._spec(clf)
        actors = self.pool(spec)
        ray = self._connect()
        arg_refs = [ray.put(a) for a in args]
        out, running, todo, done = [None] * len(chunks), {}, list(range(len(chunks))), 0
        idle = list(actors)
        while todo or running:
            while todo and idle:  # one chunk per idle actor, in chunk order
                a, i = idle.pop(0), todo.pop(0)
                running[a.run.remote(spec, fn, chunks[i], *arg_refs)] = (i, a)
            ready, _ = ray.wait(list(running), num_returns=1)
            for r in ready:
                i, a = running.pop(r)
                out[i] = _get(ray, r, what)
                idle.append(a)
                done += 1
            _report(progress, done, len(chunks), what)
        return out

    def stateful(self, init, clf, chunks: list, args: tuple) -> "_RayStates":
        spec = self._spec(clf)
        actors = self.pool(spec)
        ray = self._connect()
        with self._lock:
            self._keys += 1
            key = f"set{self._keys}"
        assigned = _balance([_size(c) for c in chunks], len(actors))
        actors = actors[:len(assigned)]
        arg_refs = [ray.put(a) for a in args]
        chunk_refs = [ray.put([chunks[i] for i in idx]) for idx in assigned]
        states = _RayStates(ray, key, spec, init, actors, assigned, chunk_refs, arg_refs, len(chunks))
        states.install()
        return states


class _RayStates:
    """Chunk states spread over actors; a restarted actor gets its chunks installed again (same states)."""

    def __init__(self, ray, key, spec, init, actors, assigned, chunk_refs, arg_refs, n):
        self.ray, self.key, self.spec, self.init = ray, key, spec, init
        self.actors, self.assigned, self.chunk_refs, self.arg_refs, self.n = actors, assigned, chunk_refs, arg_refs, n

    def _install(self, a: int):
        return self.actors[a].install.remote(self.key, self.spec, self.init, self.chunk_refs[a], *self.arg_refs)

    def install(self) -> None:
        self._get([self._install(a) for a in range(len(self.actors))])

    def _get(self, refs):
        return _get(self.ray, refs, "the work")

    def map(self, step, *args) -> list:
        refs = [self.ray.put(x) if _large(x) else x for x in args]
        parts = self._get([a.map.remote(self.key, step, *refs) for a in self.actors])
        for a, part in enumerate(parts):
            if isinstance(part, str) and part == _MISSING:  # the actor was restarted: same states, built again
                self._get([self._install(a)])
                parts[a] = self._get([self.actors[a].map.remote(self.key, step, *refs)])[0]
        out = [None] * self.n
        for idx, res in zip(self.assigned, parts):
            for i, r in zip(idx, res):
                out[i] = r
        return out

    def close(self) -> None:
        try:
            self.ray.get([a.drop.remote(self.key) for a in self.actors], timeout=10)
        except Exception:  # noqa: BLE001 - an actor that is gone holds nothing
            pass
        self.actors = []


def _size(chunk) -> int:
    """A chunk's weight for balancing actors: the length of its first element (its points), else 1."""
    try:
        return max(1, len(chunk[0]))
    except (TypeError, IndexError, KeyError):
        return 1


def _balance(sizes: list[int], n: int) -> list[list[int]]:
    """Chunk indices for ``n`` actors: largest chunk first to the least loaded actor (results never depend on it)."""
    load, out = [0] * n, [[] for _ in range(n)]
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        a = min(range(n), key=lambda a: (load[a], a))
        out[a].append(i)
        load[a] += sizes[i]
    return [sorted(idx) for idx in out if idx]


def _large(a) -> bool:
    return hasattr(a, "nbytes") and int(getattr(a, "nbytes", 0)) > 100_000


def _get(ray, refs, what: str):
    """``ray.get(refs)``, with the analysis' own error re-raised from a failed task (a GeometryError keeps its
    one-line message) and any other Ray failure as one GeometryError line naming ``what``."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        raise (cause if cause is not None else
               GeometryError(f"a Ray task failed: {str(exc).splitlines()[0][:200]}")) from None
    except ray.exceptions.RayError as exc:
        raise GeometryError(f"Ray could not finish {what}: {str(exc).splitlines()[0][:200]}") from None
