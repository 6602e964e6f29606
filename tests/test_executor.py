"""The executor seam: inline and pooled runs agree; the pool stops a job past its time or memory
limit with one plain message and keeps serving; queue positions, per-owner limits, cancellation,
progress; argument fingerprints for the app's result cache."""

from __future__ import annotations

import os
import time

import pytest
import torch
from conftest import TESTS

import jobfns
from geometry.boundary import boundary_point
from geometry.errors import GeometryError
from geometry.executor import InlineExecutor, Job, JobFailed, LocalPool, ModelRef, executor_from_env, fingerprint
from geometry.images import gallery_image
from geometry.tasks import model_facts, probabilities


@pytest.fixture(scope="module")
def pool():
    mp = pytest.MonkeyPatch()
    mp.setenv("PYTHONPATH", str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = LocalPool(workers=1, memory_gb=1.0, timeout=30, max_per_owner=3)
    yield p
    p.shutdown()
    mp.undo()


REF = ModelRef.create("mnist_lenet_gelu", device="cpu")


def test_model_ref_digest_names_weights_and_options():
    assert ModelRef.create("mnist_lenet_gelu", device="cpu").digest == REF.digest
    assert ModelRef.create("mnist_lenet_gelu", device="cpu", dtype=torch.float64).digest != REF.digest
    assert ModelRef.create("mnist_lenet_relu", device="cpu").digest != REF.digest


def test_pool_and_inline_agree(pool):
    facts = pool.submit(Job(model_facts, REF)).result(120)
    assert facts.input_shape == (1, 28, 28) and facts.num_classes == 10 and facts.piecewise_linear is False
    x = gallery_image(facts, 3, 0).tensor  # image conversion needs only the facts, no model
    pooled = pool.submit(Job(boundary_point, REF, (x[None],))).result(120)
    inline = InlineExecutor().submit(Job(boundary_point, REF, (x[None],))).result()
    assert torch.equal(pooled.point, inline.point)
    assert int(pooled.boundary_label[0]) == int(inline.boundary_label[0])
    probs = pool.submit(Job(probabilities, REF, (x,))).result(60)
    assert int(probs.argmax()) == 3


def test_time_limit_stops_the_job_and_the_pool_goes_on(pool):
    t0 = time.monotonic()
    fut = pool.submit(Job(jobfns.sleep_then, REF, (60,), what="the sleepy analysis", timeout=2))
    with pytest.raises(JobFailed) as err:
        fut.result(60)
    assert err.value.kind == "timeout"
    assert str(err.value).startswith("the sleepy analysis was stopped after 2 s")
    assert time.monotonic() - t0 < 30
    assert pool.submit(Job(jobfns.sleep_then, REF, (0, "alive"))).result(120) == "alive"


def test_memory_cap_stops_the_job_and_the_pool_goes_on(pool):
    fut = pool.submit(Job(jobfns.allocate, REF, (3.0,), what="the greedy analysis"))
    with pytest.raises(JobFailed) as err:
        fut.result(120)
    assert err.value.kind == "memory"
    assert "needs more than 1 GB of memory for the greedy analysis" in str(err.value)
    assert pool.submit(Job(jobfns.allocate, REF, (0.01,))).result(120) > 0


def test_a_dying_worker_or_a_bug_is_one_message(pool):
    with pytest.raises(JobFailed) as err:
        pool.submit(Job(jobfns.exit_now, REF, what="the crashing analysis")).result(120)
    assert err.value.kind == "crashed" and "worker process exited" in str(err.value)
    with pytest.raises(JobFailed) as err:
        pool.submit(Job(jobfns.raise_value_error, REF, what="the buggy analysis")).result(120)
    assert str(err.value) == "the buggy analysis failed: ValueError: a plain bug" and err.value.kind == "failed"
    # bad input from the library arrives as the library's own GeometryError message
    with pytest.raises(GeometryError, match="neither a bundled model"):
        pool.submit(Job(model_facts, ModelRef("no_such_model", (), "x"))).result(120)
    assert pool.submit(Job(jobfns.sleep_then, REF, (0, 1))).result(120) == 1


def test_queue_positions_owner_limit_and_cancel(pool, tmp_path):
    pool.submit(Job(jobfns.sleep_then, REF, (0, 0))).result(120)  # worker warm
    first = pool.submit(Job(jobfns.sleep_then, REF, (3,), owner="a"))
    while not first.running():
        time.sleep(0.05)
    second = pool.submit(Job(jobfns.sleep_then, REF, (0,), owner="a"))
    third = pool.submit(Job(jobfns.touch, REF, (str(tmp_path / "ran"),), owner="b"))
    assert (first.position(), second.position(), third.position()) == (0, 0, 1)
    pool.submit(Job(jobfns.sleep_then, REF, (0,), owner="a"))
    with pytest.raises(JobFailed) as err:
        pool.submit(Job(jobfns.sleep_then, REF, (0,), owner="a"))
    assert err.value.kind == "queue" and "limit per session is 3" in str(err.value)
    assert third.cancel()
    first.result(60)
    second.result(60)
    time.sleep(0.5)
    assert not (tmp_path / "ran").exists()  # a cancelled job never runs


def test_progress_reaches_the_future(pool):
    fut = pool.submit(Job(jobfns.count_progress, REF, (4,), progress=True))
    seen = set()
    while not fut.done():
        if fut.progress:
            seen.add(fut.progress[1])
        time.sleep(0.05)
    assert fut.result() == 4
    assert seen and seen <= {f"step {i}" for i in range(1, 5)}


def test_executor_from_env(monkeypatch):
    monkeypatch.setenv("BOUNDARY_GEOMETRY_EXECUTOR", "inline")
    assert isinstance(executor_from_env(), InlineExecutor)
    monkeypatch.setenv("BOUNDARY_GEOMETRY_EXECUTOR", "ray-someday")
    with pytest.raises(GeometryError, match="not an executor"):
        executor_from_env()
    monkeypatch.setenv("BOUNDARY_GEOMETRY_EXECUTOR", "pool")
    monkeypatch.setenv("BOUNDARY_GEOMETRY_JOB_TIMEOUT", "soon")
    with pytest.raises(GeometryError, match="BOUNDARY_GEOMETRY_JOB_TIMEOUT='soon' must be a number"):
        executor_from_env()


def test_fingerprint_follows_values_not_identity():
    a = torch.arange(6.0).reshape(2, 3)
    assert fingerprint((boundary_point, a, {"k": 1})) == fingerprint((boundary_point, a.clone(), {"k": 1}))
    assert fingerprint((boundary_point, a, {"k": 1})) != fingerprint((boundary_point, a + 1e-7, {"k": 1}))
    assert fingerprint((boundary_point, a)) != fingerprint((probabilities, a))
    assert fingerprint(a.double()) != fingerprint(a)


def test_done_callbacks_may_use_the_pool(pool):
    """Futures are resolved outside the pool's lock: a callback that submits or asks positions
    (as the app's result cache does) must not deadlock the dispatcher."""
    seen = []

    def callback(f):
        seen.append(pool.position(f))
        seen.append(pool.submit(Job(jobfns.add, None, (1, 2))))

    fut = pool.submit(Job(jobfns.add, None, (2, 3)))
    fut.add_done_callback(callback)
    assert fut.result(60) == 5
    deadline = time.monotonic() + 60
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen[1].result(60) == 3 and pool.alive()


def test_a_memory_failure_does_not_take_the_next_job_down(pool):
    greedy = pool.submit(Job(jobfns.allocate, REF, (3.0,), what="the greedy analysis"))
    innocent = pool.submit(Job(jobfns.sleep_then, REF, (0, "fine"), what="the innocent analysis"))
    with pytest.raises(JobFailed):
        greedy.result(120)
    assert innocent.result(120) == "fine"


def test_an_unreadable_result_fails_its_job_not_the_pool(pool):
    with pytest.raises(JobFailed) as err:
        pool.submit(Job(jobfns.unreadable_result, REF, what="the odd analysis")).result(120)
    assert err.value.kind == "failed" and "could not be read" in str(err.value)
    assert pool.alive()
    assert pool.submit(Job(jobfns.add, None, (1, 1))).result(120) == 2


def test_cancelled_jobs_neither_count_nor_hold_places(pool):
    pool.submit(Job(jobfns.add, None, (0, 0))).result(120)
    first = pool.submit(Job(jobfns.sleep_then, REF, (2,), owner="a"))
    while not first.running():
        time.sleep(0.05)
    dropped = [pool.submit(Job(jobfns.sleep_then, REF, (0,), owner="a")) for _ in range(2)]
    for f in dropped:
        assert f.cancel()
    other = pool.submit(Job(jobfns.sleep_then, REF, (0, "b"), owner="b"))
    assert other.position() == 0
    again = pool.submit(Job(jobfns.sleep_then, REF, (0, "a"), owner="a"))  # 1 running + 1 queued: under 3
    assert again.result(60) == "a" and other.result(60) == "b"


def test_app_cache_with_an_inline_executor_does_not_deadlock(monkeypatch):
    """The app's result cache (dashboard.jobs) with an executor whose futures are done at once."""
    import dashboard.jobs as jobs

    inline = InlineExecutor()
    monkeypatch.setattr(jobs, "executor", lambda: inline)
    store = jobs._Store()
    fut = jobs._attach(store, "k", lambda: Job(jobfns.add, None, (2, 2)))
    jobs._detach(store, "k", fut)
    assert fut.result(5) == 4 and store.get("k") == (True, 4) and not store.inflight
    # a failure is remembered as a fresh error each time (no growing traceback)
    fut = jobs._attach(store, "bad", lambda: Job(jobfns.raise_value_error, REF))
    jobs._detach(store, "bad", fut)
    errors = []
    for _ in range(2):
        with pytest.raises(GeometryError) as err:
            store.get("bad")
        errors.append(err.value)
    assert errors[0] is not errors[1] and "a plain bug" in str(errors[0])


def test_app_cache_keeps_to_its_byte_budget(monkeypatch):
    import dashboard.jobs as jobs

    monkeypatch.setattr(jobs, "RESULTS_MAX_BYTES", 1000)
    store = jobs._Store()
    for i in range(5):
        store.put(i, i, 300)
    assert list(store.results) == [2, 3, 4] and store.nbytes == 900
    store.put("huge", 0, jobs.RESULT_MAX_BYTES + 1)
    assert "huge" not in store.results


def test_quick_jobs_start_before_queued_long_ones(pool):
    pool.submit(Job(jobfns.add, None, (0, 0))).result(120)
    busy = pool.submit(Job(jobfns.sleep_then, REF, (1.5,)))
    while not busy.running():
        time.sleep(0.05)
    long_job = pool.submit(Job(jobfns.sleep_then, REF, (0.5, "long")))
    quick = pool.submit(Job(jobfns.add, None, (1, 1), quick=True))
    assert (quick.position(), long_job.position()) == (0, 1)
    assert quick.result(60) == 2
    assert not long_job.done()  # the quick job ran first
    assert long_job.result(60) == "long"


def test_workers_exit_when_the_server_dies():
    """A pool made by a short-lived thread keeps its workers while the process lives; when the
    process is killed, its workers exit too (they watch for being re-parented)."""
    import signal
    import subprocess
    import sys

    code = ("import threading, time, sys; from geometry.executor import LocalPool, Job; from operator import add\n"
            "box = {}\n"
            "t = threading.Thread(target=lambda: box.update(p=LocalPool(workers=1))); t.start(); t.join()\n"
            "assert box['p'].submit(Job(add, None, (1, 2))).result(120) == 3\n"
            "print(box['p'].worker_pids()[0], flush=True); time.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(TESTS.parent)))
    try:
        pid = int(proc.stdout.readline())  # the job ran after the creating thread had ended
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.2)
        assert not _running(pid), f"worker {pid} outlived its server"
    finally:
        proc.kill()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "zombie" not in f.read().lower()
    except OSError:
        return False
