"""The task/pipeline API under ``/api``: validate and try pipelines, run one record, start,
watch, cancel and download background runs, read traces, list models.
"""

from __future__ import annotations

import csv
import io
import json
import time
from typing import TYPE_CHECKING, Any, Callable, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, File, Path, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import InputDataError, TemplateError
from . import reports
from .openai_api import APIError
from .pipelines import final_labels, missing_inputs, task_yaml
from ..redact import mask_secrets
from .validation import require_valid_unicode

if TYPE_CHECKING:
    from .app import ServerState

MAX_YAML = 200_000
MAX_TEXT = 100_000
SQLITE_MAX_INT = 2**63 - 1  # larger ids cannot exist (and SQLite cannot bind them)


EXAMPLE_YAML = """name: sentiment
task:
  name: sentiment
  template: "Review: {text}"
  labels: [positive, negative]
"""
EXAMPLE_INPUTS = {"text": "A wonderful film with a great story."}


class _Strict(BaseModel):
    """Request bodies of the task API: unknown fields and invalid text are refused (400)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, data: Any) -> Any:
        return require_valid_unicode(data)


class ValidateRequest(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"yaml": EXAMPLE_YAML}]})

    yaml: str = Field(max_length=MAX_YAML, description="pipeline YAML text")


class FormTask(_Strict):
    name: str = Field(default="task", max_length=64)
    labels: list[str] = Field(min_length=2, max_length=200)
    instruction: str = Field(default="Classify the text.", max_length=MAX_TEXT)
    model: str | None = Field(default=None, max_length=200)
    input_field: str = Field(default="text", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class TryRequest(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"yaml": EXAMPLE_YAML, "inputs": EXAMPLE_INPUTS}]})

    yaml: str = Field(max_length=MAX_YAML, description="pipeline YAML text")
    inputs: dict[str, Any] = Field(description="the record, e.g. {\"text\": \"...\"}")


class RunOneRequest(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"inputs": EXAMPLE_INPUTS}]})

    inputs: dict[str, Any]


class SaveRequest(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"yaml": EXAMPLE_YAML}]})

    yaml: str = Field(max_length=MAX_YAML)


class StartRunRequest(_Strict):
    upload_id: str = Field(max_length=64)
    pipeline: str | None = Field(default=None, max_length=64, description="name of a saved pipeline")
    yaml: str | None = Field(default=None, max_length=MAX_YAML, description="or the pipeline YAML itself")
    columns: dict[str, str] = Field(default_factory=dict, description="pipeline input -> upload column")
    label_column: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=64)
    limit: int | None = Field(default=None, ge=1)


def _json_default(value: Any) -> Any:
    return str(value)


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (objects a ``call:`` step returned become strings)."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=_json_default))


def build_router(state: "ServerState", on_usage: Callable[[str, dict[str, int]], None]) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["tasks"])
    limiter = anyio.CapacityLimiter(state.config.max_concurrency)

    async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)

    def run_one(text: str, inputs: dict[str, Any], source: str, want_prompts: bool) -> dict[str, Any]:
        pipe = state.registry.pipeline(text, source)
        missing = missing_inputs(pipe, inputs)
        if missing:
            raise InputDataError(f"the record lacks {', '.join(repr(m) for m in missing)}",
                                 hint=f"send inputs with {', '.join(sorted(pipe.required_inputs))}")
        t0 = time.perf_counter()
        outs, calls, _ = pipe.process([inputs], ["0"])
        seconds = time.perf_counter() - t0
        if state.config.trace:
            state.store.trace(calls)
        usage = {"prompt_tokens": sum(c.prompt_tokens for c in calls if not c.cached),
                 "completion_tokens": sum(c.completion_tokens for c in calls if not c.cached)}
        on_usage("task", usage)
        result = outs[0]
        state.jobs.events.add(pipe.config.name, "try" if want_prompts else "request",
                              [(seconds * 1000, isinstance(result, Exception), None)])
        if isinstance(result, TemplateError):  # the submitted template, not the model, failed
            raise APIError(422, result.message, param="template", code="template_error")
        body: dict[str, Any] = {"pipeline": pipe.config.name, "latency_ms": seconds * 1000, "usage": usage}
        if isinstance(result, Exception):
            body["error"] = mask_secrets(str(result))
        else:
            body["result"] = _jsonable(result)
        if want_prompts:
            body["calls"] = [_call_view(state, c) for c in calls]
        return body

    # -- pipelines ------------------------------------------------------------------------
    @router.get("/pipelines")
    async def list_pipelines() -> dict[str, Any]:
        return {"directory": str(state.registry.directory), "pipelines": await in_thread(state.registry.list)}

    @router.get("/pipelines/{name}")
    async def get_pipeline(name: str) -> dict[str, Any]:
        text = state.registry.read(name)
        return {"name": name, "yaml": text, "problems": await in_thread(state.registry.problems, text, f"{name}.yaml")}

    @router.put("/pipelines/{name}")
    async def save_pipeline(name: str, req: SaveRequest) -> dict[str, Any]:
        path = await in_thread(state.registry.save, name, req.yaml)
        return {"name": name, "path": str(path), "saved": True}

    @router.post("/pipelines/{name}/run")
    async def run_pipeline(name: str, req: RunOneRequest) -> dict[str, Any]:
        text = state.registry.read(name)
        return await in_thread(run_one, text, req.inputs, f"{name}.yaml", False)

    @router.post("/validate")
    async def validate(req: ValidateRequest) -> dict[str, Any]:
        return await in_thread(_validation, state, req.yaml)

    @router.post("/task-yaml")
    async def form_to_yaml(req: FormTask) -> dict[str, Any]:
        text = task_yaml(req.name, req.labels, req.instruction, req.model, req.input_field)
        return {"yaml": text, "problems": await in_thread(state.registry.problems, text)}

    @router.post("/try")
    async def try_pipeline(req: TryRequest) -> dict[str, Any]:
        found = await in_thread(state.registry.problems, req.yaml)
        if found:
            first = found[0]
            raise APIError(422, f"line {first['line']}: {first['message']}" if first["line"] else first["message"],
                           param=first["field"], code="invalid_pipeline")
        return await in_thread(run_one, req.yaml, req.inputs, "pipeline.yaml", True)

    # -- uploads and runs -------------------------------------------------------------------
    @router.post("/uploads")
    async def upload(file: UploadFile = File(..., description="a .csv, .tsv, .jsonl or .json file")) -> dict[str, Any]:
        data = await file.read()
        return await in_thread(state.jobs.upload, file.filename or "", data)

    @router.post("/runs")
    async def start_run(req: StartRunRequest) -> dict[str, Any]:
        if (req.pipeline is None) == (req.yaml is None):
            raise APIError(400, "give either `pipeline` (a saved name) or `yaml`", param="pipeline")
        text = req.yaml if req.yaml is not None else state.registry.read(req.pipeline or "")
        return await in_thread(lambda: state.jobs.start(req.upload_id, text, name=req.name or req.pipeline,
                                                        column_map=req.columns, label_column=req.label_column,
                                                        limit=req.limit))

    @router.get("/runs")
    async def list_runs(limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
        return {"runs": await in_thread(state.jobs.list, limit)}

    @router.get("/runs/{run_id}")
    async def get_run(run_id: str) -> dict[str, Any]:
        return await in_thread(state.jobs.get, run_id)

    @router.post("/runs/{run_id}/cancel")
    async def cancel_run(run_id: str) -> dict[str, Any]:
        return await in_thread(state.jobs.cancel, run_id)

    @router.post("/runs/{run_id}/resume")
    async def resume_run(run_id: str) -> dict[str, Any]:
        return await in_thread(state.jobs.resume, run_id)

    @router.get("/runs/{run_id}/report")
    async def run_report(run_id: str) -> dict[str, Any]:
        return await in_thread(_report, state, run_id)

    @router.get("/runs/{run_id}/records")
    async def run_records(
        run_id: str,
        filter: Literal["all", "wrong", "low", "errors", "right"] = "all",
        threshold: float = Query(reports.LOW_CONFIDENCE, ge=0.0, le=1.0),
        offset: int = Query(0, ge=0, le=SQLITE_MAX_INT),
        limit: int = Query(100, ge=1, le=10_000),
    ) -> dict[str, Any]:
        preds = await in_thread(_predictions, state, run_id)
        chosen = reports.filter_predictions(preds, filter, threshold)
        return {"total": len(chosen), "records": chosen[offset : offset + limit]}

    @router.get("/runs/{run_id}/results")
    async def run_results(run_id: str, format: Literal["jsonl", "csv"] = "jsonl") -> Response:
        rows = await in_thread(_result_rows, state, run_id)
        name = f"{run_id}.{format}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        if format == "jsonl":
            body = "".join(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in rows)
            return Response(body, media_type="application/x-ndjson", headers=headers)
        return Response(_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)

    # -- traces and models ------------------------------------------------------------------
    @router.get("/traces")
    async def traces(
        q: str | None = Query(None, max_length=500, description="full-text search in prompts and responses"),
        run_id: str | None = Query(None, max_length=64),
        errors: bool = False,
        limit: int = Query(50, ge=1, le=1000),
    ) -> dict[str, Any]:
        return {"traces": await in_thread(lambda: state.store.traces(q, run_id, limit, errors))}

    @router.get("/traces/{call_id}")
    async def trace(call_id: int = Path(..., ge=1, le=SQLITE_MAX_INT)) -> dict[str, Any]:
        row = await in_thread(state.store.get_trace, call_id)
        if row is None:
            raise APIError(404, f"no trace {call_id}", code="not_found")
        return row

    @router.get("/models")
    async def models() -> dict[str, Any]:
        from ..backends.registry import list_models

        available = await in_thread(list_models)
        return {"served": mask_secrets({"id": state.model_name, **state.backend.describe()}), "available": available}

    return router


def _validation(state: "ServerState", text: str) -> dict[str, Any]:
    """``POST /api/validate``: problems (schema and references), or the pipeline's shape."""
    found = state.registry.problems(text)
    info: dict[str, Any] = {"valid": not found, "problems": found}
    if not found:
        config = state.registry.config(text)
        pipe = state.registry.pipeline(text)
        info.update(name=config.name, steps=[s.name for s in config.steps], inputs=sorted(pipe.required_inputs),
                    labels=final_labels(config))
    return info


