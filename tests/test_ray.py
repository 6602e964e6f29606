"""Ray as the engine of the loops (geometry.distributed, docs/ray.md): on a local two-CPU cluster, S, the
vulnerability experiments, the detector's calibration and evaluation and ``path --pairs`` give *exactly* the numbers
of a local run (same chunks, reductions here in chunk order), also when a worker is killed mid-run (Ray restarts it
and retries its call); ``--ray`` on the command line; ``$BOUNDARY_GEOMETRY_RAY`` for the app's jobs; clear errors.

Runs when Ray is installed (requirements-ray.txt, ``make ray-test``); skipped otherwise, except the checks of the
error a user without Ray gets."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch
from conftest import zoo

from geometry import cli, distributed
from geometry.detection import calibrate_detector, evaluate_detector
from geometry.errors import GeometryError
from geometry.executor import InlineExecutor, Job, ModelRef
from geometry.paths import gallery_pairs, path_statistics
from geometry.subspace import curved_subspace, dataset_images
from geometry.vulnerability import vulnerability

MODEL = "mnist_lenet_gelu"


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of two CPUs, and one backend shared by the tests of this module. The tests compute with
    one torch thread, so the workers (which use the caller's thread count and declare as many CPUs) are two actors."""
    ray = pytest.importorskip("ray")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    be = distributed.RayBackend("auto", model=ModelRef.create(MODEL, device="cpu"))
    try:
        yield be
    finally:
        be.close()
        ray.shutdown()
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clf():
    return zoo(MODEL)


@pytest.fixture(scope="module")
def small_S(clf):
    x, _ = dataset_images(clf, 24, split="train", seed=0)
    return curved_subspace(clf, x, m=4, max_iter=16)


def _same_subspace(a, b):
    assert torch.equal(a.basis, b.basis)
    assert np.array_equal(a.eigenvalues, b.eigenvalues) and np.array_equal(a.ritz_values, b.ritz_values)
    assert a.hvp_count == b.hvp_count and a.settings == b.settings


def _table(stats) -> str:
    t = stats.table()
    return json.dumps({k: v for k, v in t.items() if "second" not in k}, default=str)


def _killer(be, clf, when):
    """A progress callback that SIGKILLs one actor's process the first time ``when(fraction, message)`` holds."""
    state = {"killed": None}

    def progress(frac, msg):
        if state["killed"] is None and when(frac, msg):
            pid = be.pids(clf)[0]
            os.kill(pid, signal.SIGKILL)
            state["killed"] = pid

    return progress, state


# ------------------------------------------------------------------------------ identical results
def test_subspace_on_ray_is_bitwise_the_local_one(cluster, clf):
    assert len(cluster.pids(clf)) == 2
    x, _ = dataset_images(clf, 40, split="train", seed=0)  # 40 boundary points: two chunks, one per actor
    for est in ("exact", "fd"):
        local = curved_subspace(clf, x, m=4, estimator=est, max_iter=20)
        with distributed.using(cluster):
            remote = curved_subspace(clf, x, m=4, estimator=est, max_iter=20)
        _same_subspace(local, remote)


def test_vulnerability_on_ray_is_bitwise_the_local_one(cluster, clf, small_S):
    x, _ = dataset_images(clf, 30, split="held_out", seed=0)
    local = vulnerability(clf, small_S, x, draws=20).to_dict()  # 600 noisy images per eps: two chunks
    seen = []
    with distributed.using(cluster):
        remote = vulnerability(clf, small_S, x, draws=20, progress=lambda f, m: seen.append(m)).to_dict()
    for r in (local, remote):
        r.pop("seconds")
        r["subspace"].pop("seconds")
    assert remote == local
    assert any("2/2 tasks done" in m for m in seen), seen  # progress counts tasks


def test_detector_calibration_and_evaluation_on_ray_are_the_local_ones(cluster, clf, small_S):
    xc, _ = dataset_images(clf, 40, split="held_out", seed=0)   # 40 images, 28 per chunk: two chunks
    xe, ye = dataset_images(clf, 20, split="held_out", seed=1)
    local = calibrate_detector(clf, small_S, xc)
    ev_local = evaluate_detector(clf, local, xe, ye, sizes=(1.0,)).to_dict(curves=True)
    with distributed.using(cluster):
        remote = calibrate_detector(clf, small_S, xc)
        ev_remote = evaluate_detector(clf, remote, xe, ye, sizes=(1.0,)).to_dict(curves=True)  # 3 attacks: 3 tasks
    assert np.array_equal(local.calibration_scores, remote.calibration_scores)
    assert (local.sign, local.threshold) == (remote.sign, remote.threshold)
    ev_local.pop("seconds"), ev_remote.pop("seconds")
    assert json.dumps(ev_local, default=str) == json.dumps(ev_remote, default=str)


def test_path_pairs_on_ray_are_the_local_ones(cluster, clf):
    ps = gallery_pairs(clf, 6, seed=0)
    kw = dict(label=ps.labels, group=2, verification="local", max_anchors=6)
    local = path_statistics(clf, ps.x1, ps.x2, **kw)
    with distributed.using(cluster):
        remote = path_statistics(clf, ps.x1, ps.x2, **kw)
    assert _table(remote) == _table(local)
    for a, b in zip(local.paths, remote.paths):
        assert torch.equal(a.anchors, b.anchors)


