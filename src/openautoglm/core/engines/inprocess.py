"""The in-process engine: each chunk runs through ``Pipeline.process`` here, one at a time."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..pipeline import Pipeline


class InProcessExecutor:
    """Runs a chunk as soon as it is submitted (one chunk in flight)."""

    window = 1

    def __init__(self, pipeline: "Pipeline") -> None:
        self.pipeline = pipeline
        self._done: deque[tuple[int, list[Any], list[Any], dict[str, Any], float]] = deque()

    def submit(self, ticket: int, records: list[dict[str, Any]], keys: list[str]) -> None:
        t0 = time.perf_counter()
        outs, calls, cache = self.pipeline.process(records, keys)
        self._done.append((ticket, outs, calls, cache, time.perf_counter() - t0))

    def pending(self) -> int:
        return len(self._done)

    def next_result(self) -> tuple[int, list[Any], list[Any], dict[str, Any], float]:
        return self._done.popleft()

    def close(self) -> None:
        self._done.clear()
