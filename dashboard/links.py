"""Shareable state: a page's settings live in the URL, so a link opens the same view.

A page calls ``shared(key, default, options=..., cast=...)`` for each setting worth sharing (instead of
seeding ``st.session_state[key]``). On the session's first sight of a key its value comes from the
URL's query parameter of the same name when that is valid (castable, among ``options``), else from
``default``. After the page has run, ``publish()`` (called by the app) writes the current value of every
key the page registered into the URL and drops parameters that belong to other pages, so the address
bar always describes what is on screen. ``model`` and ``image`` (the sidebar's choices) are written by
dashboard/state.py and always kept. Drawn and uploaded images and uploaded models are never in links.
"""

from __future__ import annotations

import math
from typing import Any, Callable
from urllib.parse import urlencode

import streamlit as st

ALWAYS_KEPT = ("model", "image")
_REGISTERED = "_links_registered"     # keys the current run's page registered (a dict: insertion order = URL order)
_SEEN = "_links_seen"                 # keys whose URL value this session has already considered
LIST_SEP = "~"


def _encode(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return LIST_SEP.join(_encode(v) for v in value)
    return str(value)


def _caster(default: Any) -> Callable[[str], Any]:
    if isinstance(default, bool):
        def to_bool(s: str) -> bool:
            if s.lower() in ("1", "true", "yes", "on"):
                return True
            if s.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(s)
        return to_bool
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    if isinstance(default, (list, tuple)):
        inner = _caster(default[0]) if default else str
        return lambda s: [inner(v) for v in s.split(LIST_SEP)] if s else []
    return str


def begin_run() -> None:
    """Forget the previous run's registrations (the app calls this before running a page)."""
    st.session_state[_REGISTERED] = {}


def parse(raw: str, default: Any, options=None, cast: Callable[[str], Any] | None = None,
          check: Callable[[Any], bool] | None = None):
    """The value a URL parameter stands for, or None when it is not a valid value of this setting."""
    if not isinstance(raw, str) or len(raw) > 2000:
        return None
    try:
        value = (cast or _caster(default))(raw)
    except (ValueError, TypeError, OverflowError):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if check is not None:
        try:
            if not check(value):
                return None
        except (ValueError, TypeError):
            return None
    if options is not None:
        allowed = list(options)
        if isinstance(value, list):
            return value if all(v in allowed for v in value) else None
        if value not in allowed:
            return None
    return value


def shared(key: str, default: Any, options=None, cast: Callable[[str], Any] | None = None,
           check: Callable[[Any], bool] | None = None) -> Any:
    """Seed ``st.session_state[key]`` (URL value on first sight, else ``default``) and share it in the URL.

    A URL value is used only when it casts (``cast``, default: the type of ``default``), is finite, is
    among ``options`` (when given) and passes ``check`` (when given, e.g. a widget's min/max); anything
    else in a link is ignored, never an error."""
    seen = st.session_state.setdefault(_SEEN, set())
    if key not in seen:
        seen.add(key)
        raw = st.query_params.get(key)
        if raw is not None:
            value = parse(raw, default, options, cast, check)
            if value is not None:
                st.session_state[key] = value
    if key not in st.session_state:
        st.session_state[key] = default
    elif options is not None and not isinstance(st.session_state[key], list) and \
            st.session_state[key] not in list(options):
        st.session_state[key] = default
    st.session_state.setdefault(_REGISTERED, {})[key] = True
    return st.session_state[key]


def current_params() -> dict[str, str]:
    """The query parameters that describe the current view (model, image and the page's shared keys)."""
    params = {k: st.query_params[k] for k in ALWAYS_KEPT if k in st.query_params}
    for key in st.session_state.get(_REGISTERED, {}):
        if key in st.session_state:
            params[key] = _encode(st.session_state[key])
    return params


def publish() -> None:
    """Write the registered settings into the URL; drop other pages' parameters."""
    params = current_params()
    for k in list(st.query_params.keys()):
        if k not in params:
            del st.query_params[k]
    for k, v in params.items():
        if st.query_params.get(k) != v:
            st.query_params[k] = v


def link() -> str:
    """The full link to the current view (as far as it can be shared)."""
    base = ""
    try:
        base = st.context.url or ""
    except Exception:  # noqa: BLE001 - outside a browser session (tests) there is no URL
        base = ""
    query = urlencode(current_params())
    return f"{base}?{query}" if query else base


def copy_link_control() -> None:
    """A "Copy link" popover: the link in a code box (its copy icon puts it on the clipboard)."""
    with st.sidebar.popover("Copy link", icon=":material/link:", use_container_width=True):
        st.code(link(), language=None, wrap_lines=True)
        st.caption("Opens this page with the same model, gallery image and settings. Drawn or uploaded images "
                   "and uploaded models are not part of links.")