def _call_view(state: "ServerState", call: Any) -> dict[str, Any]:
    """A traced call as the editor shows it, with the exact text the model saw when known
    (parameters and errors with secrets masked)."""
    view = {"kind": call.kind, "step": call.step, "prompt": call.prompt, "response": call.response,
            "params": mask_secrets(call.params), "prompt_tokens": call.prompt_tokens,
            "completion_tokens": call.completion_tokens, "latency_ms": call.latency_s * 1000,
            "error": mask_secrets(call.error)}
    tokenizer = getattr(state.backend.inner, "tokenizer", None)
    render = getattr(tokenizer, "render", None)
    if callable(render):
        try:
            view["rendered"] = render(call.prompt)
        except Exception:  # noqa: BLE001 - best effort: the messages are shown anyway
            pass
    elif isinstance(call.prompt, str):
        view["rendered"] = call.prompt
    return view


def _job_context(state: "ServerState", run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[str], list[str]]:
    job = state.jobs.job_row(run_id)
    inputs = state.jobs.inputs(run_id)
    config = state.registry.config(job["pipeline"], job["name"] or "pipeline.yaml")
    pipe = state.registry.pipeline(job["pipeline"], job["name"] or "pipeline.yaml")
    column_map = json.loads(job["column_map"] or "{}")
    fields = [column_map.get(f, f) for f in sorted(pipe.required_inputs)]
    return job, inputs, fields, final_labels(config)


