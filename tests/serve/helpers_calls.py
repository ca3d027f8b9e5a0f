"""Callables a test server allows with ``--allow-call`` (``call:`` steps receive the record)."""

from __future__ import annotations

from typing import Any, Mapping


def shout(record: Mapping[str, Any]) -> dict[str, Any]:
    return {"text": str(record.get("text", "")).upper()}


def as_path(record: Mapping[str, Any]) -> dict[str, Any]:
    """A result that is not JSON (a ``PurePosixPath``)."""
    from pathlib import PurePosixPath

    return {"path": PurePosixPath("/data") / str(record.get("text", ""))}
