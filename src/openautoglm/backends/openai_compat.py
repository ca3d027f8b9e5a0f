"""A backend for any OpenAI-compatible HTTP endpoint (OpenAI, Zhipu GLM/ChatGLM, Qwen/DashScope,
Baichuan, DeepSeek, vLLM, Ollama, llama.cpp, and Open-AutoGLM's own server).

Model strings name a preset and a model: ``openai:gpt-4o-mini``, ``zhipu:glm-4-flash``,
``ollama:qwen2.5`` (see :mod:`openautoglm.backends.presets`).

Robustness
    Requests run on ``httpx.AsyncClient`` with at most ``concurrency`` in flight.
    429, 408/409, 5xx, timeouts, connection errors and non-JSON bodies are retried
    ``max_retries`` times with exponential backoff and jitter (``Retry-After`` is
    honoured, capped at ``max_backoff_s``); other 4xx answers fail at once.  After
    ``breaker_threshold`` consecutive failed calls a circuit breaker fails every call
    fast (:class:`~openautoglm.errors.EndpointUnavailable`) for ``breaker_cooldown_s``,
    then lets one trial call through.

Sync and async
    :meth:`OpenAICompatBackend.generate` / :meth:`~OpenAICompatBackend.score_batch` are
    synchronous and safe to call from inside a running event loop (Jupyter, FastAPI):
    the HTTP work runs on a private event loop in a background thread that the backend
    owns.  :meth:`~OpenAICompatBackend.agenerate` / :meth:`~OpenAICompatBackend.ascore_batch`
    are their coroutine forms.

Guided decoding
    A request's :class:`~.base.Constraint` goes out in the form the endpoint takes
    (``response_format``, vLLM's ``structured_outputs`` / ``guided_*``, llama.cpp's
    ``json_schema`` / ``grammar``): presets declare theirs, other endpoints are probed once;
    a refused or ignored field falls back to the next form, recorded in the completion's
    ``constraint_method`` (see :mod:`.openai_guided`).  ``constraints`` lists the kinds known
    to be enforced.

Scoring (``score_mode``)
    ``"echo"``
        Exact.  For each continuation, ``POST /completions`` with the prompt text plus
        the continuation, ``echo: true, logprobs: 1, max_tokens: 1``, and sum the echoed
        log-probabilities of the tokens from the continuation's first character on (the
        generated token, if any, is ignored).  Chat prompts are rendered to plain text
        (``"User: ...\\nAssistant:"``).  The request also carries the extension field
        ``continuation_offset`` (character index where the continuation starts): servers
        with per-token echo logprobs (vLLM) ignore it; Open-AutoGLM's server
        (:mod:`openautoglm.serve.openai_api`) needs it to score the continuation with its
        backend, and answers with two segments (context, continuation) plus the extension
        ``token_counts`` (model tokens per segment, used for ``ScoreResult.lengths``).
        Works with vLLM and Open-AutoGLM's server; hosted APIs, Ollama and llama.cpp do
        not return echoed prompt logprobs.
    ``"top_logprobs"``
        An estimate (``ScoreResult.exact = False``).  One chat request per prompt with
        ``max_tokens: 1, logprobs: true, top_logprobs: 20``; each continuation gets the
        log-sum-exp of the first-token alternatives it begins with (see
        :func:`estimate_first_token_logprob`); a continuation whose first token is absent
        gets the least likely listed logprob minus a penalty.  ``lengths`` are all 1,
        since only one token is scored.
    ``"none"``
        ``can_score = False``: tasks fall back to vote share over samples.
    ``"auto"``
        ``"top_logprobs"``: cheap and supported by most hosted APIs and local servers.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import random
import time
import weakref
from typing import Any, Awaitable, Callable, Coroutine, Mapping, Sequence, TypeVar

import httpx

from ..errors import BackendError, ConfigError, StopRun, UnknownModelError
from .base import Backend, Completion, GenerationRequest, Prompt, ScoreRequest, ScoreResult
from .http_machinery import (  # noqa: F401 - RETRY_STATUSES is re-exported
    RETRY_STATUSES,
    RetryingCalls,
    _CircuitBreaker,
    _gather_each,
    _gather_fail_fast,
    _LoopThread,
    _Session,
)
from .openai_wire import (  # noqa: F401 - estimate_first_token_logprob, render_chat_text... are re-exported
    MISSING_TOKEN_PENALTY,
    MalformedResponse,
    _chat_logprobs,
    _echo_continuation_logprob,
    _expect,
    _message_text,
    _usage,
    echo_text,
    estimate_first_token_logprob,
    render_chat_text,
    to_messages,
)
from .openai_guided import GENERATE_TOP_LOGPROBS, WIRE_METHODS, GuidedGeneration  # noqa: F401 - re-exported
from .presets import PRESETS, EndpointPreset, missing_key_message, preset_for, route

T = TypeVar("T")

SCORE_MODES = ("auto", "echo", "top_logprobs", "none")
#: alternatives asked for per token when scoring with ``top_logprobs`` (OpenAI's maximum)
SCORE_TOP_LOGPROBS = 20
#: the extension field that marks where the continuation starts in an echo scoring request
CONTINUATION_OFFSET_FIELD = "continuation_offset"


def _shape_checked(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Turn any error from reading a response of the wrong shape into a :class:`BackendError`
    (the request fails alone, with the reason; it never crashes the run)."""

    @functools.wraps(method)
    async def checked(self: "OpenAICompatBackend", *args: Any) -> T:
        try:
            return await method(self, *args)
        except (MalformedResponse, TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
            raise self._malformed(self.base_url, exc) from None

    return checked


# --------------------------------------------------------------------------- the backend


class OpenAICompatBackend(GuidedGeneration, RetryingCalls, Backend):
    """Any OpenAI-compatible ``/v1`` endpoint (see the module docstring for details).

    ``base_url`` defaults to the preset's (``preset`` defaults to ``"openai"`` when no
    ``base_url`` is given).  The API key is ``api_key``, else the environment variable
    ``api_key_env``, else the preset's variable; a custom ``base_url`` without a preset
    never receives a preset's key.  The key is sent as ``Authorization: Bearer`` and
    appears in no message, ``repr`` or :meth:`describe`.

    ``timeout_s`` bounds each HTTP attempt; ``max_retries`` extra attempts follow
    retryable failures, waiting ``backoff_s * 2**attempt`` (halved at random, at most
    ``max_backoff_s``).  ``concurrency`` bounds requests in flight.  The breaker opens
    after ``breaker_threshold`` consecutive failed calls (``0`` disables it) for
    ``breaker_cooldown_s``.  ``score_mode``: ``"auto"``, ``"echo"``, ``"top_logprobs"``
    or ``"none"`` (module docstring).  ``extra_headers`` go with every request.
    """

    name = "openai"
    max_context = 8192

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        preset: str | None = None,
        timeout_s: float = 60,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 20,
        concurrency: int = 8,
        breaker_threshold: int = 5,
        breaker_cooldown_s: float = 30,
        score_mode: str = "auto",
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.preset = self._resolve_preset(preset, base_url)
        self.model = model or (self.preset.default_model if self.preset else "") or ""
        if not self.model:
            raise ConfigError("no model name given", field="model", hint="e.g. 'vllm:Qwen/Qwen2.5-7B-Instruct'")
        url = base_url or (self.preset.resolved_base_url() if self.preset else "")
        self.base_url = url.rstrip("/")
        self.api_key_env = api_key_env or (self.preset.api_key_env if self.preset else None)
        self._api_key = self._resolve_api_key(api_key)
        if score_mode not in SCORE_MODES:
            raise ConfigError(
                f"unknown score_mode {score_mode!r}", field="score_mode", hint=f"use one of {', '.join(SCORE_MODES)}"
            )
        self.score_mode = "top_logprobs" if score_mode == "auto" else score_mode
        self.can_score = self.score_mode != "none"
        self.timeout_s = float(timeout_s)
        self.max_retries = max(0, int(max_retries))
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.concurrency = max(1, int(concurrency))
        self._extra_headers = dict(extra_headers or {})
        self._breaker = _CircuitBreaker(int(breaker_threshold), float(breaker_cooldown_s))
        self._rng = random.Random()
        self._n_supported = True  # cleared when the server ignores n > 1
        self._init_guided(self.preset.guided if self.preset else ())
        self._session: _Session | None = None
        self._loop = _LoopThread(f"openautoglm-http-{self.model}")
        self._finalizer = weakref.finalize(self, self._loop.stop)

    # -- construction ------------------------------------------------------------
    @classmethod
    def from_spec(cls, prefix: str, model: str, **options: Any) -> "OpenAICompatBackend":
        """Build from a model string's parts, e.g. ``("zhipu", "glm-4-flash")``.

        ``options`` are constructor arguments (``base_url``, ``api_key``, ``timeout_s``...).
        """
        preset = preset_for(prefix)
        if preset is None:
            raise UnknownModelError(
                f"unknown endpoint preset {prefix!r}",
                hint=f"use one of {', '.join(sorted(PRESETS))}, or pass base_url=...",
            )
        model = model or preset.default_model or ""
        served_by, base_url = route(preset, model, options.get("base_url"))
        if base_url:
            options["base_url"] = base_url
        options.setdefault("preset", served_by.name)
        return cls(model, **options)

    @staticmethod
    def _resolve_preset(preset: str | None, base_url: str | None) -> EndpointPreset | None:
        if preset is None:
            return None if base_url else PRESETS["openai"]
        found = preset_for(preset)
        if found is None:
            raise ConfigError(
                f"unknown endpoint preset {preset!r}", field="preset", hint=f"use one of {', '.join(sorted(PRESETS))}"
            )
        return found

    def _resolve_api_key(self, api_key: str | None) -> str | None:
        key = api_key or (os.environ.get(self.api_key_env) if self.api_key_env else None) or None
        if key is None and self.preset is not None and self.preset.api_key_required:
            raise BackendError(missing_key_message(self.preset) if self.api_key_env == self.preset.api_key_env
                               else f"no API key for {self.preset.name}: set {self.api_key_env} or pass api_key=...")
        return key

    # -- info ------------------------------------------------------------------------
    def identity(self) -> str:
        """Everything that changes an answer: endpoint, model, how scores are read, extra headers."""
        headers = hashlib.sha256(json.dumps(sorted(self._extra_headers.items())).encode()).hexdigest()[:12]
        scoring = f"{self.score_mode}/top{SCORE_TOP_LOGPROBS}/penalty{MISSING_TOKEN_PENALTY:g}"
        return f"{self.name}:{self.base_url}:{self.model}:{scoring}:{headers}"

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            base_url=self.base_url,
            preset=self.preset.name if self.preset else None,
            api_key_env=self.api_key_env,
            api_key_set=self._api_key is not None,
            score_mode=self.score_mode,
            concurrency=self.concurrency,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            breaker=self._breaker.state,
            constraints=sorted(self.known_constraints()),
            guided=self.guided_support(),
            guided_fallbacks=list(self.guided_log),
        )
        return info

    def __repr__(self) -> str:
        return f"OpenAICompatBackend(model={self.model!r}, base_url={self.base_url!r})"

    # -- sync / async plumbing ----------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.in_loop_thread():
            coro.close()
            raise RuntimeError("a synchronous backend call from the backend's own event loop; await the a* method")
        future = self._loop.submit(coro)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    async def _arun(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_running_loop():
            return await coro
        return await asyncio.wrap_future(self._loop.submit(coro))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return self._run(self._generate_all(list(requests)))

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return await self._arun(self._generate_all(list(requests)))

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        self._check_can_score()
        return self._run(self._score_all(list(requests)))

    def generate_each(self, requests: Sequence[GenerationRequest]) -> list[Completion | BackendError]:
        """Every request runs to its own end (no fail-fast): one refused request fails alone."""
        return self._each(self._generate_one, requests)

    def score_each(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult | BackendError]:
        self._check_can_score()
        return self._each(self._score_echo if self.score_mode == "echo" else self._score_top_logprobs, requests)

    def _each(self, one: Any, requests: Sequence[Any]) -> list[Any]:
        out: list[Any] = [None] * len(requests)
        todo = []
        for i, req in enumerate(requests):
            try:
                self.check_request(req)
                todo.append(i)
            except BackendError as exc:
                out[i] = exc
        if todo:
            answers = self._run(_gather_each([one(requests[i]) for i in todo]))
            for i, answer in zip(todo, answers):
                out[i] = answer
        unavailable = [a for a in out if isinstance(a, StopRun)]
        if unavailable:
            raise unavailable[0]  # nothing can succeed: stop, do not mark records as failed
        return out

    async def ascore_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        self._check_can_score()
        return await self._arun(self._score_all(list(requests)))

    def close(self) -> None:
        """Close the HTTP client and stop the private loop (it restarts on next use)."""
        if self._session is not None and not self._loop.in_loop_thread():
            try:
                self._loop.submit(self._aclose()).result(timeout=5)
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._session = None
        self._loop.stop()

    async def _aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.client.aclose()

    def _get_session(self) -> _Session:
        """The client and semaphore (created on first use, on the private loop)."""
        if self._session is None:
            headers = {"Accept": "application/json", **self._extra_headers}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
            client = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(self.timeout_s), limits=limits)
            self._session = _Session(client, asyncio.Semaphore(self.concurrency))
        return self._session

    # -- errors ---------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _error(self, cls: type[BackendError], message: str, hint: str | None = None) -> BackendError:
        return cls(self._redact(message), hint=self._redact(hint) if hint else None)

    def _connect_hint(self) -> str:
        where = f"base_url or {self.preset.base_url_env}" if self.preset else "base_url"
        return f"is the server running? check {where}"

    def _rejected_hint(self, status: int) -> str:
        if status in (401, 403):
            return f"check the API key ({self.api_key_env or 'api_key'}) and its permissions"
        if status == 404:
            return f"check the model name {self.model!r} and base_url {self.base_url}"
        return f"check the model name {self.model!r} and the request parameters"

    def _check_can_score(self) -> None:
        if not self.can_score:
            raise self._error(
                BackendError,
                f"{self.base_url}: score_mode='none' cannot score continuations",
                hint="use score_mode='top_logprobs' or 'echo' if the server returns logprobs",
            )

    # -- generation (the payloads and guided decoding are in openai_guided) ---------------
    def _malformed(self, url: str, exc: Exception) -> BackendError:
        return self._error(BackendError, f"{url} returned a malformed response: {exc}",
                           "the server does not follow the OpenAI API here; check base_url and the server's version")

    async def _generate_all(self, requests: list[GenerationRequest]) -> list[Completion]:
        return await _gather_fail_fast([self._generate_one(r) for r in requests])

    @_shape_checked
    async def _generate_one(self, req: GenerationRequest) -> Completion:
        if req.constraint is None:
            return await self._generate_plain(req, {})
        return await self._generate_guided(req, req.constraint)

    # -- scoring ---------------------------------------------------------------------
    async def _score_all(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        one = self._score_echo if self.score_mode == "echo" else self._score_top_logprobs
        return await _gather_fail_fast([one(r) for r in requests])

    @_shape_checked
    async def _score_top_logprobs(self, req: ScoreRequest) -> ScoreResult:
        t0 = time.perf_counter()
        payload = {
            "model": self.model,
            "messages": to_messages(req.prompt),
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": True,
            "top_logprobs": SCORE_TOP_LOGPROBS,
        }
        url = self.base_url + "/chat/completions"
        data = await self._call("/chat/completions", payload)
        tokens = _chat_logprobs(self._choices(data, url)[0])
        if not tokens:
            raise self._error(
                BackendError,
                f"{url} returned no logprobs, so it cannot score with score_mode='top_logprobs'",
                "use score_mode='echo' for vLLM-style servers, or score_mode='none' to vote over samples",
            )
        top = dict(tokens[0].top)
        top.setdefault(tokens[0].token, tokens[0].logprob)
        return ScoreResult(
            logprobs=[estimate_first_token_logprob(top, c) for c in req.continuations],
            lengths=[1] * len(req.continuations),
            prompt_tokens=_usage(data)[0],
            latency_s=time.perf_counter() - t0,
            exact=False,
        )

    async def _score_echo(self, req: ScoreRequest) -> ScoreResult:
        t0 = time.perf_counter()
        parts = await _gather_fail_fast([self._echo_one(req.prompt, c) for c in req.continuations])
        return ScoreResult(
            logprobs=[lp for lp, _, _ in parts],
            lengths=[n for _, n, _ in parts],
            prompt_tokens=max((p for _, _, p in parts), default=0),
            latency_s=time.perf_counter() - t0,
            exact=True,
        )

    @_shape_checked
    async def _echo_one(self, prompt: Prompt, continuation: str) -> tuple[float, int, int]:
        text, offset = echo_text(prompt, continuation)
        payload = {
            "model": self.model,
            "prompt": text,
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": True,
            "logprobs": 1,
            CONTINUATION_OFFSET_FIELD: offset,
        }
        url = self.base_url + "/completions"
        data = await self._call("/completions", payload)
        logprobs = self._choices(data, url)[0].get("logprobs")
        if not isinstance(logprobs, dict) or not logprobs.get("token_logprobs"):
            raise self._error(
                BackendError,
                f"{url} returned no echoed logprobs, so it cannot score with score_mode='echo'",
                "use score_mode='top_logprobs' (hosted APIs, llama.cpp, Ollama) or 'none'",
            )
        return _echo_continuation_logprob(logprobs, offset, len(text))
