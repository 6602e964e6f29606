"""The library stays pure: geometry never imports Streamlit or Plotly (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

CODE = """
import importlib, pkgutil, sys
import geometry, geometry.commands
for pkg in (geometry, geometry.commands):
    for m in pkgutil.iter_modules(pkg.__path__):
        if m.name == '__main__':
            continue
        importlib.import_module(f"{pkg.__name__}.{m.name}")
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('streamlit', 'plotly'))
print(','.join(bad))
"""


def test_geometry_never_imports_streamlit_or_plotly():
    out = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"geometry imported {out.stdout.strip()}"


def test_app_listens_on_loopback_by_default():
    cfg = (ROOT / ".streamlit" / "config.toml").read_text()
    assert 'address = "127.0.0.1"' in cfg and "maxUploadSize" in cfg
