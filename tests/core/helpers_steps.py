"""Python callables used as pipeline steps by the tests (``tests.core.helpers_steps:<name>``)."""

from __future__ import annotations

from typing import Any

SEEN: list[dict[str, Any]] = []


def summarise(ctx: dict[str, Any]) -> dict[str, Any]:
    """Reads the input and an earlier step's output."""
    SEEN.append(dict(ctx))
    return {"words": len(str(ctx["text"]).split()), "verdict": ctx["classify"]["label"].upper()}


def shout(ctx: dict[str, Any]) -> str:
    """Returns a non-dict value (wrapped as ``{"value": ...}``)."""
    return str(ctx["text"]).upper()


def fail_on_bad(ctx: dict[str, Any]) -> dict[str, Any]:
    if ctx["text"] == "bad":
        raise ValueError("cannot handle 'bad'")
    return {"ok": True}


NOT_CALLABLE = 42
