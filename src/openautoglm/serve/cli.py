"""``openautoglm serve``: run the server; ``openautoglm serve keys add|list|revoke``: API keys.

Imports only typer at module level; the server loads on use.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def _key_store(store: Optional[Path]):  # type: ignore[no-untyped-def]
    from ..store.sqlite import default_store_path
    from .security import KeyStore

    return KeyStore(store or default_store_path())


def parse_sql_dbs(values: List[str]) -> dict[str, str]:
    """``["shop=sqlite:///shop.db"]`` as ``{"shop": "sqlite:///shop.db"}`` (names checked, each once)."""
    import re

    from ..errors import ConfigError

    out: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not url or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", name):
            raise ConfigError(f"--sql-db {value.split('=')[0]!r}=... is not NAME=URL", source="openautoglm serve",
                              hint="e.g. --sql-db shop=sqlite:///data/shop.db (NAME: letters, digits, '_', '-')")
        if name in out:
            raise ConfigError(f"--sql-db {name} is given twice", source="openautoglm serve")
        out[name] = url
    return out


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command group to the main app."""
    serve_app = typer.Typer(help="Run the server (task API, OpenAI-compatible API, metrics, web UI); manage API keys.",
                            no_args_is_help=False, add_completion=False)
    keys_app = typer.Typer(help="API keys (stored hashed in the project store).", no_args_is_help=True)
    serve_app.add_typer(keys_app, name="keys")

    @serve_app.callback(invoke_without_command=True)
    def serve(
        ctx: typer.Context,
        host: str = typer.Option("127.0.0.1", help="interface to bind; beyond loopback, API keys are required"),
        port: int = typer.Option(8000, help="TCP port"),
        model: Optional[str] = typer.Option(None, "--model", "-m",
                                            help="model to serve (e.g. local, fake, openai:...; default: "
                                                 "$OPENAUTOGLM_MODEL, else local)"),
        store: Optional[Path] = typer.Option(None, help="SQLite store (default ./.openautoglm/store.db)"),
        pipelines: Optional[Path] = typer.Option(None, help="folder of pipeline YAML files (default <store dir>/pipelines)"),
        api_key: List[str] = typer.Option([], "--api-key", envvar="OPENAUTOGLM_API_KEY",
                                          help="accept this key (repeatable); also turns key checks on"),
        auth: str = typer.Option("auto", help="auto (keys required beyond loopback or with --api-key), on, off"),
        rate_limit: float = typer.Option(600.0, help="requests per minute per API key (0: unlimited)"),
        max_body_mb: float = typer.Option(10.0, help="largest request body in MiB"),
        max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1,
                                                 help="longest answer one request may ask for (tokens; default: "
                                                      "what the model's context holds)"),
        max_top_logprobs: Optional[int] = typer.Option(
            None, "--max-top-logprobs", min=0, envvar="OPENAUTOGLM_MAX_TOP_LOGPROBS",
            help="return at most this many alternatives per token from the OpenAI routes (default: what is "
                 "asked, up to 20), as an endpoint that lists only its top few does"),
        cors_origin: List[str] = typer.Option([], "--cors-origin", help="allow this browser origin (CORS is off by default)"),
        allow_call: List[str] = typer.Option(
            [], "--allow-call", metavar="MODULE:FUNCTION",
            help="let submitted pipelines run this Python callable in `call:` steps and `python` verifiers "
                 "(repeatable; default none: YAML sent to the server cannot run code)"),
        allowed_host: List[str] = typer.Option(
            [], "--allowed-host", metavar="NAME",
            help="also answer requests whose Host header names NAME (repeatable); requests for other names "
                 "are refused (DNS rebinding).  Loopback binds answer localhost/127.0.0.1/[::1]; a 0.0.0.0 "
                 "bind needs the names clients use; '*' answers any name (only behind a proxy that checks Host)"),
        sql_db: List[str] = typer.Option(
            [], "--sql-db", metavar="NAME=URL",
            help="a database the web UI's SQL page may query, read-only (repeatable), e.g. "
                 "shop=sqlite:///shop.db; the browser picks a NAME, never sends a URL"),
        no_batching: bool = typer.Option(False, "--no-batching", help="turn micro-batching of concurrent requests off"),
        batch_window_ms: float = typer.Option(8.0, help="how long the first request waits for others to batch with"),
        max_batch: int = typer.Option(32, help="most requests per batched model call"),
        log_level: str = typer.Option("info", help="uvicorn log level"),
        engine: str = typer.Option("inprocess", "--engine",
                                   help="where background runs execute: inprocess, or ray (a pool of Ray actors, "
                                        "each loading the model; pip install 'openautoglm[ray]')"),
        address: Optional[str] = typer.Option(None, "--address",
                                              help="--engine ray: auto, HOST:6379 or ray://HOST:10001 (default: a "
                                                   "local Ray instance per run)"),
        workers: Optional[int] = typer.Option(None, "--workers", min=1, help="--engine ray: actors per run"),
        worker_cpus: Optional[float] = typer.Option(None, "--worker-cpus", min=0.01,
                                                    help="--engine ray: CPUs per actor"),
    ) -> None:
        """Serve the task API, the OpenAI-compatible API, /metrics and the web UI."""
        if ctx.invoked_subcommand is not None:
            return
        import uvicorn

        from ..core.engines import check_engine
        from .app import ServerConfig, create_app

        config = ServerConfig(
            sql_dbs=parse_sql_dbs(sql_db),
            model=model, store=store, pipelines_dir=pipelines, host=host, port=port, allowed_hosts=list(allowed_host),
            allow_calls=list(allow_call), api_keys=list(api_key), auth=auth,
            rate_per_min=rate_limit or None, max_body_bytes=int(max_body_mb * 1024 * 1024), max_tokens=max_tokens,
            max_top_logprobs=max_top_logprobs,
            cors_origins=list(cors_origin), micro_batching=not no_batching, batch_window_ms=batch_window_ms,
            max_batch=max_batch, engine=check_engine(engine),
            engine_options={k: v for k, v in {"address": address, "workers": workers,
                                              "worker_cpus": worker_cpus}.items() if v is not None},
        )
        application = create_app(config)
        state = application.state.server
        typer.echo(f"serving {state.model_name} on http://{host}:{port}/  (UI /, API /docs, OpenAI /v1, metrics /metrics;"
                   f" API keys {'required' if state.auth.required else 'off'};"
                   f" micro-batching {'on' if config.micro_batching else 'off'};"
                   f" callables allowed in pipelines: {', '.join(config.allow_calls) or 'none'};"
                   f" SQL databases: {', '.join(config.sql_dbs) or 'none'})", err=True)
        # access logs hold method, path and status only: no headers, so no keys
        uvicorn.run(application, host=host, port=port, log_level=log_level)

    @keys_app.command("add")
    def keys_add(
        name: str = typer.Argument(..., help="who or what uses the key"),
        rate_limit: Optional[float] = typer.Option(None, help="requests per minute for this key (default: server's)"),
        store: Optional[Path] = typer.Option(None, help="SQLite store (default ./.openautoglm/store.db)"),
    ) -> None:
        """Create a key; it is printed once and stored only as a hash."""
        keys = _key_store(store)
        try:
            key, info = keys.add(name, rate_limit)
        finally:
            keys.close()
        typer.echo(key)
        typer.echo(f"created key {info.id} ({info.name}); store it now, it cannot be shown again", err=True)

    @keys_app.command("list")
    def keys_list(store: Optional[Path] = typer.Option(None, help="SQLite store")) -> None:
        """List keys (prefix, name, rate limit, state); never the keys themselves."""
        import datetime as dt

        keys = _key_store(store)
        try:
            rows = keys.list()
        finally:
            keys.close()
        if not rows:
            typer.echo("no API keys; create one with `openautoglm serve keys add NAME`")
        for k in rows:
            when = dt.datetime.fromtimestamp(k.created).strftime("%Y-%m-%d %H:%M")
            state = "revoked" if k.revoked else "active"
            rate = f"{k.rate_per_min:g}/min" if k.rate_per_min else "default rate"
            typer.echo(f"{k.id}  {k.prefix}…  {k.name:<20} {rate:<14} {state:<8} created {when}")

    @keys_app.command("revoke")
    def keys_revoke(
        key_id: str = typer.Argument(..., help="key id or name (from `keys list`)"),
        store: Optional[Path] = typer.Option(None, help="SQLite store"),
    ) -> None:
        """Revoke a key by id or name."""
        from ..errors import OpenAutoGLMError

        keys = _key_store(store)
        try:
            n = keys.revoke(key_id)
        finally:
            keys.close()
        if not n:
            raise OpenAutoGLMError(f"no active key with id or name {key_id!r}",
                                   hint="`openautoglm serve keys list` shows the keys")
        typer.echo(f"revoked {n} key(s)")

    app.add_typer(serve_app, name="serve")
