"""The web UI: server-rendered Jinja2 pages plus small vanilla-JS files (no build, no CDN).

Pages: ``/`` pipeline editor (YAML with live validation, or a form; try it on a text),
``/builder`` (the same pipeline as a node graph, :mod:`.workbench_builder`), ``/runs``
(upload a file, start a run), ``/runs/{id}`` (progress, metrics, calibration, throughput and
latency, per-record results), ``/compare`` (runs side by side), ``/optimize`` (the prompt
optimizer as a background job), ``/monitor`` (traffic, latency, errors and accuracy over
time), ``/traces`` and ``/traces/{id}``.  Extensions (:mod:`openautoglm.workbench`: the SQL
and data pages) render through the same :class:`Pages` and add their links to its ``nav``.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from .guards import safe_redirect

if TYPE_CHECKING:
    from .app import ServerState

TEMPLATES = Path(__file__).resolve().parent / "templates"

DEFAULT_YAML = """name: sentiment
description: Is a review positive or negative?
task:
  name: sentiment
  template: "Review: {text}"
  labels: [positive, negative]
"""

#: the navigation bar: (path, title); extensions append theirs (before "API")
NAV = [("/", "Editor"), ("/builder", "Builder"), ("/runs", "Runs"), ("/compare", "Compare"),
       ("/optimize", "Optimize"), ("/monitor", "Monitor"), ("/traces", "Traces")]


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


class Pages:
    """Renders the UI's templates (autoescaped) with what every page shows: model, nav, path."""

    def __init__(self, state: "ServerState") -> None:
        self.state = state
        self.nav: list[tuple[str, str]] = list(NAV)
        self.env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))
        self.env.filters["when"] = _when
        self.env.filters["pretty"] = _pretty

    def render(self, name: str, request: Request, status_code: int = 200, **context: Any) -> HTMLResponse:
        path = request.url.path
        active = next((href for href, _ in sorted(self.nav, key=lambda n: -len(n[0]))
                       if path == href or (href != "/" and path.startswith(href + "/"))), None)
        html = self.env.get_template(name).render(model=self.state.model_name, path=path, nav=self.nav,
                                                  active=active, auth_required=self.state.auth.required, **context)
        return HTMLResponse(html, status_code=status_code)

    def message(self, request: Request, title: str, message: str, status_code: int = 404) -> HTMLResponse:
        return self.render("message.html", request, status_code, title=title, message=message)


def build_ui_router(state: "ServerState", pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    page = pages.render

    @router.get("/")
    async def editor(request: Request) -> HTMLResponse:
        return page("editor.html", request, pipelines=state.registry.list(), default_yaml=DEFAULT_YAML)

    @router.get("/builder")
    async def builder(request: Request) -> HTMLResponse:
        return page("builder.html", request, pipelines=state.registry.list(), default_yaml=DEFAULT_YAML)

    @router.get("/runs")
    async def runs(request: Request) -> HTMLResponse:
        return page("runs.html", request, runs=state.jobs.list(100), pipelines=state.registry.list())

    @router.get("/runs/{run_id}")
    async def run_detail(request: Request, run_id: str) -> HTMLResponse:
        from .jobs import JobNotFound

        try:
            run = state.jobs.get(run_id)
        except JobNotFound as exc:
            return pages.message(request, "Run not found", exc.message)
        return page("run.html", request, run=run)

    @router.get("/compare")
    async def compare(request: Request) -> HTMLResponse:
        return page("compare.html", request, runs=state.jobs.list(200))

    @router.get("/optimize")
    async def optimize(request: Request) -> HTMLResponse:
        return page("optimize.html", request, pipelines=state.registry.list())

    @router.get("/monitor")
    async def monitor(request: Request) -> HTMLResponse:
        return page("monitor.html", request)

    @router.get("/traces")
    async def traces(request: Request, q: str = Query("", max_length=500), run_id: str = Query("", max_length=64),
                     errors: bool = False) -> HTMLResponse:
        rows = state.store.traces(q or None, run_id or None, 100, errors)
        return page("traces.html", request, traces=rows, q=q, run_id=run_id, errors=errors)

    @router.get("/traces/{call_id}")
    async def trace(request: Request, call_id: int) -> HTMLResponse:
        row = state.store.get_trace(call_id)
        if row is None:
            return pages.message(request, "Trace not found", f"No model call with id {call_id} in the store.")
        return page("trace.html", request, t=row)

    @router.get("/login")
    async def login(request: Request, next: str = Query("/", max_length=500)) -> HTMLResponse:
        return page("login.html", request, next=safe_redirect(next))

    return router
