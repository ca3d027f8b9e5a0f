"""Checks of request data shared by the server's request models.

JSON may carry ``"\\ud800"``: a lone UTF-16 surrogate, which Python keeps in a ``str`` but
which no UTF-8 encoder (tokenizers, SQLite, the JSON response) accepts.  Such text is
refused when the request is read, with a 400 naming the field, instead of failing deep
inside a model call or half-way through a streamed answer.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def printable(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udXXX`` escapes (safe to encode as UTF-8)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def scrub(value: Any) -> Any:
    """A copy of JSON-like ``value`` whose strings have lone surrogates replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def lone_surrogate_path(value: Any, path: str = "") -> str | None:
    """Where in ``value`` (JSON-like data) a string holds a lone surrogate, e.g. ``messages.0.content``
    (keys holding one are shown escaped)."""
    if isinstance(value, str):
        return (path or "(text)") if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = printable(key) if isinstance(key, str) else str(key)
            here = f"{path}.{name}" if path else name
            found = lone_surrogate_path(key, here) or lone_surrogate_path(item, here)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = lone_surrogate_path(item, f"{path}.{i}" if path else str(i))
            if found:
                return found
    return None


def require_valid_unicode(data: Any) -> Any:
    """``data`` unchanged, or a ``ValueError`` (a 400 from the request models) naming the bad field."""
    where = lone_surrogate_path(data)
    if where is not None:
        raise ValueError(f"{where} holds a lone UTF-16 surrogate (e.g. \\ud800), which is not valid text; "
                         "send valid Unicode")
    return data