# ---------------------------------------------------------------------------------- a worker dies
def test_killing_a_worker_mid_subspace_still_gives_the_same_numbers(cluster, clf):
    x, _ = dataset_images(clf, 40, split="train", seed=0)
    local = curved_subspace(clf, x, m=4, max_iter=24)
    before = set(cluster.pids(clf))
    progress, state = _killer(cluster, clf, lambda f, m: "Lanczos" in m and ": 6 products" in m)
    with distributed.using(cluster):
        remote = curved_subspace(clf, x, m=4, max_iter=24, progress=progress)
    assert state["killed"] in before
    after = set(cluster.pids(clf))
    assert state["killed"] not in after and len(after) == len(before)  # Ray restarted the actor
    _same_subspace(local, remote)


def test_killing_a_worker_mid_path_pairs_still_gives_the_same_numbers(cluster, clf):
    ps = gallery_pairs(clf, 8, seed=1)
    kw = dict(label=ps.labels, group=2, verification="local", max_anchors=6)
    local = path_statistics(clf, ps.x1, ps.x2, **kw)
    progress, state = _killer(cluster, clf, lambda f, m: "1/4 tasks done" in m)  # three chunks still to come
    with distributed.using(cluster):
        remote = path_statistics(clf, ps.x1, ps.x2, progress=progress, **kw)
    assert state["killed"] is not None and state["killed"] not in cluster.pids(clf)
    assert _table(remote) == _table(local)


# ------------------------------------------------------------------------------- CLI, app, errors
def test_cli_ray_auto_gives_the_local_numbers(cluster, capsys, monkeypatch):
    cluster.close()  # its actors hold both CPUs; the command starts its own (and stops them at its end)
    used = []
    real = distributed.RayBackend.map
    monkeypatch.setattr(distributed.RayBackend, "map", lambda self, *a, **k: used.append(a[0].__name__) or real(self, *a, **k))
    args = ["path", "--model", MODEL, "--pairs", "10", "--max-anchors", "6", "--verification", "local", "--json"]
    assert cli.main(args) == 0
    local = json.loads(capsys.readouterr().out)
    assert used == []
    assert cli.main(args + ["--ray", "auto"]) == 0  # joins the cluster this process already runs
    remote = json.loads(capsys.readouterr().out)
    assert used == ["_path_group"]  # 10 pairs, 8 per task: two tasks on Ray
    for r in (local, remote):
        r.pop("seconds", None)
        r["table"].pop("seconds", None)
    assert remote["table"] == local["table"] and remote["connected"] == local["connected"]


def test_app_jobs_run_their_loops_on_ray_when_the_environment_says_so(cluster, clf, monkeypatch):
    cluster.close()  # the job's backend starts its own actors
    calls = []
    real = distributed.RayBackend.map

    def spy(self, *a, **k):
        calls.append(self.address)
        return real(self, *a, **k)

    monkeypatch.setattr(distributed.RayBackend, "map", spy)
    ps = gallery_pairs(clf, 4, seed=2)
    job = Job(path_statistics, ModelRef.create(MODEL, device="cpu"), (ps.x1, ps.x2),
              dict(label=ps.labels, group=2, verification="local", max_anchors=6))
    local = InlineExecutor().submit(job).result()
    assert calls == []
    monkeypatch.setenv(distributed.ENV_RAY, "auto")
    remote = InlineExecutor().submit(job).result()
    assert calls == ["auto"]
    assert _table(remote) == _table(local)


def test_app_pool_workers_join_the_cluster_by_its_address(cluster, clf, monkeypatch):
    """The app's worker processes (memory-capped, one thread) connect to the running cluster as Ray clients."""
    import ray

    from geometry.executor import LocalPool

    cluster.close()
    monkeypatch.setenv(distributed.ENV_RAY, ray.get_runtime_context().gcs_address)
    ps = gallery_pairs(clf, 10, seed=3)
    kw = dict(label=ps.labels, group=4, verification="local", max_anchors=6)
    pool = LocalPool(workers=1, memory_gb=4, timeout=300)
    try:
        remote = pool.submit(Job(path_statistics, ModelRef.create(MODEL, device="cpu"), (ps.x1, ps.x2), kw)).result()
    finally:
        pool.shutdown()
    assert _table(remote) == _table(path_statistics(clf, ps.x1, ps.x2, **kw))


def test_a_model_ray_workers_cannot_load_is_refused(cluster, clf):
    be = distributed.RayBackend("auto", model=None)
    ps = gallery_pairs(clf, 4, seed=0)
    with distributed.using(be), pytest.raises(GeometryError, match="bundled name or a model file"):
        path_statistics(clf, ps.x1, ps.x2, group=2, verification="local")


def test_without_ray_the_option_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setattr(distributed, "ray_available", lambda: False)
    assert cli.main(["subspace", "--model", "digits_mlp", "--ray", "auto"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --ray needs Ray") and "requirements-ray.txt" in err and "\n" not in err
    with pytest.raises(GeometryError, match="requirements-ray.txt"):
        with distributed.backend("auto"):
            pass
    monkeypatch.setenv(distributed.ENV_RAY, "auto")
    from geometry.executor import executor_from_env

    with pytest.raises(GeometryError, match="BOUNDARY_GEOMETRY_RAY.*requirements-ray.txt"):
        executor_from_env("inline")


def test_chunks_never_depend_on_the_backend():
    assert distributed.even_chunks(100, 32, 8) == [(0, 24), (24, 48), (48, 80), (80, 100)]
    assert distributed.even_chunks(30, 32, 8) == [(0, 30)]
    for n in range(1, 300, 7):
        ch = distributed.even_chunks(n, 32, 8)
        assert ch[0][0] == 0 and ch[-1][1] == n and all(a % 8 == 0 for a, _ in ch)
        assert all(b == c for (_, b), (c, _) in zip(ch, ch[1:])) and all(b - a <= 32 for a, b in ch)
