"""Streamlit entry point: ``streamlit run dashboard/app.py``.

Renders the shared sidebar (model, device, image), then runs the chosen page.
Pages are small scripts in dashboard/views/; a page appears once its file exists.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Imported once here, before any page: two sessions starting at the same moment must not both be
# the first to import pandas/plotly inside a page (one of them saw a half-initialised module).
import pandas  # noqa: E402, F401
import plotly.graph_objects  # noqa: E402, F401
import streamlit as st  # noqa: E402

from dashboard import links  # noqa: E402
from dashboard.state import render_sidebar  # noqa: E402
from dashboard.ui import guarded  # noqa: E402

DEFAULT_PAGE = "lesson.py"
# less empty space above each page: at 1280x720 the first figure must be on screen without scrolling
COMPACT_CSS = """<style>
[data-testid="stMainBlockContainer"] { padding-top: 2.5rem; padding-bottom: 2rem; }
[data-testid="stMainBlockContainer"] h2 { padding-top: 0.2rem; padding-bottom: 0.4rem; }
[data-testid="stColumn"] h3 { font-size: 1.15rem; padding-top: 0.3rem; padding-bottom: 0.2rem; }
</style>"""
PRESENTATION_CSS = """<style>
html, body, [data-testid="stAppViewContainer"] { font-size: 20px; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { font-size: 1.15rem; }
</style>"""

PAGES = [  # (file in dashboard/views, title, icon)
    ("lesson.py", "Lesson", ":material/school:"),
    ("overview.py", "Overview", ":material/image:"),
    ("curvature.py", "Curvature", ":material/show_chart:"),
    ("sections.py", "Cross-sections", ":material/grid_on:"),
    ("paths.py", "Paths", ":material/timeline:"),
    ("vulnerability.py", "Vulnerability", ":material/shield:"),
    ("compare.py", "Compare models", ":material/compare:"),
]

# a local icon: a Material icon name would make every browser fetch Google's font server
st.set_page_config(page_title="Boundary geometry", page_icon=str(ROOT / "assets" / "icon.png"), layout="wide")

pages = [st.Page(str(ROOT / "dashboard" / "views" / f), title=t, icon=i, default=(f == DEFAULT_PAGE))
         for f, t, i in PAGES if (ROOT / "dashboard" / "views" / f).exists()]
links.begin_run()
links.shared("presentation", False)
st.markdown(COMPACT_CSS, unsafe_allow_html=True)
if st.session_state.presentation:
    st.markdown(PRESENTATION_CSS, unsafe_allow_html=True)
sidebar_ok = False
with guarded("loading the model and image"):
    render_sidebar()
    sidebar_ok = True
st.sidebar.toggle("Presentation mode", key="presentation",
                  help="Bigger fonts, explanations hidden, figures first: for a projector.")
page = st.navigation(pages, position="top")
if sidebar_ok:
    with guarded("this page"):  # last resort: a page never shows a traceback
        page.run()
links.copy_link_control()
links.publish()
