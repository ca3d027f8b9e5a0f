"""An OpenAI-compatible HTTP API over any :class:`~openautoglm.backends.base.Backend`.

``create_openai_app(backend, model_name)`` returns a FastAPI app with

* ``GET /v1/models`` (and ``/v1/models/{id}``), ``GET /health``;
* ``POST /v1/chat/completions``;
* ``POST /v1/completions``;
* ``POST /v1/embeddings`` (the sentence-embedding model, :mod:`.openai_embeddings`).

Streaming (``stream: true``) is off by default (answers 400) and on with
``create_openai_app(..., streaming=True)``, as in ``openautoglm serve``.  Chat answers are
sent as the backend produces them (the local backend reports text token by token, still
inside one micro-batched call); what a backend does not report live (other backends, a
cached answer, chat with ``logprobs``) is sent when the answer is complete, one chunk per
token or word piece.  Completions are sent when complete.  Streams end with
``data: [DONE]``; ``stream_options: {"include_usage": true}`` adds a final usage chunk; an
error after the stream has started arrives as a ``data: {"error": ...}`` event.

Requests naming another model than ``model_name`` (or the backend's own model name)
answer 404.  Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.

Structured output
    ``response_format`` (``json_object``, ``json_schema``) and vLLM's ``guided_json`` /
    ``guided_regex`` / ``guided_choice`` / ``guided_grammar`` or ``structured_outputs``
    reach the backend as a :class:`~openautoglm.backends.base.Constraint`, streamed or not.
    A kind the backend does not enforce while decoding (``Backend.constraints``) answers 400
    ``unsupported_constraint``; a malformed schema answers 400 naming its path.

Logprobs
    ``logprobs`` (chat) / ``logprobs: k`` (completions) return the backend's token
    logprobs when its ``generate`` provides them (at most ``max_top_logprobs``
    alternatives each, when set).  Otherwise, if the backend can score, each choice gets a
    single entry: its whole text and the backend's log-probability of it.  Otherwise
    ``logprobs`` is ``null``.

Scoring through ``/v1/completions`` (the ``echo`` protocol)
    A backend scores a continuation given a prompt; it has no per-token logprobs of an
    arbitrary text.  So a scoring request names where the continuation starts, with the
    extension field ``continuation_offset`` (a character index into ``prompt``, or one
    per prompt when ``prompt`` is a list)::

        {"prompt": "Is it good? Answer: yes", "continuation_offset": 19,
         "echo": true, "logprobs": 1, "max_tokens": 1}

    The answer echoes the prompt as two segments, ``tokens: [context, continuation]``
    with ``token_logprobs: [null, logP(continuation | context)]``, ``text_offset:
    [0, offset]`` and the extension ``token_counts: [context tokens, continuation
    tokens]`` (the model's token counts, for length normalisation); nothing is
    generated (a scoring request ignores ``max_tokens``).
    A client summing the logprobs of the tokens at or after the offset - which is what
    it does with a per-token server such as vLLM - gets the exact score either way.
    This is what :class:`~openautoglm.backends.openai_compat.OpenAICompatBackend` sends
    with ``score_mode="echo"``.  ``echo`` + ``logprobs`` with ``max_tokens: 0`` and no
    offset answers 400 (this server cannot split an arbitrary text into scored tokens).

This module holds the service and the routes; the request bodies and response pieces are
in :mod:`.openai_models`, the errors in :mod:`.openai_errors`, the server-sent events in
:mod:`.openai_stream` (their public names are importable from here too).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, AsyncIterator, Callable, TypeVar

from ..backends.base import (Backend, Completion, Constraint, GenerationRequest, Message, Prompt, ScoreRequest,
                             ScoreResult, TokenLogprob)
from .openai_errors import APIError, _backend_error, install_error_handlers
from .openai_models import (MAX_TOP_LOGPROBS, ChatCompletionRequest, ChatMessage, CompletionRequest, Role, _chat_token,
                            _Guided, _legacy_logprobs, _offsets, _segments, _stops, _top_entries, _usage,
                            enforced_constraint)
from .openai_stream import DONE_EVENT, _error_event, _include_usage, _pieces, _sse, _stream, sse_chat, sse_completions

try:
    import anyio.to_thread
    from fastapi import FastAPI
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("the server needs FastAPI and uvicorn: pip install 'openautoglm[server]'") from exc

__all__ = ["DEFAULT_CHAT_MAX_TOKENS", "DONE_EVENT", "MAX_TOP_LOGPROBS", "APIError", "ChatCompletionRequest",
           "ChatMessage", "CompletionRequest", "OpenAIService", "Role", "Tracer", "UsageHook", "add_openai_routes",
           "create_openai_app", "install_error_handlers", "sse_chat", "sse_completions"]

T = TypeVar("T")
#: receives the call records (core.client.CallRecord) of each backend call, for tracing
Tracer = Callable[[list[Any]], None]

DEFAULT_CHAT_MAX_TOKENS = 512


class OpenAIService:
    """Turns OpenAI request bodies into backend calls and backend results into responses.

    Backend calls run in worker threads, at most ``max_concurrency`` at a time.
    """

    def __init__(self, backend: Backend, model_name: str, max_concurrency: int = 1, *,
                 streaming: bool = False, tracer: Tracer | None = None, max_tokens: int | None = None,
                 max_top_logprobs: int | None = None) -> None:
        self.backend = backend
        self.max_tokens = max_tokens
        #: the most alternatives per token this server returns, whatever a request asks for
        self.max_top_logprobs = max_top_logprobs
        self.model_name = model_name
        self.max_concurrency = max(1, max_concurrency)
        self.streaming = streaming
        self.tracer = tracer
        self._limiter: anyio.CapacityLimiter | None = None

    def _traced(self, kind: str, requests: list[Any], endpoint: str) -> list[Any]:
        if self.tracer is None:
            return self.backend.generate(requests) if kind == "generate" else self.backend.score_batch(requests)
        from ..core.client import ModelClient

        client = ModelClient(self.backend, trace=True)
        try:
            return (client.generate if kind == "generate" else client.score)(requests, step=endpoint)
        finally:
            self.tracer(client.drain()[0])

    def _generate(self, requests: list[GenerationRequest], endpoint: str) -> list[Completion]:
        return self._traced("generate", requests, endpoint)

    def _score(self, requests: list[ScoreRequest], endpoint: str) -> list[ScoreResult]:
        return self._traced("score", requests, endpoint)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._limiter is None:  # created on the server's event loop, on first use
            self._limiter = anyio.CapacityLimiter(self.max_concurrency)
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        except APIError:
            raise
        except Exception as exc:  # noqa: BLE001 - every backend failure becomes an API error
            raise _backend_error(exc) from exc

    def check_model(self, model: str | None) -> None:
        if model is not None and model not in (self.model_name, self.backend.model):
            raise APIError(404, f"The model {model!r} does not exist; this server serves {self.model_name!r}",
                           code="model_not_found", param="model")

    def check_max_tokens(self, max_tokens: int, param: str = "max_tokens") -> None:
        """Refuse an answer length the model's context cannot hold, whatever the prompt, or
        longer than the operator's ``--max-tokens``."""
        if self.max_tokens is not None and max_tokens > self.max_tokens:
            raise APIError(
                400, f"{param} = {max_tokens} is more than this server allows ({self.max_tokens}); ask for fewer tokens",
                param=param, code="max_tokens_too_large",
            )
        context = self.backend.max_context
        if max_tokens > context:
            raise APIError(
                400,
                f"{param} = {max_tokens} is more than the model's context of {context} tokens "
                f"(the prompt and the answer must fit in it together); ask for fewer tokens",
                param=param, code="max_tokens_too_large",
            )

    def constraint(self, req: _Guided) -> Constraint | None:
        """The request's constraint; 400 when malformed or when the backend cannot enforce it."""
        return enforced_constraint(req, self.backend.constraints, self.model_name)

    def top_k(self, asked: int | None) -> int:
        """Alternatives per token to return: what was asked, capped by ``max_top_logprobs``."""
        k = asked or 0
        return k if self.max_top_logprobs is None else min(k, self.max_top_logprobs)

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [self.model_card()]}

    def model_card(self) -> dict[str, Any]:
        return {"id": self.model_name, "object": "model", "created": 0, "owned_by": "openautoglm"}

    # -- chat ------------------------------------------------------------------------
    def _chat_request(self, req: ChatCompletionRequest,
                      on_text: Callable[[int, str], None] | None = None) -> GenerationRequest:
        self.check_model(req.model)
        if req.stream and not self.streaming:
            raise APIError(400, "stream=true is not supported yet; send stream=false", code="unsupported", param="stream")
        messages: list[Message] = [{"role": m.role, "content": m.text()} for m in req.messages]
        if not any(m["content"] for m in messages):
            raise APIError(400, "the messages hold no text: give at least one message some content",
                           param="messages", code="empty_prompt")
        max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        if max_tokens is not None:
            self.check_max_tokens(max_tokens, "max_completion_tokens" if req.max_completion_tokens is not None
                                  else "max_tokens")
        return GenerationRequest(
            prompt=messages,
            max_tokens=DEFAULT_CHAT_MAX_TOKENS if max_tokens is None else max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            n=req.n,
            stop=_stops(req.stop),
            constraint=self.constraint(req),
            logprobs=req.logprobs,
            seed=req.seed,
            on_text=on_text,
        )

    async def chat(self, req: ChatCompletionRequest) -> dict[str, Any]:
        gen = self._chat_request(req)
        (completion,) = await self._call(self._generate, [gen], "/v1/chat/completions")
        return await self._chat_response(req, gen, completion)

    def chat_events(self, req: ChatCompletionRequest, include_usage: bool = False,
                    on_done: Callable[[dict[str, Any]], None] | None = None) -> AsyncIterator[str]:
        """Server-sent events of a chat answer, sent as the backend produces its text.

        The request is checked before the first event, so a bad request still gets its
        HTTP error; ``on_done`` receives the finished response (for usage accounting).
        """
        if req.logprobs:  # token logprobs come with the finished answer
            async def finished() -> AsyncIterator[str]:
                try:
                    resp = await self.chat(req)
                except APIError as exc:
                    yield _error_event(exc)
                    return
                if on_done is not None:
                    on_done(resp)
                async for event in sse_chat(resp, include_usage):
                    yield event
            self._chat_request(req)
            return finished()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        gen = self._chat_request(req, lambda i, text: loop.call_soon_threadsafe(queue.put_nowait, (i, text)))
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": self.model_name}

        def chunk(i: int, delta: dict[str, Any], finish: str | None = None) -> str:
            return _sse({**head, "choices": [{"index": i, "delta": delta, "logprobs": None, "finish_reason": finish}]})

        async def events() -> AsyncIterator[str]:
            for i in range(req.n):
                yield chunk(i, {"role": "assistant", "content": ""})
            call = asyncio.ensure_future(self._call(self._generate, [gen], "/v1/chat/completions"))
            sent = [""] * req.n
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({call, getter}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                i, text = getter.result()
                sent[i] += text
                yield chunk(i, {"content": text})
            while not queue.empty():
                i, text = queue.get_nowait()
                sent[i] += text
                yield chunk(i, {"content": text})
            try:
                (completion,) = call.result()
            except APIError as exc:
                yield _error_event(exc)
                return
            for i, text in enumerate(completion.texts):
                rest = text[len(sent[i]):] if text.startswith(sent[i]) else ""
                for piece, _ in _pieces(rest, None):  # what the backend did not report live
                    yield chunk(i, {"content": piece})
                finish = completion.finish_reasons[i] if i < len(completion.finish_reasons) else "stop"
                yield chunk(i, {}, finish)
            resp = {**head, "usage": _usage(completion.prompt_tokens, completion.completion_tokens)}
            if on_done is not None:
                on_done(resp)
            if include_usage:
                yield _sse({**head, "choices": [], "usage": resp["usage"]})
            yield "data: [DONE]\n\n"

        return events()

    async def _chat_response(self, req: ChatCompletionRequest, gen: GenerationRequest,
                             completion: Completion) -> dict[str, Any]:
        messages = gen.prompt
        assert isinstance(messages, list)
        logprobs = await self._chat_logprobs(messages, completion, self.top_k(req.top_logprobs)) if req.logprobs else None
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "finish_reason": completion.finish_reasons[i] if i < len(completion.finish_reasons) else "stop",
                "logprobs": logprobs[i] if logprobs else None,
            }
            for i, text in enumerate(completion.texts)
        ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
            "usage": _usage(completion.prompt_tokens, completion.completion_tokens),
        }

    async def _chat_logprobs(
        self, messages: list[Message], completion: Completion, k: int
    ) -> list[dict[str, Any]] | None:
        if completion.logprobs is not None:
            return [
                {"content": [_chat_token(t.token, t.logprob, _top_entries(t.top, k)) for t in tokens]}
                for tokens in completion.logprobs
            ]
        scores = await self._whole_text_scores(messages, completion.texts)
        if scores is None:
            return None
        return [
            {"content": [_chat_token(text, lp, [(text, lp)] if k else [])]}
            for text, lp in zip(completion.texts, scores)
        ]

    async def _whole_text_scores(self, prompt: Prompt, texts: list[str]) -> list[float] | None:
        """The backend's log-probability of each (non-empty) text, if it can score."""
        if not self.backend.can_score:
            return None
        nonempty = tuple(sorted({t for t in texts if t}))
        if not nonempty:
            return [0.0] * len(texts)
        (result,) = await self._call(self._score, [ScoreRequest(prompt, nonempty)], "logprobs")
        by_text = dict(zip(nonempty, result.logprobs))
        return [by_text.get(t, 0.0) for t in texts]

    # -- completions -----------------------------------------------------------------
    async def completions(self, req: CompletionRequest) -> dict[str, Any]:
        self.check_model(req.model)
        if req.stream and not self.streaming:
            raise APIError(400, "stream=true is not supported yet; send stream=false", code="unsupported", param="stream")
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        if not prompts:
            raise APIError(400, "prompt must not be empty", param="prompt")
        constraint = self.constraint(req)
        if constraint is not None and req.echo and (req.max_tokens == 0 or req.continuation_offset is not None):
            raise APIError(400, "a structured-output field constrains generated text; this request only echoes "
                           "or scores its prompt", code="unsupported_constraint")
        if req.echo and req.logprobs is not None and req.continuation_offset is not None:
            choices, usage = await self._score_completions(prompts, _offsets(req, prompts))
        elif req.echo and req.logprobs is not None and req.max_tokens == 0:
            raise APIError(
                400,
                "this server scores text with its backend, not token by token: with echo and logprobs, "
                "send `continuation_offset` (the character index in `prompt` where the scored part begins)",
                param="continuation_offset",
            )
        elif req.echo and req.max_tokens == 0:
            choices = [self._text_choice(i, p, "length", None) for i, p in enumerate(prompts)]
            usage = _usage(sum(self.backend.count_tokens(p) for p in prompts), 0)
        else:
            self._check_generation(req, prompts)
            choices, usage = await self._generate_completions(req, prompts, constraint)
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": choices,
            "usage": usage,
        }

    def _check_generation(self, req: CompletionRequest, prompts: list[str]) -> None:
        """Refuse what no model can continue: an empty prompt, an answer longer than the context."""
        empty = next((i for i, p in enumerate(prompts) if not p), None)
        if empty is not None:
            where = "prompt" if isinstance(req.prompt, str) else f"prompt[{empty}]"
            raise APIError(400, f"{where} is empty: give the model some text to continue", param="prompt",
                           code="empty_prompt")
        self.check_max_tokens(req.max_tokens)

    @staticmethod
    def _text_choice(index: int, text: str, finish: str, logprobs: dict[str, Any] | None) -> dict[str, Any]:
        return {"index": index, "text": text, "finish_reason": finish, "logprobs": logprobs}

    async def _score_completions(
        self, prompts: list[str], offsets: list[int]
    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
        if not self.backend.can_score:
            raise APIError(400, f"model {self.model_name!r} cannot score continuations", code="unsupported")
        todo = [i for i, (p, off) in enumerate(zip(prompts, offsets)) if off < len(p)]
        requests = [ScoreRequest(prompts[i][: offsets[i]], (prompts[i][offsets[i] :],)) for i in todo]
        results = await self._call(self._score, requests, "/v1/completions") if requests else []
        scored = dict(zip(todo, results))
        choices, prompt_tokens = [], 0
        for i, (prompt, off) in enumerate(zip(prompts, offsets)):
            result = scored.get(i)
            if result is None:  # nothing to score: the whole prompt is context
                counts = [self.backend.count_tokens(prompt)]
                logprobs = _segments([prompt], [None], [0], counts)
            else:
                cont, lp = prompt[off:], result.logprobs[0]
                counts = [result.prompt_tokens, result.lengths[0]]
                logprobs = _segments([prompt[:off], cont], [None, lp], [0, off], counts)
            prompt_tokens += sum(counts)
            choices.append(self._text_choice(i, prompt, "length", logprobs))
        return choices, _usage(prompt_tokens, 0)

    async def _generate_completions(
        self, req: CompletionRequest, prompts: list[str], constraint: Constraint | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
        gens = [
            GenerationRequest(
                prompt=p,
                max_tokens=req.max_tokens,
                temperature=req.temperature,
                top_p=req.top_p,
                n=req.n,
                stop=_stops(req.stop),
                logprobs=req.logprobs is not None,
                seed=req.seed,
                constraint=constraint,
            )
            for p in prompts
        ]
        completions = await self._call(self._generate, gens, "/v1/completions")
        choices = []
        for i, (prompt, comp) in enumerate(zip(prompts, completions)):
            logprobs = await self._completion_logprobs(req, prompt, comp) if req.logprobs is not None else None
            for j, text in enumerate(comp.texts):
                finish = comp.finish_reasons[j] if j < len(comp.finish_reasons) else "stop"
                full = prompt + text if req.echo else text
                choices.append(self._text_choice(i * req.n + j, full, finish, logprobs[j] if logprobs else None))
        usage = _usage(sum(c.prompt_tokens for c in completions), sum(c.completion_tokens for c in completions))
        return choices, usage

    async def _completion_logprobs(
        self, req: CompletionRequest, prompt: str, comp: Completion
    ) -> list[dict[str, Any]] | None:
        k = self.top_k(req.logprobs)
        head = prompt if req.echo else ""
        if comp.logprobs is not None:
            return [_legacy_logprobs(tokens, k, head) for tokens in comp.logprobs]
        scores = await self._whole_text_scores(prompt, comp.texts)
        if scores is None:
            return None
        return [
            _legacy_logprobs([TokenLogprob(text, lp, {text: lp})], k, head)
            for text, lp in zip(comp.texts, scores)
        ]


UsageHook = Callable[[str, dict[str, int]], None]


def add_openai_routes(app: FastAPI, service: OpenAIService, on_usage: UsageHook | None = None) -> None:
    """Mount ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings``
    (:mod:`.openai_embeddings`) on ``app``."""

    def usage(endpoint: str, resp: dict[str, Any]) -> None:
        if on_usage is not None:
            on_usage(endpoint, resp.get("usage") or {})

    @app.get("/v1/models", tags=["openai"])
    async def list_models() -> dict[str, Any]:
        return service.models()

    @app.get("/v1/models/{model_id:path}", tags=["openai"])
    async def get_model(model_id: str) -> dict[str, Any]:
        service.check_model(model_id)
        return service.model_card()

    @app.post("/v1/chat/completions", tags=["openai"])
    async def chat_completions(req: ChatCompletionRequest) -> Any:
        if req.stream:
            return _stream(service.chat_events(req, _include_usage(req), lambda resp: usage("chat", resp)))
        resp = await service.chat(req)
        usage("chat", resp)
        return resp

    @app.post("/v1/completions", tags=["openai"])
    async def completions(req: CompletionRequest) -> Any:
        resp = await service.completions(req)
        usage("completions", resp)
        return _stream(sse_completions(resp, _include_usage(req))) if req.stream else resp

    from .openai_embeddings import add_embedding_routes

    app.state.embedding_service = add_embedding_routes(app, on_usage=on_usage)


def create_openai_app(backend: Backend, model_name: str = "local", *, max_concurrency: int = 1,
                      streaming: bool = False, max_top_logprobs: int | None = None) -> FastAPI:
    """A FastAPI app serving ``backend`` under OpenAI's ``/v1`` API as ``model_name``.

    ``max_concurrency`` bounds simultaneous backend calls (1: one at a time, which
    suits an in-process model; more for backends that are themselves remote, or a
    :class:`~openautoglm.serve.batching.BatchingBackend` that merges them).  ``max_top_logprobs``
    caps the alternatives per token returned (an endpoint that lists only its top few).
    """
    service = OpenAIService(backend, model_name, max_concurrency, streaming=streaming,
                            max_top_logprobs=max_top_logprobs)
    app = FastAPI(title="Open-AutoGLM OpenAI-compatible API", version="1")
    app.state.openai_service = service
    install_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name}

    add_openai_routes(app, service)
    return app
