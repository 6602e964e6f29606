"""The library (so the CLI and the app) sets a passive OpenMP wait policy unless the user chose one."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

CODE = "import geometry, os; print(os.environ['OMP_WAIT_POLICY'])"


def _policy(env: dict) -> str:
    out = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_passive_by_default_and_the_users_choice_wins():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert _policy(env) == "PASSIVE"
    assert _policy({**env, "OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"
