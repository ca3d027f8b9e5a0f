"""The OpenAI API's wire format: request bodies (pydantic models), their fields turned into
backend arguments, and the pieces responses are built from (usage, logprobs)."""

from __future__ import annotations

from typing import Any, Literal, Sequence, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..backends.base import TokenLogprob
from .openai_errors import APIError
from .validation import require_valid_unicode

MAX_TOP_LOGPROBS = 20


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


class ChatCompletionRequest(_Body):
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
    response_format: dict[str, Any] | None = None
    stream: bool = False


class CompletionRequest(_Body):
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


def _json_schema(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    if not response_format:
        return None
    kind = response_format.get("type", "text")
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise APIError(400, "response_format.json_schema.schema must be an object", param="response_format")
        return schema
    if kind == "json_object":
        return {"type": "object"}
    if kind == "text":
        return None
    raise APIError(400, f"unsupported response_format type {kind!r}", param="response_format")


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
