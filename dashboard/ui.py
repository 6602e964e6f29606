"""Small Streamlit helpers every page shares: error guard, figure display and export buttons."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import streamlit as st

from geometry.errors import GeometryError
from geometry.serialization import jsonable


@contextlib.contextmanager
def guarded(what: str = "this analysis"):
    """Show a GeometryError as a clear message and any other failure as a short error, never a traceback."""
    try:
        yield
    except GeometryError as exc:
        st.error(str(exc))
    except MemoryError:
        st.error(f"{what} ran out of memory; lower the resolution, the number of images or k and try again")
    except Exception as exc:  # noqa: BLE001 - the app must never show a traceback
        st.error(f"{what} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}. "
                 "Try other settings; if it persists, run the same analysis from the CLI to see details.")


def presentation() -> bool:
    """Whether the session is in presentation mode (bigger fonts, explanations hidden, figures first)."""
    return bool(st.session_state.get("presentation", False))


def show(fig, key: str, **kwargs):
    """Draw a Plotly figure with the app's theme (readable fonts, presentation mode); returns the chart's
    event (pass ``on_select=...`` etc. as for ``st.plotly_chart``)."""
    from dashboard.figures.common import apply_theme

    apply_theme(fig, presentation=presentation())
    kwargs.setdefault("width", "stretch")
    return st.plotly_chart(fig, key=key, **kwargs)


def npz_bytes(data: dict) -> bytes:
    buf = io.BytesIO()
    arrays = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in data.items()
              if v is not None}
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def export_buttons(fig=None, data: dict | None = None, params: dict | None = None, name: str = "figure",
                   key: str | None = None) -> None:
    """Download buttons: the figure as standalone HTML, the data as NPZ, the settings (and scalars) as JSON.

    PNG export of any figure is in the figure's own toolbar (camera icon)."""
    key = key or name
    cols = st.columns(3)
    if fig is not None:
        cols[0].download_button("Figure (HTML)", fig.to_html(include_plotlyjs=True, full_html=True),
                                file_name=f"{name}.html", mime="text/html", key=f"{key}_html")
    if data:
        cols[1].download_button("Data (NPZ)", npz_bytes(data), file_name=f"{name}.npz",
                                mime="application/octet-stream", key=f"{key}_npz")
    if params is not None:
        cols[2].download_button("Settings + numbers (JSON)", json.dumps(jsonable(params), indent=2),
                                file_name=f"{name}.json", mime="application/json", key=f"{key}_json")