def _predictions(state: "ServerState", run_id: str) -> list[dict[str, Any]]:
    job, inputs, fields, _ = _job_context(state, run_id)
    return reports.predictions(inputs, state.store.run_records(run_id), job["label_column"], fields)


def _report(state: "ServerState", run_id: str) -> dict[str, Any]:
    job, inputs, fields, labels = _job_context(state, run_id)
    preds = reports.predictions(inputs, state.store.run_records(run_id), job["label_column"], fields)
    return {
        "run": state.jobs.get(run_id),
        "labels": labels,
        "quality": reports.quality(preds, labels),
        "timing": reports.timing(state.jobs.chunks(run_id), job["started"]),
        "counts": {
            "records": len(preds),
            "wrong": sum(1 for p in preds if p["correct"] is False),
            "low_confidence": sum(1 for p in preds if p["confidence"] is not None
                                  and p["confidence"] < reports.LOW_CONFIDENCE),
            "errors": sum(1 for p in preds if p["error"]),
        },
    }


def _result_rows(state: "ServerState", run_id: str) -> list[dict[str, Any]]:
    state.jobs.job_row(run_id)  # 404 for unknown runs
    inputs = state.jobs.inputs(run_id)
    rows = []
    for rec in state.store.run_records(run_id):
        row: dict[str, Any] = {"idx": rec["idx"], "input": inputs[rec["idx"]] if rec["idx"] < len(inputs) else None}
        if rec["status"] == "done":
            row["output"] = rec["output"]
        else:
            row["error"] = rec["error"]
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    """Flat CSV: input columns, then label/confidence/scores (or the output as JSON), then error."""
    in_cols = list(dict.fromkeys(k for r in rows for k in (r.get("input") or {})))
    score_cols = list(dict.fromkeys(k for r in rows for k in ((r.get("output") or {}).get("scores") or {})))
    header = ["idx", *in_cols, "predicted", "confidence", *[f"p({c})" for c in score_cols], "output", "error"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for r in rows:
        out = r.get("output") or {}
        scores = out.get("scores") or {}
        rest = {k: v for k, v in out.items() if k not in ("label", "confidence", "scores")}
        writer.writerow([r["idx"], *[(r.get("input") or {}).get(c, "") for c in in_cols], out.get("label", ""),
                         out.get("confidence", ""), *[scores.get(c, "") for c in score_cols],
                         json.dumps(rest, ensure_ascii=False, default=_json_default) if rest else "",
                         r.get("error") or ""])
    return buf.getvalue()

