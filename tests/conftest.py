"""Shared fixtures: bundled models loaded once per session, on the CPU."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

torch.set_num_threads(2)

# One cache folder for the whole run, set before the app's worker processes start (they inherit the
# environment once): tests never write to the user's ~/.cache, and the app and library share S.
os.environ.setdefault("BOUNDARY_GEOMETRY_CACHE", tempfile.mkdtemp(prefix="boundary-geometry-test-cache-"))

_MODELS: dict = {}


def zoo(name: str, dtype=torch.float32):
    """A bundled model on the CPU, loaded once per test session."""
    from geometry.loading import load_classifier

    key = (name, dtype)
    if key not in _MODELS:
        _MODELS[key] = load_classifier(name, device="cpu", dtype=dtype)
    return _MODELS[key]


@pytest.fixture(scope="session")
def relu_model():
    return zoo("mnist_lenet_relu")


@pytest.fixture(scope="session")
def gelu_model():
    return zoo("mnist_lenet_gelu")


@pytest.fixture(scope="session")
def digits_model():
    return zoo("digits_mlp")


def assert_page_ok(at) -> None:
    """An AppTest run raised nothing and showed no error box."""
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


@pytest.fixture(scope="module")
def server():
    """The app served by `streamlit run` on 127.0.0.1 for one test module (browser tests)."""
    from browser_support import streamlit_server

    with streamlit_server() as url:
        yield url
