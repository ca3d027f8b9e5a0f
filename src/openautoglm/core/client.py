"""The model client: a backend plus response cache and call tracing.

Steps never call a backend directly; they call a :class:`ModelClient`, which

* answers deterministic requests from the cache when it can (``cache=True``),
* records every call (prompt, response, params, tokens, latency, error, step,
  record, attempt) as a :class:`CallRecord` in an in-memory buffer,
* lets one failing request fail alone: the backend answers each request or gives its
  error; if any failed, :class:`CallFailed` is raised and the outcomes are kept, so the
  pipeline can rerun the batch's records one by one without calling the model again.

The buffer is drained by whoever owns the store (the pipeline driver), so a step's
work stays a pure function of (config, record) → (result, call records) and can run
on a worker that has no access to the database.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Sequence

from ..backends.base import Backend, Completion, GenerationRequest, ScoreRequest, ScoreResult, request_key
from ..errors import BackendError
from ..store.calls import CallRecord  # noqa: F401 - re-exported: steps and the server build them here


class CallFailed(BackendError):
    """Some requests of a call failed (``failures``: request index -> error); the rest succeeded."""

    def __init__(self, failures: dict[int, BackendError], total: int) -> None:
        self.failures = failures
        first = failures[min(failures)]
        if total == 1:
            super().__init__(first.message, hint=first.hint)
        else:
            super().__init__(f"{len(failures)} of {total} requests failed; first: {first.message}", hint=first.hint)


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
        #: outcomes of batches in which some request failed, by request key: the pipeline then
        #: retries that batch's records one by one, and their requests are answered from here
        self._memo: dict[str, Any] = {}

    def drain(self) -> tuple[list[CallRecord], dict[str, tuple[str, dict[str, Any]]]]:
        """Hand over (and forget) the buffered call records and new cache entries."""
        calls, cache = self.calls, self.new_cache
        self.calls, self.new_cache = [], {}
        return calls, cache

    # -- the one path every call takes ---------------------------------------------------
    def _call(self, kind: str, requests: Sequence[Any], cacheable: list[bool], run_each: Callable[..., list[Any]],
              from_dict: Callable[[dict[str, Any]], Any], trace: Callable[..., CallRecord], step: str | None,
              record_keys: Sequence[str | None] | None, attempt: int) -> list[Any]:
        """Answer ``requests`` from the cache, from this client's memo of a failed batch, or
        from the backend; trace each; raise :class:`CallFailed` if any request failed."""
        n = len(requests)
        memo = self._memo
        # request keys serve the cache and the memo of a failed batch: not computed when neither asks
        keys = self._keys(kind, requests) if memo or True in cacheable else None
        results: list[Any] = [None] * n
        replayed: set[int] = set()  # answered from the memo: traced when they were answered
        if keys is None:
            todo = list(range(n))
        else:
            todo = []
            new_cache = self.new_cache
            wanted = [k for k, ok in zip(keys, cacheable) if ok and k not in memo]
            found = self.cache_get(wanted) if wanted and self.cache_get is not None else {}
            for i, key in enumerate(keys):
                if key in memo:
                    results[i] = memo[key]
                    replayed.add(i)
                elif cacheable[i] and (key in found or key in new_cache):
                    results[i] = from_dict(found[key] if key in found else new_cache[key][1])
                    results[i].cached = True
                else:
                    todo.append(i)
        if todo:
            answers = run_each(requests if len(todo) == n else [requests[i] for i in todo])
            some_failed = any(isinstance(a, BackendError) for a in answers)
            if keys is None and some_failed:
                keys = self._keys(kind, requests)
            for i, answer in zip(todo, answers):
                results[i] = answer
                if some_failed:  # the records of this batch will be retried one by one: answer them from here
                    assert keys is not None
                    memo[keys[i]] = answer
                if cacheable[i] and not isinstance(answer, BackendError):
                    assert keys is not None
                    self.new_cache[keys[i]] = (kind, answer.to_dict())
        # a failure reaches ``results`` only with the memo: a failed batch fills it, replays come from it
        failures = {i: r for i, r in enumerate(results) if isinstance(r, BackendError)} if memo else None
        if self.trace:
            calls = self.calls
            for i, (req, res) in enumerate(zip(requests, results)):
                if i in replayed:
                    continue
                record_key = record_keys[i] if record_keys is not None else None
                if isinstance(res, BackendError):
                    calls.append(CallRecord(kind=kind, backend=self.backend.name, model=self.backend.model,
                                            params=_params(req.cache_payload()), prompt=req.prompt,
                                            response=None, error=str(res), step=step, record_key=record_key,
                                            attempt=attempt))
                else:
                    calls.append(trace(req, res, step, record_key, attempt))
        if failures:
            raise CallFailed(failures, n)
        return results

    def _keys(self, kind: str, requests: Sequence[Any]) -> list[str]:
        identity = self.backend.identity()
        if self.backend.reads_fields:  # the answer depends on the record's fields, not only the prompt
            return [request_key(identity, kind, {**r.cache_payload(), "fields": r.fields}) for r in requests]
        return [request_key(identity, kind, r.cache_payload()) for r in requests]

    # -- public API --------------------------------------------------------------
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        *,
        step: str | None = None,
        record_keys: Sequence[str | None] | None = None,
        attempt: int = 0,
    ) -> list[Completion]:
        cacheable = [self.cache_get is not None and r.temperature == 0 and self.backend.deterministic
                     for r in requests]
        return self._call("generate", requests, cacheable, self.backend.generate_each, Completion.from_dict,
                          self._trace_generation, step, record_keys, attempt)

    def score(
        self,
        requests: Sequence[ScoreRequest],
        *,
        step: str | None = None,
        record_keys: Sequence[str | None] | None = None,
        attempt: int = 0,
    ) -> list[ScoreResult]:
        cacheable = [self.cache_get is not None and self.backend.deterministic] * len(requests)
        return self._call("score", requests, cacheable, self.backend.score_each, ScoreResult.from_dict,
                          self._trace_score, step, record_keys, attempt)

    def _trace_generation(self, req: GenerationRequest, comp: Completion, step: str | None,
                          record_key: str | None, attempt: int) -> CallRecord:
        return CallRecord(
            kind="generate", backend=self.backend.name, model=self.backend.model,
            params=_params(req.cache_payload()), prompt=req.prompt,
            response=comp.texts if len(comp.texts) > 1 else comp.text,
            prompt_tokens=comp.prompt_tokens, completion_tokens=comp.completion_tokens,
            latency_s=comp.latency_s, cached=comp.cached, step=step, record_key=record_key, attempt=attempt,
        )

    def _trace_score(self, req: ScoreRequest, res: ScoreResult, step: str | None, record_key: str | None,
                     attempt: int) -> CallRecord:
        return CallRecord(
            kind="score", backend=self.backend.name, model=self.backend.model,
            params={"continuations": list(req.continuations)}, prompt=req.prompt,
            response=dict(zip(req.continuations, res.logprobs)),
            prompt_tokens=res.prompt_tokens, completion_tokens=sum(res.lengths),
            latency_s=res.latency_s, cached=res.cached, step=step, record_key=record_key, attempt=attempt,
        )

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


def _params(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != "prompt"}


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
