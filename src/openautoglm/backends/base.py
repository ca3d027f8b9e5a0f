"""The backend contract: every model provider implements :class:`Backend`.

A backend does two things, both batched:

* ``generate(requests)`` – sample text for chat or plain-text prompts;
* ``score_batch(requests)`` – total log-probability of each continuation given a prompt.

Backends that cannot score (most HTTP endpoints without ``logprobs``) set
``can_score = False``; tasks then fall back to vote share over samples.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, TypeVar, Union

from ..errors import BackendError, StopRun
from ..store.fastjson import canonical_bytes

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": "..."}
Prompt = Union[str, list[Message]]
R = TypeVar("R")

#: a prompt with more characters than this many per context token cannot fit: it is
#: refused before tokenising (a 50 MB record once exhausted the tokenizer's memory)
MAX_PROMPT_CHARS_PER_TOKEN = 32


def prompt_chars(prompt: Prompt) -> int:
    """Characters in a prompt (all messages' contents for a chat prompt)."""
    if isinstance(prompt, str):
        return len(prompt)
    return sum(len(str(m.get("content", ""))) for m in prompt)


#: the kinds of constraint a backend may enforce while decoding
CONSTRAINT_KINDS = ("json_schema", "regex", "choice", "grammar")


@dataclass(frozen=True)
class Constraint:
    """What the generated text must match, enforced token by token by backends that can
    (``Backend.constraints`` lists the kinds), so even a small model cannot leave it.

    ``kind``: ``"json_schema"`` (``value``: a JSON Schema dict), ``"regex"`` (a pattern the
    whole answer matches), ``"choice"`` (a tuple of allowed answers) or ``"grammar"`` (a
    context-free grammar in Lark syntax, as llguidance reads it; ``start`` is the rule).
    """

    kind: str
    value: Any

    def __post_init__(self) -> None:
        if self.kind not in CONSTRAINT_KINDS:
            raise ValueError(f"unknown constraint kind {self.kind!r}; use one of {', '.join(CONSTRAINT_KINDS)}")
        if self.kind == "choice":
            object.__setattr__(self, "value", tuple(str(v) for v in self.value))

    @classmethod
    def json(cls, schema: dict[str, Any]) -> "Constraint":
        return cls("json_schema", schema)

    @classmethod
    def regex(cls, pattern: str) -> "Constraint":
        return cls("regex", pattern)

    @classmethod
    def choice(cls, options: Sequence[str]) -> "Constraint":
        return cls("choice", tuple(options))

    @classmethod
    def grammar(cls, lark: str) -> "Constraint":
        return cls("grammar", lark)

    def cache_payload(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": list(self.value) if self.kind == "choice" else self.value}

    def __hash__(self) -> int:
        return hash((self.kind, json.dumps(self.cache_payload()["value"], sort_keys=True, default=str)))


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to complete.  ``prompt`` is plain text or a list of chat messages.

    ``constraint`` restricts what may be generated (backends without that capability ignore
    it; callers validate the answer either way).  ``json_schema`` is the older spelling of
    ``constraint=Constraint.json(schema)`` and is kept for callers that use it.
    """

    prompt: Prompt
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    json_schema: dict[str, Any] | None = None
    logprobs: bool = False
    seed: int | None = None
    #: called with (choice index, new text) as tokens arrive; backends that cannot stream
    #: ignore it, so callers send what the finished completion adds beyond what arrived
    on_text: Callable[[int, str], None] | None = field(default=None, compare=False, repr=False)
    #: the record's fields the prompt was built from, for backends that read them instead of
    #: the prompt (``reads_fields``: a distilled student); others ignore them
    fields: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    constraint: Constraint | None = None

    def __post_init__(self) -> None:
        if self.constraint is None and self.json_schema is not None:
            object.__setattr__(self, "constraint", Constraint.json(self.json_schema))
        elif self.json_schema is None and self.constraint is not None and self.constraint.kind == "json_schema":
            object.__setattr__(self, "json_schema", self.constraint.value)

    def cache_payload(self) -> dict[str, Any]:
        """The fields that determine the response (used for the cache key)."""
        payload = {
            "prompt": self.prompt,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "n": self.n,
            "stop": list(self.stop),
            "json_schema": self.json_schema,
            "logprobs": self.logprobs,
            "seed": self.seed,
        }
        if self.constraint is not None and self.constraint.kind != "json_schema":
            payload["constraint"] = self.constraint.cache_payload()
        return payload


@dataclass
class TokenLogprob:
    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)


@dataclass
class Completion:
    """The answer to one :class:`GenerationRequest` (``n`` choices)."""

    texts: list[str]
    finish_reasons: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    logprobs: list[list[TokenLogprob]] | None = None
    cached: bool = False
    #: how a request's constraint was applied (e.g. ``llguidance``; ``none: ...`` when it was not)
    constraint_method: str | None = None
    #: output tokens a constraint forced (counted in ``completion_tokens`` too, but not sampled)
    forced_tokens: int = 0
    #: why a constrained answer stopped (a dead end); then its finish reason is ``error``
    error: str | None = None

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "texts": self.texts,
            "finish_reasons": self.finish_reasons,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_s": self.latency_s,
            "logprobs": (
                [[lp.__dict__ for lp in choice] for choice in self.logprobs]
                if self.logprobs is not None
                else None
            ),
            # kept so that a cached answer reports what the fresh one did (method, forced tokens)
            **({"constraint_method": self.constraint_method} if self.constraint_method else {}),
            **({"forced_tokens": self.forced_tokens} if self.forced_tokens else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Completion":
        lps = data.get("logprobs")
        return cls(
            texts=list(data["texts"]),
            finish_reasons=list(data["finish_reasons"]),
            prompt_tokens=int(data.get("prompt_tokens", 0)),
            completion_tokens=int(data.get("completion_tokens", 0)),
            latency_s=float(data.get("latency_s", 0.0)),
            logprobs=[[TokenLogprob(**t) for t in c] for c in lps] if lps is not None else None,
            constraint_method=data.get("constraint_method"),
            forced_tokens=int(data.get("forced_tokens", 0)),
        )


@dataclass(frozen=True)
class ScoreRequest:
    """Score each continuation as the start of the assistant's answer to ``prompt``."""

    prompt: Prompt
    continuations: tuple[str, ...]
    #: the record's fields (see :attr:`GenerationRequest.fields`)
    fields: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def cache_payload(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "continuations": list(self.continuations)}


@dataclass
class ScoreResult:
    """Log-probabilities (natural log) of each continuation, and their token lengths."""

    logprobs: list[float]
    lengths: list[int]
    prompt_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    exact: bool = True  # False when estimated from the top-k logprobs of one token

    def to_dict(self) -> dict[str, Any]:
        return {
            "logprobs": self.logprobs,
            "lengths": self.lengths,
            "prompt_tokens": self.prompt_tokens,
            "latency_s": self.latency_s,
            "exact": self.exact,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ScoreResult":
        return cls(
            logprobs=[float(x) for x in data["logprobs"]],
            lengths=[int(x) for x in data["lengths"]],
            prompt_tokens=int(data.get("prompt_tokens", 0)),
            latency_s=float(data.get("latency_s", 0.0)),
            exact=bool(data.get("exact", True)),
        )


class Backend:
    """Base class of all backends.  Subclasses implement :meth:`generate`
    and (when ``can_score``) :meth:`score_batch`."""

    name: str = "backend"
    model: str = ""
    can_score: bool = False
    score_method: str = "logprob"  # how scores arise; a Task reports it as the confidence method
    supports_json_schema: bool = False
    #: constraint kinds enforced while decoding (see :class:`Constraint`); empty: none
    constraints: frozenset[str] = frozenset()
    max_context: int = 2048
    #: the prompt format (``"chat"`` or ``"text"``) its model answers label tasks best in; a
    #: direct label task that does not set ``format`` uses it (``None``: the task's default)
    label_format: str | None = None
    #: whether identical temperature-0 requests give identical answers (cacheable)
    deterministic: bool = True
    #: whether :meth:`features` returns hidden-state features (a task's label ``head`` needs them)
    can_featurize: bool = False
    #: what :meth:`features` can pool (the local backend: also ``last``, and several comma-joined in one pass)
    feature_poolings: tuple[str, ...] = ("mean",)
    #: transformer blocks, for :meth:`features` layer indices (0 when unknown)
    num_layers: int = 0
    #: whether answers depend on a request's ``fields`` (then they are part of its cache key)
    reads_fields: bool = False

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        raise NotImplementedError

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        raise NotImplementedError(f"backend {self.name!r} cannot score continuations")

    # -- per-request outcomes ----------------------------------------------------------
    def check_request(self, request: GenerationRequest | ScoreRequest) -> None:
        """Refuse, before any work, a request that cannot succeed (raise :class:`BackendError`)."""
        chars, limit = prompt_chars(request.prompt), self.max_context * MAX_PROMPT_CHARS_PER_TOKEN
        if chars > limit:
            raise BackendError(
                f"prompt of {chars:,} characters cannot fit {self.name}'s context of {self.max_context:,} tokens",
                hint="shorten the input (or split it) before running",
            )

    def generate_each(self, requests: Sequence[GenerationRequest]) -> list[Completion | BackendError]:
        """:meth:`generate`, with each request's failure returned in its place instead of
        failing the batch.  :class:`~openautoglm.errors.StopRun` still raises: nothing can succeed."""
        return run_each(self.generate, self.check_request, requests)

    def score_each(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult | BackendError]:
        """:meth:`score_batch` with per-request failures (see :meth:`generate_each`)."""
        return run_each(self.score_batch, self.check_request, requests)

    def score(self, prompt: Prompt, continuations: Sequence[str]) -> list[float]:
        """Total log-probability of each continuation given ``prompt``."""
        return self.score_batch([ScoreRequest(prompt, tuple(continuations))])[0].logprobs

    def features(self, texts: Sequence[str], layers: Sequence[int], pooling: str = "mean") -> Any:
        """Hidden states of ``layers`` averaged over each text's tokens (``pooling="last"``: at its
        last token), ``[N, len(layers), H]``."""
        from ..errors import BackendError

        raise BackendError(f"backend {self.name!r} does not expose hidden states",
                           hint="label heads need the local backend (model: local or a local model path)")

    def count_tokens(self, text: str) -> int:
        """Rough token count; backends with a tokenizer override this."""
        return max(1, len(text) // 4)

    def identity(self) -> str:
        """A string that changes whenever the backend would answer differently."""
        return f"{self.name}:{self.model}"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "can_score": self.can_score,
            "supports_json_schema": self.supports_json_schema,
            "max_context": self.max_context,
        }

    def close(self) -> None:
        """Release resources (HTTP clients, model memory)."""

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def as_backend_error(exc: Exception) -> BackendError:
    """``exc`` as a :class:`BackendError` (a record's stored failure reason)."""
    if isinstance(exc, BackendError):
        return exc
    return BackendError(f"{type(exc).__name__}: {exc}")


def run_each(run: Callable[[list[Any]], list[R]], check: Callable[[Any], None],
             requests: Sequence[Any]) -> list[R | BackendError]:
    """Run ``requests`` as one batch; if the batch fails, split it in halves until each failing
    request is alone, so that one bad request fails alone and the others still run batched.
    Requests ``check`` refuses never reach ``run``."""
    if len(requests) == 1:  # a single record's call (the per-call hot path): no splitting to plan
        return [_run_one(run, check, requests[0])]
    out: list[R | BackendError | None] = [None] * len(requests)
    ok: list[int] = []
    for i, req in enumerate(requests):
        try:
            check(req)
            ok.append(i)
        except BackendError as exc:
            out[i] = exc

    def attempt(indices: list[int]) -> None:
        try:
            for i, res in zip(indices, run([requests[i] for i in indices]), strict=True):
                out[i] = res
        except StopRun:
            raise
        except Exception as exc:  # noqa: BLE001 - narrowed down below
            if len(indices) == 1:
                out[indices[0]] = as_backend_error(exc)
            else:
                half = len(indices) // 2
                attempt(indices[:half])
                attempt(indices[half:])

    if ok:
        attempt(ok)
    return out  # type: ignore[return-value]


def _run_one(run: Callable[[list[Any]], list[R]], check: Callable[[Any], None], request: Any) -> R | BackendError:
    """:func:`run_each` of one request: its answer or its failure."""
    try:
        check(request)
        (answer,) = run([request])
        return answer
    except StopRun:
        raise
    except Exception as exc:  # noqa: BLE001 - this request's own failure (a wrong answer count too)
        return as_backend_error(exc)


def request_key(backend_identity: str, kind: str, payload: dict[str, Any]) -> str:
    """Stable hash of a request, used as the response-cache key.

    A request with a plain-text prompt is keyed by the ``repr`` of its fields (deterministic
    for strings, numbers and lists, and ~2x cheaper than JSON, which every uncached call
    pays); other payloads (chat messages, schemas) by canonical JSON.
    """
    if isinstance(payload.get("prompt"), str):
        blob = repr(("k2", backend_identity, kind, sorted(payload.items(), key=_first)))
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()
    # canonical JSON (the bytes of json.dumps(sort_keys=True, ensure_ascii=False, compact)), by orjson
    # when it can vouch that no NaN hides behind a null: the payload's own None fields are counted
    nulls = sum(v is None for v in payload.values())
    blob = canonical_bytes({"backend": backend_identity, "kind": kind, "payload": payload}, nulls)
    return hashlib.sha256(blob).hexdigest()


def _first(item: tuple[str, Any]) -> str:
    return item[0]
