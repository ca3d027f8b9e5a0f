"""Test helpers: a real uvicorn server on 127.0.0.1 in a background thread, and an
ASGI fault-injection layer the tests steer (errors, Retry-After, slow answers,
malformed bodies, dropped connections), which also counts hits and in-flight requests.

The layer also emulates how other servers treat structured-output fields
(``FaultController.fields``): a field (or ``response_format:<type>``) can be ``accept``-ed
(passed to Open-AutoGLM's server, which speaks ``response_format``, ``guided_*`` and
``structured_outputs``), ``reject``-ed (HTTP 400, as OpenAI does with unknown arguments),
``ignore``-d (dropped before the app sees it, as vLLM does with fields it does not know),
or ``llamacpp``-translated (llama.cpp's ``json_schema`` / GBNF ``grammar`` into the
server's guided fields).  Fields not listed pass through.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Sequence

from openautoglm.backends.base import Completion, GenerationRequest, TokenLogprob
from openautoglm.backends.fake import FakeBackend, prompt_text


@dataclass
class Fault:
    """What to do with one request instead of (or before) serving it.

    kinds: ``status`` (answer ``status`` with an OpenAI error body and optional
    ``retry_after``), ``sleep`` (wait ``seconds``, then serve), ``malformed`` (200 with a
    non-JSON body), ``close`` (start a response, then drop the connection), ``json``
    (200 with ``body``).
    """

    kind: str
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0
    message: str = "injected fault"
    body: dict[str, Any] = field(default_factory=dict)


class FaultController:
    """Shared state between a test (main thread) and the server (its own thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._faults: deque[Fault] = deque()
            self.hits = 0
            self.paths: Counter[str] = Counter()
            self.in_flight = 0
            self.max_in_flight = 0
            self.delay_s = 0.0
            self.required_key: str | None = None
            self.authorizations: list[str | None] = []
            self.bodies: list[dict[str, Any]] = []
            self._random: tuple[float, list[Fault], random.Random] | None = None
            self.reject_marker: str | None = None  # a body containing it gets HTTP 400, every time
            self.injected: Counter[str] = Counter()
            #: structured-output field -> "accept" | "reject" | "ignore" | "llamacpp" (module docstring)
            self.fields: dict[str, str] = {}

    def random_faults(self, rate: float, faults: Sequence[Fault], seed: int = 0) -> None:
        """From now on, each request meets one of ``faults`` (chosen at random) with probability ``rate``."""
        with self._lock:
            self._random = (rate, list(faults), random.Random(seed))

    def inject(self, kind: str, times: int = 1, **options: Any) -> None:
        with self._lock:
            self._faults.extend(Fault(kind, **options) for _ in range(times))

    def enter(self, path: str, authorization: str | None) -> Fault | None:
        with self._lock:
            self.hits += 1
            self.paths[path] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.authorizations.append(authorization)
            if self._faults:
                return self._faults.popleft()
            if self._random is not None:
                rate, faults, rng = self._random
                if rng.random() < rate:
                    fault = rng.choice(faults)
                    self.injected[fault.kind if fault.kind != "status" else str(fault.status)] += 1
                    return fault
            return None

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def record_body(self, body: bytes) -> None:
        try:
            parsed = json.loads(body or b"{}")
        except ValueError:
            parsed = {"_raw": body.decode("utf-8", "replace")}
        with self._lock:
            self.bodies.append(parsed)


async def _send_json(send: Any, status: int, body: Any, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    await _send_raw(send, status, payload, headers)


async def _send_raw(send: Any, status: int, payload: bytes, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    base = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": base + list(headers)})
    await send({"type": "http.response.body", "body": payload})


class FaultMiddleware:
    """Pure ASGI wrapper applying the controller's next fault to each HTTP request."""

    def __init__(self, app: Any, controller: FaultController) -> None:
        self.app = app
        self.controller = controller

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        ctl = self.controller
        fault = ctl.enter(scope["path"], headers.get("authorization"))
        try:
            receive, body = await self._buffer_body(receive)
            if ctl.fields:
                body, refused = dialect(body, ctl.fields)
                if refused is not None:
                    error = {"message": f"Unrecognized request argument supplied: {refused}",
                             "type": "invalid_request_error", "code": None}
                    await _send_json(send, 400, {"error": error})
                    return
                receive = _replay(body, receive)
            if ctl.reject_marker and ctl.reject_marker.encode() in body:
                fault = Fault("status", status=400, message="content filter: this input was refused")
            if ctl.delay_s:
                await asyncio.sleep(ctl.delay_s)
            if ctl.required_key and headers.get("authorization") != f"Bearer {ctl.required_key}":
                error = {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}
                await _send_json(send, 401, {"error": error})
            elif fault is None:
                await self.app(scope, receive, send)
            else:
                await self._apply(fault, scope, receive, send)
        finally:
            ctl.leave()

    async def _buffer_body(self, receive: Any) -> Any:
        """Read the request body (to record it) and replay it to the app."""
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        self.controller.record_body(body)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay, body

    async def _apply(self, fault: Fault, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if fault.kind == "status":
            headers = [(b"retry-after", fault.retry_after.encode())] if fault.retry_after is not None else []
            error = {"message": fault.message, "type": "server_error", "code": None}
            await _send_json(send, fault.status, {"error": error}, headers)
        elif fault.kind == "sleep":
            await asyncio.sleep(fault.seconds)
            await self.app(scope, receive, send)
        elif fault.kind == "malformed":
            await _send_raw(send, 200, b'{"choices": [ this is not json')
        elif fault.kind == "close":
            headers = [(b"content-type", b"application/json"), (b"content-length", b"1000")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b'{"choices": ', "more_body": True})
            # returning without finishing the body makes uvicorn drop the connection
        elif fault.kind == "json":
            await _send_json(send, 200, fault.body)
        else:  # pragma: no cover - a typo in a test
            raise ValueError(f"unknown fault kind {fault.kind!r}")


def dialect(body: bytes, rules: dict[str, str]) -> tuple[bytes, str | None]:
    """``body`` as a server following ``rules`` passes it on, or the field it refuses."""
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return body, None
    if not isinstance(data, dict):
        return body, None
    for field in list(data):
        name = field
        if field == "response_format" and isinstance(data[field], dict):
            name = f"response_format:{data[field].get('type')}"
        rule = rules.get(name, rules.get(field, "accept"))
        if rule == "reject":
            return body, name
        if rule == "ignore":
            del data[field]
        elif rule == "llamacpp" and field == "json_schema":
            data["guided_json"] = data.pop(field)
        elif rule == "llamacpp" and field == "grammar":
            data["guided_choice"] = json.loads("[" + data.pop(field).split("::=", 1)[1].replace(" | ", ",") + "]")
    return json.dumps(data).encode(), None


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class ServerThread:
    """``uvicorn`` serving ``app`` on 127.0.0.1 (a free port) in a daemon thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="critical", lifespan="off", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TopLogprobFake(FakeBackend):
    """A :class:`FakeBackend` whose first generated token comes with top logprobs.

    The alternatives are the words of ``vocabulary`` (as ``" word"`` tokens), with
    log-softmax-normalised FakeBackend scores, so scoring through ``top_logprobs``
    should rank continuations as :meth:`FakeBackend.score` does.
    """

    def __init__(self, vocabulary: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vocabulary = list(vocabulary)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        out = super().generate(requests)
        for req, comp in zip(requests, out):
            if req.logprobs and req.constraint is None:  # constrained: the options' logprobs
                comp.logprobs = [[self._first_token(req)] for _ in comp.texts]
        return out

    def _first_token(self, req: GenerationRequest) -> TokenLogprob:
        raw = self.score(prompt_text(req.prompt), self.vocabulary)
        norm = math.log(sum(math.exp(x) for x in raw))
        top = {" " + w: x - norm for w, x in zip(self.vocabulary, raw)}
        best = max(top, key=top.__getitem__)
        return TokenLogprob(best, top[best], top)
