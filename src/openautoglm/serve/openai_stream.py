"""Streaming answers of the OpenAI API as server-sent events: a finished response as
chunks, error events, and a response that always ends with ``data: [DONE]``."""

from __future__ import annotations

import json
import re
from typing import Any, AsyncIterator

from .openai_errors import APIError, _backend_error
from .openai_models import _Body

try:
    from fastapi.responses import StreamingResponse
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("the server needs FastAPI and uvicorn: pip install 'openautoglm[server]'") from exc

_PIECE = re.compile(r"\s*\S+|\s+")


def _pieces(text: str, tokens: list[dict[str, Any]] | None) -> list[tuple[str, dict[str, Any] | None]]:
    """Split a finished text into stream chunks: the model's tokens when known, else words."""
    if tokens and "".join(t["token"] for t in tokens) == text:
        return [(t["token"], t) for t in tokens]
    return [(p, None) for p in _PIECE.findall(text)]


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


async def sse_chat(resp: dict[str, Any], include_usage: bool = False) -> AsyncIterator[str]:
    """A finished chat completion as ``chat.completion.chunk`` server-sent events."""
    head = {"id": resp["id"], "object": "chat.completion.chunk", "created": resp["created"], "model": resp["model"]}
    for choice in resp["choices"]:
        i = choice["index"]
        yield _sse({**head, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                         "logprobs": None, "finish_reason": None}]})
        tokens = (choice.get("logprobs") or {}).get("content")
        for piece, token in _pieces(choice["message"]["content"] or "", tokens):
            yield _sse({**head, "choices": [{"index": i, "delta": {"content": piece},
                                             "logprobs": {"content": [token]} if token else None,
                                             "finish_reason": None}]})
        yield _sse({**head, "choices": [{"index": i, "delta": {}, "logprobs": None,
                                         "finish_reason": choice["finish_reason"]}]})
    if include_usage:
        yield _sse({**head, "choices": [], "usage": resp["usage"]})
    yield "data: [DONE]\n\n"


async def sse_completions(resp: dict[str, Any], include_usage: bool = False) -> AsyncIterator[str]:
    """A finished text completion as streamed ``text_completion`` events."""
    head = {"id": resp["id"], "object": "text_completion", "created": resp["created"], "model": resp["model"]}
    for choice in resp["choices"]:
        for piece, _ in _pieces(choice["text"], None):
            yield _sse({**head, "choices": [{"index": choice["index"], "text": piece, "logprobs": None,
                                             "finish_reason": None}]})
        yield _sse({**head, "choices": [{"index": choice["index"], "text": "", "logprobs": choice["logprobs"],
                                         "finish_reason": choice["finish_reason"]}]})
    if include_usage:
        yield _sse({**head, "choices": [], "usage": resp["usage"]})
    yield "data: [DONE]\n\n"


def _error_event(exc: APIError) -> str:
    """An error after a stream has started: OpenAI's error shape as an event, then the end."""
    body = {"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}}
    return _sse(body) + "data: [DONE]\n\n"


def _include_usage(req: _Body) -> bool:
    options = getattr(req, "stream_options", None)
    return isinstance(options, dict) and bool(options.get("include_usage"))


DONE_EVENT = "data: [DONE]\n\n"


async def _always_ended(events: AsyncIterator[str]) -> AsyncIterator[bytes]:
    """``events`` as UTF-8, ending with ``[DONE]`` whatever happens: an unexpected error becomes
    an error event, and text that cannot be encoded is replaced rather than breaking the stream."""
    done = False
    try:
        async for event in events:
            done = done or event.endswith(DONE_EVENT)
            yield event.encode("utf-8", "replace")
    except Exception as exc:  # noqa: BLE001 - the client must still see the stream end
        if not done:
            error = exc if isinstance(exc, APIError) else _backend_error(exc)
            yield _error_event(error).encode("utf-8", "replace")


def _stream(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(_always_ended(events), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
