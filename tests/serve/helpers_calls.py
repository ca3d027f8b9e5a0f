"""Callables a test server allows with ``--allow-call`` (``call:`` steps receive the record)."""

from __future__ import annotations

from typing import Any, Mapping


def shout(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"text": str(record.get("text", "")).upper()}
