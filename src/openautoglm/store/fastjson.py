"""JSON for the per-call hot path (request keys, trace rows, cache payloads).

The standard library's encoder cost 3-6 µs per value and every model call encodes five
(its request key, its cache payload, and the trace's params, prompt and response):
that was the largest single item of the framework's per-call overhead.  orjson does the
same in ~0.5 µs.  It is used only where its text means the same as the standard
library's (the same bytes, except that floats may be spelled differently, e.g.
``1e-5`` for ``1e-05``, which parse back to the same number):

* orjson writes NaN and ±Infinity as ``null``; the standard library writes ``NaN`` and
  ``-Infinity``, which :func:`json.loads` reads back.  Any output with a ``null`` that
  the caller cannot account for is redone by the standard library, so a score of
  ``-inf`` is never stored (or hashed) as ``null``.
* Types orjson would spell differently from ``default=str`` (dataclasses, datetimes,
  subclasses of built-in types such as numpy floats and string enums) make it raise,
  and the standard library encodes them as before.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson

    _OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
    _SORTED = _OPTIONS | orjson.OPT_SORT_KEYS
except ImportError:  # pragma: no cover - orjson is a core dependency; the library still works without it
    orjson = None  # type: ignore[assignment]
    _OPTIONS = _SORTED = 0

#: what the store always wrote (``json.dumps(..., ensure_ascii=False, separators=(",", ":"), default=str)``)
_STORE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
#: the canonical form of request keys (sorted keys; no ``default``: an unknown type is an error)
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _by_orjson(value: Any, option: int) -> bytes | None:
    """orjson's text of ``value``, or None where orjson is missing or refuses the value."""
    if orjson is None:
        return None
    try:
        return orjson.dumps(value, option=option)
    except TypeError:
        return None


def dumps(value: Any) -> str:
    """Compact JSON text of ``value`` for storage (unknown types as ``str(value)``)."""
    raw = _by_orjson(value, _OPTIONS)
    if raw is not None and b"null" not in raw:
        return raw.decode("utf-8")
    return _STORE.encode(value)


def canonical_bytes(value: Any, nulls: int = 0) -> bytes:
    """Sorted-key compact JSON of ``value`` as UTF-8, for hashing.

    ``nulls`` is how many ``None`` values the caller knows ``value`` holds: orjson's answer
    is used only when its output has exactly that many ``null`` (so none came from a NaN).
    """
    raw = _by_orjson(value, _SORTED)
    if raw is not None and raw.count(b"null") == nulls:
        return raw
    return _CANONICAL.encode(value).encode("utf-8", "surrogatepass")
