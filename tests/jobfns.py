"""Job functions for the executor tests (importable by worker processes: the tests put this folder
on their PYTHONPATH)."""

import os
import time


def sleep_then(clf, seconds: float, value=None):
    time.sleep(seconds)
    return value


def allocate(clf, gigabytes: float):
    import torch

    return float(torch.ones(int(gigabytes * 2**30 / 8), dtype=torch.float64).sum())


def exit_now(clf):
    os._exit(3)


def raise_value_error(clf):
    raise ValueError("a plain bug")


def count_progress(clf, steps: int, progress=None):
    for i in range(steps):
        progress((i + 1) / steps, f"step {i + 1}")
        time.sleep(0.3)
    return steps


def touch(clf, path: str):
    with open(path, "w") as f:
        f.write("ran")
    return path


class Unreadable:
    """Pickles fine in the worker, fails to unpickle in the server."""

    def __reduce__(self):
        return (_explode, ())


def _explode():
    raise ValueError("cannot rebuild this result")


def unreadable_result(clf):
    return Unreadable()


def add(a, b):
    return a + b
