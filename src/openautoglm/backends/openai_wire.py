"""The OpenAI wire format: prompts to messages, and reading answers of any shape a server may send.

Every reader here either returns what the OpenAI API documents or raises
:class:`MalformedResponse` (the backend turns it into one request's :class:`BackendError`),
so a server that answers ``"logprobs": "x"`` or ``NaN`` fails one record, not the run.
"""

from __future__ import annotations

import email.utils
import math
import time
from typing import Any, Iterable, Mapping, Sequence

import httpx

from .base import Message, Prompt, TokenLogprob

#: nats below the least likely listed alternative, for a continuation not listed at all
MISSING_TOKEN_PENALTY = 1.0


def to_messages(prompt: Prompt) -> list[Message]:
    """Chat messages for ``prompt`` (a plain string becomes one user message)."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def render_chat_text(messages: Sequence[Message]) -> str:
    """A plain-text rendering of chat messages ending with the assistant's turn."""
    lines = [f"{m.get('role', 'user').capitalize()}: {m.get('content', '')}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


def echo_text(prompt: Prompt, continuation: str) -> tuple[str, int]:
    """``(full_text, continuation_offset)`` for an echo scoring request.

    A string prompt is used as is (the caller controls spacing); a chat prompt is
    rendered with :func:`render_chat_text` and joined to the continuation by a space
    unless the continuation starts with whitespace.
    """
    if isinstance(prompt, str):
        return prompt + continuation, len(prompt)
    text = render_chat_text(prompt)
    joiner = "" if continuation[:1].isspace() else " "
    return text + joiner + continuation, len(text)


def logsumexp(values: Iterable[float]) -> float:
    vals = list(values)
    top = max(vals)
    if math.isinf(top):
        return top
    return top + math.log(sum(math.exp(v - top) for v in vals))


def _token_matches(token: str, target: str) -> bool:
    """Whether ``token`` is how an answer that starts with ``target`` can begin."""
    if not token:
        return False
    if target.startswith(token):
        return True
    # a token longer than the target only counts when it ends the word ("no." for "no")
    return token.startswith(target) and not token[len(target)].isalnum()


def estimate_first_token_logprob(
    top: Mapping[str, float], continuation: str, penalty: float = MISSING_TOKEN_PENALTY
) -> float:
    """Estimate log P(answer starts with ``continuation``) from first-token alternatives.

    ``top`` maps the first generated token's alternatives to their logprobs.  Tokens
    are compared with surrounding whitespace stripped; the logprobs of all matching
    tokens are summed (log-sum-exp), preferring case-sensitive matches and falling
    back to case-insensitive ones.  With no match: the smallest listed logprob minus
    ``penalty`` (an upper bound on what the unlisted token can have).
    """
    target = continuation.strip()
    for fold in (False, True):
        norm = (lambda s: s.lower()) if fold else (lambda s: s)
        hits = [lp for tok, lp in top.items() if _token_matches(norm(tok.strip()), norm(target))]
        if hits:
            return logsumexp(hits)
    floor = min(top.values()) if top else -20.0
    return floor - penalty


def _retry_after_s(headers: httpx.Headers) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _server_message(response: httpx.Response) -> str:
    """The error message in an error response (OpenAI shape, FastAPI shape, or text)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return str(err)[:300]
    return str(body)[:300]


def _message_text(choice: Mapping[str, Any]) -> str:
    """The text of a chat choice (``content`` as a string, or as a list of text parts)."""
    message = _expect(choice.get("message") or {}, Mapping, "choices[].message")
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, list):
        parts = [_expect(p, Mapping, "a content part") for p in content]
        return "".join(str(p.get("text", "")) for p in parts if p.get("type", "text") == "text")
    return str(_expect(content, str, "choices[].message.content"))


class MalformedResponse(ValueError):
    """A response whose JSON does not have the shape the OpenAI API documents."""


def _expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise MalformedResponse(f"{what} is {type(value).__name__} {str(value)[:60]!r}")
    return value


def _logprob(value: Any, what: str) -> float:
    """A log-probability: a finite number <= 0 (a little above 0 is rounding)."""
    number = float(_expect(value, (int, float), what))
    if not math.isfinite(number) or number > 1e-3:
        raise MalformedResponse(f"{what} is {number!r}, not a log-probability")
    return min(number, 0.0)


def _usage(data: Mapping[str, Any]) -> tuple[int, int]:
    usage = data.get("usage") or {}
    if not isinstance(usage, Mapping):
        return 0, 0  # usage is informational: a strange one is ignored, not fatal
    counts = []
    for name in ("prompt_tokens", "completion_tokens"):
        value = usage.get(name)
        counts.append(int(value) if isinstance(value, (int, float)) and math.isfinite(value) and value >= 0 else 0)
    return counts[0], counts[1]


def _chat_logprobs(choice: Mapping[str, Any]) -> list[TokenLogprob]:
    """A chat choice's token logprobs; :class:`MalformedResponse` for any shape the API does not send."""
    logprobs = choice.get("logprobs")
    if logprobs is None:
        return []
    content = _expect(logprobs, Mapping, "choices[].logprobs").get("content")
    tokens = []
    for item in _expect(content or [], list, "choices[].logprobs.content"):
        item = _expect(item, Mapping, "a logprobs.content item")
        top = {}
        for alt in _expect(item.get("top_logprobs") or [], list, "top_logprobs"):
            alt = _expect(alt, Mapping, "a top_logprobs item")
            top[str(_expect(alt.get("token"), str, "top_logprobs[].token"))] = _logprob(alt.get("logprob"),
                                                                                    "top_logprobs[].logprob")
        tokens.append(TokenLogprob(token=str(_expect(item.get("token"), str, "logprobs.content[].token")),
                                   logprob=_logprob(item.get("logprob"), "logprobs.content[].logprob"), top=top))
    return tokens


def _echo_continuation_logprob(logprobs: Mapping[str, Any], start: int, end: int) -> tuple[float, int, int]:
    """Sum the echoed logprobs of tokens overlapping ``[start, end)`` of the echoed text.

    Returns ``(logprob, continuation_tokens, prompt_tokens)``.  A token straddling
    ``start`` belongs to the continuation; tokens at or after ``end`` (generated) are
    ignored.  Offsets come from ``text_offset`` or, if absent, from token lengths.
    When the server sends segments rather than tokens, the extension field
    ``token_counts`` says how many model tokens each segment stands for.
    """
    tokens = [str(t) for t in _expect(logprobs.get("tokens") or [], list, "logprobs.tokens")]
    values = [None if v is None else _logprob(v, "logprobs.token_logprobs[]")
              for v in _expect(logprobs.get("token_logprobs") or [], list, "logprobs.token_logprobs")]
    offsets = [int(_expect(o, int, "logprobs.text_offset[]"))
               for o in _expect(logprobs.get("text_offset") or [], list, "logprobs.text_offset")]
    counts = [int(_expect(c, int, "logprobs.token_counts[]"))
              for c in _expect(logprobs.get("token_counts") or [], list, "logprobs.token_counts")]
    if len(offsets) != len(tokens):
        offsets, pos = [], 0
        for tok in tokens:
            offsets.append(pos)
            pos += len(tok)
    if len(counts) != len(tokens):
        counts = [1] * len(tokens)
    total, n_cont, n_prompt = 0.0, 0, 0
    for tok, lp, off, count in zip(tokens, values, offsets, counts):
        if off >= end:
            break
        if off + max(len(tok), 1) <= start:
            n_prompt += int(count)
            continue
        total += float(lp) if lp is not None else 0.0
        n_cont += int(count)
    return total, n_cont, n_prompt
