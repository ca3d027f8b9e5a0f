"""Dynamic micro-batching: concurrent callers share one backend call.

:class:`BatchingBackend` wraps any :class:`~openautoglm.backends.base.Backend`.  Callers
(server request threads, background runs) call ``generate`` / ``score_batch`` as usual;
their requests wait in a queue for at most ``window_ms`` (or until ``max_batch`` requests
are pending), then they all go to the wrapped backend in a single call - for the local backend that is one padded forward pass
instead of one per request.  While that call runs new requests queue up, so under load
the next batch is ready the moment the model is free.

A batch that fails is retried request by request, so one bad request (say, a prompt
longer than the context) fails alone.  ``enabled=False`` passes calls straight through
(they then queue on the backend's own lock): the benchmark's "off" setting.

There is no dispatcher thread: the caller that finds the model free runs the batch itself
(leader/follower), so a lone request pays no thread hand-off and, after a quiet spell, no
window either; under load the batch forms while the previous one runs.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..backends.base import Backend, Completion, GenerationRequest, ScoreRequest, ScoreResult
from ..backends.delegate import DelegatingBackend
from ..errors import BackendError

#: called after each backend call: (kind, number of requests, seconds)
BatchHook = Callable[[str, int, float], None]
#: the batching window applies when the model finished a batch this recently (traffic is flowing)
RECENT_S = 0.25
#: while waiting for the callers of the last batch to come back, wait at most this share of its duration
WAIT_SHARE = 0.1


@dataclass
class _Item:
    kind: str  # "generate" | "score"
    requests: list[Any]
    arrived: float
    future: Future = field(default_factory=Future)


class BatchingBackend(DelegatingBackend):
    """A backend whose concurrent calls are merged into batched calls of ``inner``."""

    def __init__(
        self,
        inner: Backend,
        *,
        window_ms: float = 8.0,
        max_batch: int = 32,
        enabled: bool = True,
        on_batch: BatchHook | None = None,
        max_tokens: int | None = None,
    ) -> None:
        super().__init__(inner)
        self.max_tokens = max_tokens
        self.window_s = max(0.0, window_ms) / 1000.0
        self.max_batch = max(1, max_batch)
        self.enabled = enabled
        self.on_batch = on_batch
        self._pending: list[_Item] = []
        self._cond = threading.Condition()
        self._busy = False  # a caller is running a batch on the model
        self._last_end = float("-inf")  # when the last batch finished (monotonic)
        self._last_seconds = 0.0  # how long it ran
        self._expect = 1  # requests expected in the next batch: the last one's plus those then waiting
        self._closed = False
        self._inflight = 0
        self.batches = 0  # backend calls made (for tests and metrics)

    # -- Backend protocol ----------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return self._submit("generate", list(requests))

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        if not self.inner.can_score:
            return self.inner.score_batch(requests)  # raises the backend's own "cannot score"
        return self._submit("score", list(requests))

    def check_request(self, request: GenerationRequest | ScoreRequest) -> None:
        """The wrapped backend's checks, and the server's answer-length limit (a pipeline record
        asking for more fails alone with the reason)."""
        super().check_request(request)
        if self.max_tokens is not None and isinstance(request, GenerationRequest) and request.max_tokens > self.max_tokens:
            raise BackendError(f"max_tokens = {request.max_tokens} is more than this server allows ({self.max_tokens})",
                               hint="lower the task's max_tokens")

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "micro_batching": self.enabled, "window_ms": self.window_s * 1000,
                "max_batch": self.max_batch}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.inner.close()

    # -- introspection -----------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model plus those in the batch being computed."""
        with self._cond:
            return sum(len(i.requests) for i in self._pending) + self._inflight

    # -- machinery ---------------------------------------------------------------------
    def _submit(self, kind: str, requests: list[Any]) -> list[Any]:
        """Queue the requests; whichever caller finds the model free runs the next batch.

        No dispatcher thread: the caller that takes the model (the leader) runs the backend
        call in its own thread, so an idle server adds no thread hand-off to a request.
        The leader waits ``window`` for company only while traffic is flowing (the model
        finished a batch less than ``RECENT_S`` ago); after a quiet spell it goes at once.
        """
        if not requests:
            return []
        if not self.enabled:
            with self._cond:
                self._inflight += len(requests)
            try:
                return self._call(kind, requests)
            finally:
                with self._cond:
                    self._inflight -= len(requests)
        item = _Item(kind, requests, time.monotonic())
        with self._cond:
            if self._closed:
                raise RuntimeError("the batching backend is closed")
            self._pending.append(item)
            self._cond.notify_all()
        while True:
            with self._cond:
                while self._busy and not item.future.done():
                    self._cond.wait()
                if item.future.done():
                    break
                self._busy = True
                batch = self._take()
            t0 = time.monotonic()
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._expect = self._inflight + sum(len(i.requests) for i in self._pending)
                    self._inflight = 0
                    self._last_end = time.monotonic()
                    self._last_seconds = self._last_end - t0
                    self._cond.notify_all()
        return item.future.result()

    def _call(self, kind: str, requests: list[Any]) -> list[Any]:
        t0 = time.perf_counter()
        try:
            if kind == "generate":
                return self.inner.generate(requests)
            return self.inner.score_batch(requests)
        finally:
            if self.on_batch is not None:
                self.on_batch(kind, len(requests), time.perf_counter() - t0)

    def _take(self) -> list[_Item]:
        """(Leader, lock held) the next batch: the oldest item's kind, up to ``max_batch`` requests.

        While traffic flows, the leader waits until as many requests are pending as the
        last batch had plus those that were waiting when it ended (its callers usually send
        their next request at once), for at most ``window`` or ``WAIT_SHARE`` of the last
        batch's duration, whichever is longer.  So clients that arrived in two waves are
        merged into one batch instead of alternating between two half batches.
        """
        now = time.monotonic()
        if self.window_s and now - self._last_end < RECENT_S:
            deadline = now + max(self.window_s, WAIT_SHARE * self._last_seconds)
            want = min(self.max_batch, max(1, self._expect))
            while True:
                size = sum(len(i.requests) for i in self._pending if i.kind == self._pending[0].kind)
                left = deadline - time.monotonic()
                if size >= want or left <= 0:
                    break
                self._cond.wait(timeout=left)
        kind = self._pending[0].kind
        batch, rest, size = [], [], 0
        for item in self._pending:
            if item.kind == kind and (not batch or size + len(item.requests) <= self.max_batch):
                batch.append(item)
                size += len(item.requests)
            else:
                rest.append(item)
        self._pending = rest
        self._inflight = size
        return batch

    def _run(self, batch: list[_Item]) -> None:
        kind = batch[0].kind
        merged = [r for item in batch for r in item.requests]
        self.batches += 1
        try:
            results = self._call(kind, merged)
        except BaseException as exc:  # noqa: BLE001 - isolate the failing request(s)
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            for item in batch:
                try:
                    item.future.set_result(self._call(kind, item.requests))
                except BaseException as one:  # noqa: BLE001
                    item.future.set_exception(one)
            return
        pos = 0
        for item in batch:
            item.future.set_result(results[pos : pos + len(item.requests)])
            pos += len(item.requests)
