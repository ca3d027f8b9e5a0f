"""The model client: a backend plus response cache and call tracing.

Steps never call a backend directly; they call a :class:`ModelClient`, which

* answers deterministic requests from the cache when it can (``cache=True``),
* records every call (prompt, response, params, tokens, latency, error, step,
  record, attempt) as a :class:`CallRecord` in an in-memory buffer.

The buffer is drained by whoever owns the store (the pipeline driver), so a step's
work stays a pure function of (config, record) → (result, call records) and can run
on a worker that has no access to the database.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..backends.base import Backend, Completion, GenerationRequest, ScoreRequest, ScoreResult, request_key
from ..errors import BackendError


@dataclass
class CallRecord:
    kind: str  # "generate" | "score"
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


#: looks up cached responses: list of keys -> {key: json payload}
CacheGet = Callable[[Sequence[str]], dict[str, dict[str, Any]]]


class ModelClient:
    def __init__(
        self,
        backend: Backend,
        *,
        cache_get: CacheGet | None = None,
        trace: bool = True,
    ) -> None:
        self.backend = backend
        self.cache_get = cache_get
        self.trace = trace
        self.calls: list[CallRecord] = []
        self.new_cache: dict[str, tuple[str, dict[str, Any]]] = {}  # key -> (kind, payload)

    def drain(self) -> tuple[list[CallRecord], dict[str, tuple[str, dict[str, Any]]]]:
        """Hand over (and forget) the buffered call records and new cache entries."""
        calls, cache = self.calls, self.new_cache
        self.calls, self.new_cache = [], {}
        return calls, cache

    # -- cache helpers ---------------------------------------------------------
    def _lookup(self, kind: str, payloads: list[dict[str, Any]], cacheable: list[bool]) -> tuple[list[str], dict]:
        if self.cache_get is None:  # caching off: no keys, no lookups, nothing stored
            return [""] * len(payloads), {}
        keys = [request_key(self.backend.identity(), kind, p) for p in payloads]
        wanted = [k for k, ok in zip(keys, cacheable) if ok]
        found = dict(self.cache_get(wanted)) if wanted else {}
        for k, (_, payload) in self.new_cache.items():
            found.setdefault(k, payload)
        return keys, found

    # -- public API --------------------------------------------------------------
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        step: str | None = None,
        record_keys: Sequence[str | None] | None = None,
        attempt: int = 0,
    ) -> list[Completion]:
        record_keys = list(record_keys) if record_keys is not None else [None] * len(requests)
        cacheable = [self.cache_get is not None and r.temperature == 0 and self.backend.deterministic
                     for r in requests]
        keys, found = self._lookup("generate", [r.cache_payload() for r in requests], cacheable)
        results: list[Completion | None] = [None] * len(requests)
        todo = []
        for i, (k, ok) in enumerate(zip(keys, cacheable)):
            if ok and k in found:
                results[i] = Completion.from_dict(found[k])
                results[i].cached = True  # type: ignore[union-attr]
            else:
                todo.append(i)
        if todo:
            try:
                fresh = self.backend.generate([requests[i] for i in todo])
            except Exception as exc:
                self._record_failure("generate", [requests[i] for i in todo], exc, step,
                                     [record_keys[i] for i in todo], attempt)
                raise
            for i, comp in zip(todo, fresh):
                results[i] = comp
                if cacheable[i]:
                    self.new_cache[keys[i]] = ("generate", comp.to_dict())
        out = [r for r in results if r is not None]
        if self.trace:
            for req, comp, rk in zip(requests, out, record_keys):
                self.calls.append(
                    CallRecord(
                        kind="generate",
                        backend=self.backend.name,
                        model=self.backend.model,
                        params=_params(req.cache_payload()),
                        prompt=req.prompt,
                        response=comp.texts if len(comp.texts) > 1 else comp.text,
                        prompt_tokens=comp.prompt_tokens,
                        completion_tokens=comp.completion_tokens,
                        latency_s=comp.latency_s,
                        cached=comp.cached,
                        step=step,
                        record_key=rk,
                        attempt=attempt,
                    )
                )
        return out

    def score(
        self,
        requests: Sequence[ScoreRequest],
        *,
        step: str | None = None,
        record_keys: Sequence[str | None] | None = None,
        attempt: int = 0,
    ) -> list[ScoreResult]:
        record_keys = list(record_keys) if record_keys is not None else [None] * len(requests)
        cacheable = [self.cache_get is not None and self.backend.deterministic] * len(requests)
        keys, found = self._lookup("score", [r.cache_payload() for r in requests], cacheable)
        results: list[ScoreResult | None] = [None] * len(requests)
        todo = []
        for i, k in enumerate(keys):
            if cacheable[i] and k in found:
                results[i] = ScoreResult.from_dict(found[k])
                results[i].cached = True  # type: ignore[union-attr]
            else:
                todo.append(i)
        if todo:
            try:
                fresh = self.backend.score_batch([requests[i] for i in todo])
            except Exception as exc:
                self._record_failure("score", [requests[i] for i in todo], exc, step,
                                     [record_keys[i] for i in todo], attempt)
                raise
            for i, res in zip(todo, fresh):
                results[i] = res
                if cacheable[i]:
                    self.new_cache[keys[i]] = ("score", res.to_dict())
        out = [r for r in results if r is not None]
        if self.trace:
            for req, res, rk in zip(requests, out, record_keys):
                self.calls.append(
                    CallRecord(
                        kind="score",
                        backend=self.backend.name,
                        model=self.backend.model,
                        params={"continuations": list(req.continuations)},
                        prompt=req.prompt,
                        response=dict(zip(req.continuations, res.logprobs)),
                        prompt_tokens=res.prompt_tokens,
                        completion_tokens=sum(res.lengths),
                        latency_s=res.latency_s,
                        cached=res.cached,
                        step=step,
                        record_key=rk,
                        attempt=attempt,
                    )
                )
        return out

    def note(self, kind: str, *, source: str, prompt: Any, response: Any, step: str | None,
             record_key: str | None, attempt: int, error: str | None = None) -> None:
        """Trace an event that is not a model call (e.g. a verifier's verdict)."""
        if self.trace:
            self.calls.append(CallRecord(kind=kind, backend=source, model=source, params={}, prompt=prompt,
                                         response=response, error=error, step=step, record_key=record_key,
                                         attempt=attempt))

    def tokens_by_record(self, since: int = 0) -> dict[str | None, int]:
        """Prompt + completion tokens of the traced calls from index ``since`` on, per record."""
        totals: dict[str | None, int] = {}
        for call in self.calls[since:]:
            totals[call.record_key] = totals.get(call.record_key, 0) + call.prompt_tokens + call.completion_tokens
        return totals

    def _record_failure(self, kind: str, requests: Sequence[Any], exc: Exception, step: str | None,
                        record_keys: Sequence[str | None], attempt: int) -> None:
        if not self.trace:
            return
        message = str(exc) if isinstance(exc, BackendError) else f"{type(exc).__name__}: {exc}"
        for req, rk in zip(requests, record_keys):
            self.calls.append(
                CallRecord(kind=kind, backend=self.backend.name, model=self.backend.model,
                           params=_params(req.cache_payload()), prompt=req.prompt, response=None,
                           error=message, step=step, record_key=rk, attempt=attempt)
            )


def _params(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != "prompt"}


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
