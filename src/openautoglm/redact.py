"""Mask secrets before anything is printed, logged or stored.

>>> redact({"model": "openai:gpt-4o", "api_key": "sk-abc123456789"})
{'model': 'openai:gpt-4o', 'api_key': '***'}

Values under secret-looking keys (``api_key``, ``authorization``, ``token``,
``password``, ``secret``...) are masked wherever they are nested, and so are strings
that look like credentials on their own (``Bearer ...``, ``sk-...``, URLs with a
password).
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
_SECRET_KEY = re.compile(r"api[_-]?key|authori[sz]ation|secret|passw(or)?d|credential|cookie|"
                         r"^(?!(max|min|num|n)[_-])(\w+[_-])?token$", re.I)
_SECRET_TEXT = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + MASK),
    (re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_-]{8,}"), MASK),
    (re.compile(r"(?i)(://[^:/@\s]+:)[^@/\s]+@"), r"\1" + MASK + "@"),  # scheme://user:password@host
    (re.compile(r"(?i)\b(api[_-]?key|token|secret|password)=([^&\s]+)"), r"\1=" + MASK),
]


def redact_text(text: str) -> str:
    """``text`` with credential-looking substrings masked."""
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any) -> Any:
    """A copy of ``value`` (dicts, lists, strings, nested) with secrets masked."""
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and _SECRET_KEY.search(k) and v not in (None, "") else redact(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value
