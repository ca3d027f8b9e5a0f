"""``create_app``: the whole server - task API, OpenAI-compatible API, metrics, web UI.

>>> app = create_app(ServerConfig(model="local"))      # then: uvicorn.run(app)

One model is loaded and wrapped in a :class:`~.batching.BatchingBackend`; the OpenAI
endpoints, the task endpoints and background runs all call it, so concurrent work is
merged into batched forward passes.  Every model call is traced in the project store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.base import Backend
from ..errors import ConfigError, OpenAutoGLMError
from .batching import BatchingBackend
from .guards import ANY_HOST, HostPolicy, RequestGuard, header_map, is_wildcard_bind
from .jobs import JobManager, JobNotFound
from .metrics import Metrics
from .openai_api import APIError, OpenAIService, add_openai_routes, install_error_handlers
from .pipelines import PipelineNotFound, PipelineRegistry
from ..redact import mask_text
from .security import Authenticator, BodySizeLimit, BodyTooLarge, KeyStore, RateLimiter, is_loopback
from .traces import ServerStore

try:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse
    from fastapi.staticfiles import StaticFiles
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("the server needs FastAPI and uvicorn: pip install 'openautoglm[server]'") from exc

PACKAGE_DIR = Path(__file__).resolve().parent
#: paths anyone may request, even when API keys are required
PUBLIC_PREFIXES = ("/healthz", "/health", "/static/", "/login", "/favicon.ico")
#: the entry-point group of server extensions (``install(app, state)``), loaded when
#: ``ServerConfig.extensions`` is None: the workbench's SQL and data pages declare themselves
#: here, so serve imports no application (they live in a layer above)
EXTENSION_GROUP = "openautoglm.server_extensions"


@dataclass
class ServerConfig:
    """Settings of ``openautoglm serve`` (see docs/server.md)."""

    model: str | None = None  # None: $OPENAUTOGLM_MODEL, else local
    #: project folder: store.db, pipelines/, uploads/ (default: $OPENAUTOGLM_HOME or ./.openautoglm)
    home: Path | None = None
    #: SQLite store (default: <home>/store.db)
    store: Path | None = None
    #: folder of pipeline YAML files listed by the API and the editor (default: <home>/pipelines)
    pipelines_dir: Path | None = None
    host: str = "127.0.0.1"
    #: the port the server listens on (when known, a port in the Host header must match it)
    port: int | None = None
    #: Host names the server answers besides the bind address (and loopback names on a
    #: loopback or wildcard bind); "*" answers any (behind a proxy that checks Host)
    allowed_hosts: list[str] = field(default_factory=list)
    #: "module:function" callables that submitted pipelines may name (call steps, python
    #: verifiers); none by default - YAML that arrives over HTTP is data, not code
    allow_calls: list[str] = field(default_factory=list)
    #: keys accepted in addition to those in the store (kept only as hashes in memory)
    api_keys: list[str] = field(default_factory=list)
    #: "auto" (required when binding beyond loopback or when --api-key is given), "on", "off"
    auth: str = "auto"
    #: default per-key request rate (requests per minute; None: unlimited)
    rate_per_min: float | None = 600.0
    max_body_bytes: int = 10 * 1024 * 1024
    #: origins allowed by CORS (empty: CORS off)
    cors_origins: list[str] = field(default_factory=list)
    #: the longest answer (tokens) one request may ask for; None: whatever the model's context
    #: holds.  A cheap guard against requests that keep the model busy for minutes.
    max_tokens: int | None = None
    #: the most alternatives per token the OpenAI routes return (None: what is asked, up to 20);
    #: a server that lists only its top few, as some hosted APIs do
    max_top_logprobs: int | None = None
    #: databases the SQL page may query, ``{name: URL}`` (``--sql-db NAME=URL``); a browser names
    #: one of these, never a URL of its own
    sql_dbs: dict[str, str] = field(default_factory=dict)
    #: ``module:function`` callables ``f(app, state)`` that add routes and pages when the app is
    #: built; None: every one installed in the entry-point group ``openautoglm.server_extensions``
    #: (the workbench's SQL and data pages, which live in a layer above the server's)
    extensions: list[str] | None = None
    micro_batching: bool = True
    batch_window_ms: float = 8.0
    max_batch: int = 32
    #: records per checkpoint in background runs (progress and cancel granularity)
    job_chunk_size: int = 8
    #: where background runs execute: "inprocess", or "ray" (a pool of Ray actors, each loading
    #: the model itself) with ``engine_options`` (address, workers, worker_cpus)
    engine: str = "inprocess"
    engine_options: dict[str, Any] = field(default_factory=dict)
    #: threads that may wait on the model at once (requests beyond wait in line)
    max_concurrency: int = 64
    trace: bool = True

    def resolved_home(self) -> Path:
        if self.home is not None:
            return Path(self.home)
        if self.store is not None:
            return Path(self.store).parent
        from ..store.sqlite import default_store_path

        return default_store_path().parent

    def host_policy(self) -> HostPolicy:
        """The Host names this server answers; a wildcard bind needs them listed."""
        if is_wildcard_bind(self.host) and not self.allowed_hosts:
            raise OpenAutoGLMError(
                f"serving on {self.host} (every interface) needs the names clients use to reach the server",
                hint="list them with --allowed-host NAME (repeatable), e.g. --allowed-host myserver.lan; "
                f"--allowed-host '{ANY_HOST}' accepts any name (only behind a proxy that checks Host)",
            )
        return HostPolicy.for_bind(self.host, self.port, self.allowed_hosts)

    def auth_required(self) -> bool:
        if self.auth not in ("auto", "on", "off"):
            raise ConfigError(f"auth must be auto, on or off, got {self.auth!r}", source="ServerConfig")
        if self.auth == "auto":
            return not is_loopback(self.host) or bool(self.api_keys)
        return self.auth == "on"


@dataclass
class ServerState:
    """Everything the routes share (one per app; no module-level state)."""

    config: ServerConfig
    backend: BatchingBackend
    model_name: str
    store: ServerStore
    keys: KeyStore
    auth: Authenticator
    guard: RequestGuard
    limiter: RateLimiter
    registry: PipelineRegistry
    jobs: JobManager
    metrics: Metrics
    service: OpenAIService
    started: float = field(default_factory=time.time)
    #: called first when the server stops (extensions and workbench jobs register theirs)
    on_close: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self.on_close):
            close()
        self.jobs.close()
        self.store.close()
        self.keys.close()
        self.backend.close()


def build_state(config: ServerConfig, backend: Backend | None = None) -> ServerState:
    from ..backends.registry import create_backend, resolve_model

    home = config.resolved_home()
    home.mkdir(parents=True, exist_ok=True)
    store_path = Path(config.store) if config.store else home / "store.db"
    keys = KeyStore(store_path)
    required = config.auth_required()
    if required and not config.api_keys and keys.active_count() == 0:
        keys.close()
        raise OpenAutoGLMError(
            f"API keys are required when serving on {config.host} (beyond loopback), but none exist in {store_path}",
            hint="create one with `openautoglm serve keys add NAME`, or pass --api-key; "
            "--auth off disables the check (only behind a trusted proxy)",
        )
    try:
        guard = RequestGuard(config.host_policy(), config.cors_origins)
        _check_allow_calls(config.allow_calls)
    except OpenAutoGLMError:
        keys.close()
        raise
    metrics = Metrics()
    model = resolve_model(config.model)
    inner = backend if backend is not None else create_backend(model)

    def on_batch(kind: str, size: int, seconds: float) -> None:
        metrics.inc("model_calls_total", labels={"kind": kind})
        metrics.observe("batch_size", size, {"kind": kind})
        metrics.observe("batch_duration_seconds", seconds, {"kind": kind})

    batcher = BatchingBackend(inner, window_ms=config.batch_window_ms, max_batch=config.max_batch,
                              enabled=config.micro_batching, on_batch=on_batch, max_tokens=config.max_tokens)
    store = ServerStore(store_path)
    registry = PipelineRegistry(config.pipelines_dir or home / "pipelines", batcher, allowed_calls=config.allow_calls)
    from ..core.engines import EngineConfig

    engine = EngineConfig(config.engine, dict(config.engine_options)) if config.engine != "inprocess" else None
    jobs = JobManager(store, registry, home, chunk_size=config.job_chunk_size, engine=engine,
                      model=backend if backend is not None else model)
    model_name = mask_text(model) if isinstance(model, str) else "local"
    service = OpenAIService(batcher, model_name, config.max_concurrency, streaming=True, max_tokens=config.max_tokens,
                            tracer=store.trace if config.trace else None, max_top_logprobs=config.max_top_logprobs)
    metrics.gauge("queue_depth", "Requests waiting for or inside the current backend call",
                  lambda: batcher.queue_depth)
    metrics.gauge("jobs_active", "Background runs queued or running", lambda: jobs.running)
    metrics.gauge("micro_batching_enabled", "1 when concurrent requests are batched", lambda: float(batcher.enabled))
    metrics.gauge("uptime_seconds", "Seconds since the server started", lambda: time.time() - state.started)
    state = ServerState(config=config, backend=batcher, model_name=model_name, store=store, keys=keys,
                        auth=Authenticator(required, config.api_keys, keys, config.rate_per_min), guard=guard,
                        limiter=RateLimiter(), registry=registry, jobs=jobs, metrics=metrics, service=service)
    return state


def _check_allow_calls(calls: list[str]) -> None:
    """Each ``--allow-call`` must name one function as ``module:function``."""
    for ref in calls:
        module, _, name = ref.partition(":")
        if not module or not name.isidentifier():
            raise ConfigError(f"--allow-call {ref!r} is not 'module:function'", source="openautoglm serve",
                              hint="e.g. --allow-call mypkg.routing:route")


class Gate:
    """ASGI middleware: Host and cross-site checks, API keys, per-key rate limits, request metrics."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path = scope.get("path", "")
        status_box = {"status": 500}

        async def tracking_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_box["status"] = message["status"]
            await send(message)

        refused = self._refuse(scope, path)
        try:
            if refused is not None:
                await refused(scope, receive, tracking_send)
            else:
                await self.app(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or ("/static" if path.startswith("/static/") else "(unmatched)")
            status = status_box["status"]
            labels = {"method": scope.get("method", ""), "route": template, "status": str(status)}
            m = self.state.metrics
            m.inc("http_requests_total", labels=labels)
            m.observe("http_request_duration_seconds", time.perf_counter() - t0, {"route": template})
            if status >= 400:
                m.inc("http_errors_total", labels={"route": template, "class": f"{status // 100}xx"})

    def _refuse(self, scope: dict[str, Any], path: str) -> Any:
        """A response to send instead of the app's, or None to let the request through."""
        refusal = self.state.guard.refusal(scope.get("method", ""), header_map(scope.get("headers") or []))
        if refusal is not None:
            status, code, message = refusal
            return APIError(status, message, code=code).response()
        auth = self.state.auth
        if not auth.required:
            return None
        if any(path == p.rstrip("/") or path.startswith(p) for p in PUBLIC_PREFIXES):
            return None
        key = _presented_key(scope)
        info = auth.check(key)
        if info is None:
            wants_html = scope.get("method") == "GET" and not path.startswith(("/api/", "/v1/", "/metrics"))
            if wants_html:
                from starlette.responses import RedirectResponse

                from urllib.parse import quote

                return RedirectResponse(f"/login?next={quote(path)}", status_code=303)
            message = "missing API key" if not key else "invalid or revoked API key"
            return APIError(401, f"{message}: send `Authorization: Bearer <key>`",
                            "authentication_error", "invalid_api_key").response()
        rate = auth.rate_for(info)
        if rate:
            ok, wait = self.state.limiter.allow(info.id, rate)
            if not ok:
                self.state.metrics.inc("rate_limited_total", labels={"key": info.id})
                resp = APIError(429, f"rate limit of {rate:g} requests/minute exceeded for key {info.prefix}…",
                                "rate_limit_error", "rate_limited").response()
                resp.headers["Retry-After"] = str(max(1, round(wait)))
                return resp
        return None


def _installed_extensions() -> list[str]:
    from importlib.metadata import entry_points

    return sorted(ep.value for ep in entry_points(group=EXTENSION_GROUP))


def _extension(ref: str) -> Any:
    """The ``install(app, state)`` callable named ``module:function`` (imported by name, as plug-ins are)."""
    from importlib import import_module

    module, _, name = ref.partition(":")
    try:
        return getattr(import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"server extension {ref!r} cannot be loaded: {exc}", source="ServerConfig.extensions",
                          hint="name an importable `module:function`") from None


def _presented_key(scope: dict[str, Any]) -> str | None:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
    bearer = headers.get("authorization", "")
    if bearer.lower().startswith("bearer "):
        return bearer[7:].strip()
    if headers.get("x-api-key"):
        return headers["x-api-key"].strip()
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "oag_key" and value:
            from urllib.parse import unquote

            return unquote(value)
    return None


def _install_app_errors(app: FastAPI) -> None:
    """Project errors become OpenAI-shaped JSON errors with the right status."""

    @app.exception_handler(OpenAutoGLMError)
    async def _project_error(_: Request, exc: OpenAutoGLMError) -> JSONResponse:
        status = 404 if isinstance(exc, (JobNotFound, PipelineNotFound)) else 400
        code = type(exc).__name__
        message = mask_text(exc.message + (f" (hint: {exc.hint})" if exc.hint else ""))
        body = {"error": {"message": message, "type": "invalid_request_error", "param": getattr(exc, "field", None),
                          "code": code, "line": getattr(exc, "line", None)}}
        return JSONResponse(body, status_code=status)


def create_app(config: ServerConfig | None = None, *, backend: Backend | None = None) -> FastAPI:
    """The server app.  ``backend`` overrides ``config.model`` (tests pass a fake one)."""
    from contextlib import asynccontextmanager

    from .task_api import build_router
    from .ui import Pages, build_ui_router
    from .workbench_routes import build_workbench_router

    config = config or ServerConfig()
    state = build_state(config, backend)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        state.close()

    from .. import __version__

    app = FastAPI(title="Open-AutoGLM server", version=__version__, lifespan=lifespan,
                  description="Task/pipeline API, OpenAI-compatible API for the served model, metrics and web UI.")
    app.state.server = state
    app.state.openai_service = state.service
    install_error_handlers(app)
    _install_app_errors(app)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return APIError(413, exc.detail, code="request_too_large").response()

    @app.get("/healthz", tags=["monitoring"])
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "model": state.model_name, "uptime_s": round(time.time() - state.started, 3),
                "queue_depth": state.backend.queue_depth, "micro_batching": state.backend.enabled}

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": state.model_name}

    @app.get("/metrics", tags=["monitoring"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    def on_usage(endpoint: str, usage: dict[str, int]) -> None:
        for kind in ("prompt", "completion"):
            value = usage.get(f"{kind}_tokens") or 0
            if value:
                state.metrics.inc("tokens_total", value, {"kind": kind, "endpoint": endpoint})

    add_openai_routes(app, state.service, on_usage)
    app.include_router(build_router(state, on_usage))
    pages = Pages(state)
    app.state.pages = pages
    app.include_router(build_workbench_router(state))
    app.include_router(build_ui_router(state, pages))
    for ref in config.extensions if config.extensions is not None else _installed_extensions():
        _extension(ref)(app, state)
    app.mount("/static", StaticFiles(directory=PACKAGE_DIR / "static"), name="static")

    app.add_middleware(Gate, state=state)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key"])
    app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes)
    return app

