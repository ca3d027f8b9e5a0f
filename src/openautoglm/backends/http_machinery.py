"""Machinery of the HTTP backend: a private event loop, the circuit breaker, retry signals
and gathering a batch of requests either fail-fast or each to its own end."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Coroutine, Sequence, TypeVar

import httpx

from ..errors import BackendError, EndpointUnavailable
from .openai_wire import _retry_after_s, _server_message

#: HTTP statuses worth retrying (besides every 5xx)
RETRY_STATUSES = frozenset({408, 409, 425, 429})

T = TypeVar("T")


class _LoopThread:
    """A private asyncio event loop running in a daemon thread."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=self._run, args=(loop,), name=self._name, daemon=True)
                self._loop, self._thread = loop, thread
                thread.start()
            return self._loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        loop.run_forever()

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def is_running_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop())

    def stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()


@dataclass
class _Session:
    """Objects bound to the private loop: the HTTP client and the concurrency limit."""

    client: httpx.AsyncClient
    semaphore: asyncio.Semaphore


class _CircuitBreaker:
    """Consecutive-failure breaker: closed -> open (cooldown) -> half-open (one trial)."""

    def __init__(self, threshold: int, cooldown_s: float) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.failures = 0
        self.opened_at: float | None = None
        self.trial_in_flight = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "open" if self.remaining_s() > 0 or self.trial_in_flight else "half_open"

    def remaining_s(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown_s - time.monotonic())

    def acquire(self) -> bool:
        """Whether a call may go ahead now (claims the half-open trial if due)."""
        if self.threshold <= 0 or self.opened_at is None:
            return True
        if self.remaining_s() > 0 or self.trial_in_flight:
            return False
        self.trial_in_flight = True
        return True

    def success(self) -> None:
        self.failures, self.opened_at, self.trial_in_flight = 0, None, False

    def failure(self) -> None:
        self.failures += 1
        was_trial, self.trial_in_flight = self.trial_in_flight, False
        if self.threshold > 0 and (was_trial or self.failures >= self.threshold):
            self.opened_at = time.monotonic()

    def abandon(self) -> None:
        """A call ended without a verdict (cancelled): free the trial slot."""
        self.trial_in_flight = False


class _Retryable(Exception):
    """A failed attempt worth retrying; ``cls(message, hint)`` is raised if none is left."""

    def __init__(
        self, cls: type[BackendError], message: str, hint: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.cls, self.message, self.hint, self.retry_after_s = cls, message, hint, retry_after_s


class RequestRejected(BackendError):
    """The server refused a request with a 4xx answer; ``status`` says which (400/422: a
    parameter it does not take, which guided decoding reads as "try the next method")."""

    status: int = 0


class _Rejected(Exception):
    """The server answered with a definitive error (4xx): no retry; endpoint is healthy."""

    def __init__(self, error: BackendError) -> None:
        super().__init__(str(error))
        self.error = error


async def _gather_each(aws: Sequence[Awaitable[T]]) -> list[T | BackendError]:
    """Await all; each failure (a :class:`BackendError`, or any other exception, wrapped)
    takes its request's place."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    out: list[T | BackendError] = []
    for res in results:
        if isinstance(res, BaseException) and not isinstance(res, Exception):
            raise res  # cancellation, KeyboardInterrupt
        out.append(res if not isinstance(res, Exception) or isinstance(res, BackendError)
                   else BackendError(f"{type(res).__name__}: {res}"))
    return out


async def _gather_fail_fast(aws: Sequence[Awaitable[T]]) -> list[T]:
    """``asyncio.gather`` that cancels the remaining tasks when one fails."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class RetryingCalls:
    """One POST to an endpoint through the circuit breaker, with retries and backoff.

    A mixin of :class:`~.openai_compat.OpenAICompatBackend`: it reads the backend's
    ``base_url``, ``timeout_s``, ``max_retries``, ``backoff_s``, ``max_backoff_s``,
    ``_breaker``, ``_rng`` and ``_get_session()``, and its error helpers ``_error``,
    ``_connect_hint`` and ``_rejected_hint``.
    """

    base_url: str
    timeout_s: float
    max_retries: int
    backoff_s: float
    max_backoff_s: float
    _breaker: _CircuitBreaker
    _rng: random.Random

    async def _call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST ``payload`` to ``base_url + path`` through the breaker, with retries."""
        if not self._breaker.acquire():
            remaining = self._breaker.remaining_s()
            when = f"retrying in {remaining:.1f}s" if remaining > 0 else "a trial call is in progress"
            raise self._error(
                EndpointUnavailable,
                f"{self.base_url} is failing: circuit breaker open after {self._breaker.failures} "
                f"consecutive failed calls; {when}",
                hint="calls fail fast until then; check the server, or lower concurrency",
            )
        try:
            data = await self._post_with_retries(self.base_url + path, payload)
        except _Rejected as rejected:
            self._breaker.success()  # the endpoint answered: it is up
            raise rejected.error from None
        except BackendError:
            self._breaker.failure()
            raise
        except BaseException:
            self._breaker.abandon()
            raise
        self._breaker.success()
        return data

    async def _post_with_retries(self, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                return await self._post_once(url, payload)
            except _Retryable as retry:
                if attempt + 1 >= attempts:
                    suffix = f" (after {attempts} attempts)" if attempts > 1 else ""
                    raise self._error(retry.cls, retry.message + suffix, retry.hint) from None
                await asyncio.sleep(self._backoff(attempt, retry.retry_after_s))
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, self.max_backoff_s)
        delay = min(self.max_backoff_s, self.backoff_s * (2**attempt))
        return delay * self._rng.uniform(0.5, 1.0)

    async def _post_once(self, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        session = self._get_session()
        async with session.semaphore:
            try:
                response = await asyncio.wait_for(session.client.post(url, json=payload), self.timeout_s)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                message = f"cannot connect to {self.base_url} ({type(exc).__name__}: {exc})"
                raise _Retryable(EndpointUnavailable, message, self._connect_hint()) from None
            except (asyncio.TimeoutError, httpx.TimeoutException):
                message = f"{url} did not answer within {self.timeout_s:g}s"
                hint = "increase timeout_s, lower concurrency, or check the server's load"
                raise _Retryable(BackendError, message, hint) from None
            except httpx.TransportError as exc:
                message = f"connection to {url} failed ({type(exc).__name__}: {exc})"
                raise _Retryable(EndpointUnavailable, message, self._connect_hint()) from None
        return self._read_response(url, response)

    def _read_response(self, url: str, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if status >= 500 or status in RETRY_STATUSES:
            hint = "rate limited: lower concurrency or wait" if status == 429 else "the server failed; see its logs"
            message = f"{url} answered HTTP {status}: {_server_message(response)}"
            raise _Retryable(BackendError, message, hint, _retry_after_s(response.headers))
        if status >= 400:
            message = f"{url} answered HTTP {status}: {_server_message(response)}"
            error = self._error(RequestRejected, message, self._rejected_hint(status))
            error.status = status  # type: ignore[attr-defined]
            raise _Rejected(error)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            message = f"{url} returned a body that is not a JSON object: {response.text[:120]!r}"
            raise _Retryable(BackendError, message, "check that base_url points at an OpenAI-compatible /v1 API")
        return data

