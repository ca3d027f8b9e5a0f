"""The web UI: server-rendered Jinja2 pages plus one small vanilla-JS file (no build, no CDN).

Pages: ``/`` pipeline editor (YAML with live validation, or a form; try it on a text),
``/runs`` (upload a file, start a run), ``/runs/{id}`` (progress, metrics, calibration,
throughput and latency, per-record results), ``/traces`` and ``/traces/{id}``.
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


def _when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def build_ui_router(state: "ServerState") -> APIRouter:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))
    env.filters["when"] = _when
    env.filters["pretty"] = _pretty
    router = APIRouter(include_in_schema=False)

    def page(name: str, request: Request, **context: Any) -> HTMLResponse:
        html = env.get_template(name).render(model=state.model_name, path=request.url.path,
                                             auth_required=state.auth.required, **context)
        return HTMLResponse(html)

    @router.get("/")
    async def editor(request: Request) -> HTMLResponse:
        return page("editor.html", request, pipelines=state.registry.list(), default_yaml=DEFAULT_YAML)

    @router.get("/runs")
    async def runs(request: Request) -> HTMLResponse:
        return page("runs.html", request, runs=state.jobs.list(100), pipelines=state.registry.list())

    @router.get("/runs/{run_id}")
    async def run_detail(request: Request, run_id: str) -> HTMLResponse:
        from .jobs import JobNotFound

        try:
            run = state.jobs.get(run_id)
        except JobNotFound as exc:
            response = page("message.html", request, title="Run not found", message=exc.message)
            response.status_code = 404
            return response
        return page("run.html", request, run=run)

    @router.get("/traces")
    async def traces(request: Request, q: str = Query("", max_length=500), run_id: str = Query("", max_length=64),
                     errors: bool = False) -> HTMLResponse:
        rows = state.store.traces(q or None, run_id or None, 100, errors)
        return page("traces.html", request, traces=rows, q=q, run_id=run_id, errors=errors)

    @router.get("/traces/{call_id}")
    async def trace(request: Request, call_id: int) -> HTMLResponse:
        row = state.store.get_trace(call_id)
        if row is None:
            response = page("message.html", request, title="Trace not found",
                            message=f"No model call with id {call_id} in the store.")
            response.status_code = 404
            return response
        return page("trace.html", request, t=row)

    @router.get("/login")
    async def login(request: Request, next: str = Query("/", max_length=500)) -> HTMLResponse:
        return page("login.html", request, next=safe_redirect(next))

    return router
