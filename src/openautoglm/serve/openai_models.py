"""The OpenAI API's wire format: request bodies (pydantic models), their fields turned into
backend arguments, and the pieces responses are built from (usage, logprobs)."""

from __future__ import annotations

import json
import re
from typing import Any, Literal, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..backends.base import Constraint, TokenLogprob
from ..backends.structured import SchemaProblem, check_json_schema
from .openai_errors import APIError
from .validation import require_valid_unicode

MAX_TOP_LOGPROBS = 20
#: the most options one guided choice may list
MAX_CHOICES = 1000


class _Body(BaseModel):
    """Request bodies accept (and ignore) parameters they do not know, as OpenAI's do; text
    that is not valid Unicode (a lone surrogate) is refused (400)."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, data: Any) -> Any:
        return require_valid_unicode(data)


#: the message roles of OpenAI's chat API
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ChatMessage(_Body):
    role: Role
    content: Union[str, list[dict[str, Any]], None] = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type", "text") == "text")


class _Guided(_Body):
    """The structured-output fields: OpenAI's ``response_format`` and vLLM's guided decoding
    (``guided_*`` before 0.12, ``structured_outputs`` after); at most one per request."""

    response_format: dict[str, Any] | None = None
    guided_json: Union[dict[str, Any], str, None] = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = Field(default=None, min_length=1, max_length=MAX_CHOICES)
    guided_grammar: str | None = None
    structured_outputs: dict[str, Any] | None = None
    #: vLLM's engine choice; accepted for compatibility (this server has one engine)
    guided_decoding_backend: str | None = None


class ChatCompletionRequest(_Guided):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16},
        {"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Hi!"}],
         "max_tokens": 8, "stream": True, "stream_options": {"include_usage": True}},
    ]})

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=0)
    max_completion_tokens: int | None = Field(default=None, ge=0)
    temperature: float = Field(default=1.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=128)
    stop: Union[str, list[str], None] = None
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    stream: bool = False


class CompletionRequest(_Guided):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"prompt": "Once upon a time", "max_tokens": 8},
        {"prompt": "Is it good? Answer: yes", "continuation_offset": 19, "echo": True, "logprobs": 1,
         "max_tokens": 1},
    ]})

    model: str | None = None
    prompt: Union[str, list[str]]
    max_tokens: int = Field(default=16, ge=0)
    temperature: float = Field(default=1.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=128)
    stop: Union[str, list[str], None] = None
    seed: int | None = None
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool = False
    stream: bool = False
    continuation_offset: Union[int, list[int], None] = None


# --------------------------------------------------------------------------- shaping helpers


def _stops(stop: Union[str, list[str], None]) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def enforced_constraint(req: _Guided, enforced: frozenset[str], model_name: str) -> Constraint | None:
    """The request's structured-output constraint, refused (400) when the backend does not
    enforce its kind while decoding (``enforced``): it is never dropped silently."""
    constraint, field = _constraint(req)
    if constraint is None:
        return None
    if constraint.kind not in enforced:
        kinds = ", ".join(sorted(enforced)) or "none"
        raise APIError(
            400,
            f"{field}: the model {model_name!r} cannot enforce {constraint.kind} constraints while decoding "
            f"(it enforces: {kinds}); send the request without {field}, or serve a backend that enforces them",
            param=field, code="unsupported_constraint",
        )
    return constraint


def _offsets(req: CompletionRequest, prompts: list[str]) -> list[int]:
    """Where the scored continuation starts in each prompt (``continuation_offset``), checked."""
    raw = req.continuation_offset
    offsets = [raw] * len(prompts) if isinstance(raw, int) else list(raw or [])
    if len(offsets) != len(prompts):
        raise APIError(400, "continuation_offset needs one offset per prompt", param="continuation_offset")
    for off, prompt in zip(offsets, prompts):
        if not 0 < off <= len(prompt):
            raise APIError(
                400,
                f"continuation_offset {off} is outside 1..{len(prompt)} (the context must not be empty)",
                param="continuation_offset",
            )
    return offsets


def _constraint(req: _Guided) -> tuple[Constraint | None, str | None]:
    """The request's constraint and the field that asked for it; 400 for a malformed one,
    for a JSON schema with the path of its problem."""
    given = [name for name in ("response_format", "guided_json", "guided_regex", "guided_choice", "guided_grammar",
                               "structured_outputs") if getattr(req, name) is not None]
    if req.response_format is not None and req.response_format.get("type", "text") == "text":
        given.remove("response_format")
    if len(given) > 1:
        raise APIError(400, f"give one structured-output field, not {' and '.join(given)}", param=given[1])
    if not given:
        return None, None
    field = given[0]
    if field == "response_format":
        return _response_format(req.response_format or {}), field
    if field == "structured_outputs":
        return _structured_outputs(req.structured_outputs or {}), field
    value = getattr(req, field)
    if field == "guided_json":
        return Constraint.json(_schema(_parsed_json(value, field), field)), field
    if field == "guided_choice":
        return _choice(value, field), field
    if field == "guided_regex":
        return Constraint.regex(_pattern(value, field)), field
    return Constraint.grammar(_grammar(value, field)), field


def _response_format(fmt: dict[str, Any]) -> Constraint:
    kind = fmt.get("type", "text")
    if kind == "json_object":
        return Constraint.json({"type": "object"})
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise APIError(400, "response_format.json_schema.schema must be an object (a JSON schema)",
                           param="response_format")
        return Constraint.json(_schema(schema, "response_format.json_schema.schema"))
    raise APIError(400, f"unsupported response_format type {kind!r}: use text, json_object or json_schema",
                   param="response_format")


def _structured_outputs(spec: dict[str, Any]) -> Constraint:
    known = {"json", "regex", "choice", "grammar", "json_object"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise APIError(400, f"structured_outputs.{unknown[0]} is not supported by this server; use one of "
                       f"{', '.join(sorted(known))}", param="structured_outputs")
    given = [k for k in sorted(known) if spec.get(k) not in (None, False)]
    if len(given) != 1:
        raise APIError(400, "structured_outputs needs exactly one of json, regex, choice, grammar, json_object",
                       param="structured_outputs")
    key, value, where = given[0], spec[given[0]], f"structured_outputs.{given[0]}"
    if key == "json_object":
        return Constraint.json({"type": "object"})
    if key == "json":
        return Constraint.json(_schema(_parsed_json(value, where), where))
    if key == "choice":
        return _choice(value, where)
    if key == "regex":
        return Constraint.regex(_pattern(value, where))
    return Constraint.grammar(_grammar(value, where))


def _parsed_json(value: Any, where: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise APIError(400, f"{where} is not valid JSON: {exc}", param=where.split(".")[0]) from None
    return value


def _schema(schema: Any, where: str) -> dict[str, Any]:
    try:
        check_json_schema(schema, where)
    except SchemaProblem as exc:
        raise APIError(400, f"the JSON schema cannot be used: {exc}", param=where.split(".")[0],
                       code="invalid_schema") from None
    return schema


def _choice(value: Any, where: str) -> Constraint:
    if not isinstance(value, list) or not value or len(value) > MAX_CHOICES or \
            not all(isinstance(v, str) and v for v in value):
        raise APIError(400, f"{where} must be a list of 1 to {MAX_CHOICES} non-empty strings", param=where.split(".")[0])
    return Constraint.choice(value)


def _pattern(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise APIError(400, f"{where} must be a non-empty regular expression", param=where.split(".")[0])
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError) as exc:
        raise APIError(400, f"{where} is not a regular expression: {exc}", param=where.split(".")[0]) from None
    return value


def _grammar(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise APIError(400, f"{where} must be a non-empty grammar (Lark syntax)", param=where.split(".")[0])
    return value


def _top_entries(top: dict[str, float], k: int) -> list[tuple[str, float]]:
    return sorted(top.items(), key=lambda kv: kv[1], reverse=True)[:k]


def _chat_token(token: str, logprob: float, top: list[tuple[str, float]]) -> dict[str, Any]:
    def entry(t: str, lp: float) -> dict[str, Any]:
        return {"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))}

    return {**entry(token, logprob), "top_logprobs": [entry(t, lp) for t, lp in top]}


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _segments(
    texts: list[str], logprobs: list[float | None], offsets: list[int], counts: list[int]
) -> dict[str, Any]:
    """Completions-style logprobs over text segments (see the module docstring)."""
    return {
        "tokens": texts,
        "token_logprobs": logprobs,
        "top_logprobs": [None if lp is None else {t: lp} for t, lp in zip(texts, logprobs)],
        "text_offset": offsets,
        "token_counts": counts,
    }


def _legacy_logprobs(tokens: Sequence[TokenLogprob], k: int, head: str = "") -> dict[str, Any]:
    """Completions-style logprobs; ``head`` (echoed prompt) is one segment with a null logprob."""
    out: dict[str, list[Any]] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    if head:
        out["tokens"].append(head)
        out["token_logprobs"].append(None)
        out["top_logprobs"].append(None)
        out["text_offset"].append(0)
    pos = len(head)
    for t in tokens:
        out["tokens"].append(t.token)
        out["token_logprobs"].append(t.logprob)
        out["top_logprobs"].append(dict(_top_entries(t.top, k)))
        out["text_offset"].append(pos)
        pos += len(t.token)
    return out
