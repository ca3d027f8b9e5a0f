"""What the store keeps of one model call (or traced event): the :class:`CallRecord`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CallRecord:
    """One model call or traced event, as logged: who answered, what was asked and answered,
    its cost, and where in a run it happened."""

    kind: str  # "generate" | "score" | a traced event such as "verify"
    backend: str
    model: str
    params: dict[str, Any]
    prompt: Any
    response: Any
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    cached: bool = False
    step: str | None = None
    record_key: str | None = None
    attempt: int = 0
    ts: float = field(default_factory=time.time)
