"""The workbench's API under ``/api``: the pipeline builder's YAML ⇄ graph conversion, run
comparison, the optimizer as a background job, and monitoring over time.

Every route goes through the app's gate (Host, same-origin for POST, API keys); request bodies
are strict (unknown fields and lone surrogates refused).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import ConfigError
from . import workbench_builder as builder
from .openai_api import APIError
from .pipelines import NAME_RE
from .task_api import MAX_YAML, EXAMPLE_YAML
from .validation import require_valid_unicode
from .workbench_compare import compare, records
from .workbench_optimize import OptimizerJobs

if TYPE_CHECKING:
    from .app import ServerState

ID = r"^[A-Za-z0-9_-]{1,64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, data: Any) -> Any:
        return require_valid_unicode(data)


class YamlBody(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"yaml": EXAMPLE_YAML}]})

    yaml: str = Field(max_length=MAX_YAML, description="pipeline YAML text")


class GraphBody(_Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"graph": {
        "pipeline": {"name": "sentiment"},
        "steps": [{"name": "sentiment", "template": "Review: {text}", "labels": ["positive", "negative"]}]}}]})

    graph: builder.BuilderGraph


class OptimizeBody(_Strict):
    train_upload: str = Field(pattern=ID, description="upload id of the labelled train file")
    dev_upload: str | None = Field(default=None, pattern=ID,
                                   description="upload id of the dev file (default: half of the train file)")
    pipeline: str | None = Field(default=None, max_length=64, description="a saved pipeline's name")
    yaml: str | None = Field(default=None, max_length=MAX_YAML, description="or the pipeline YAML itself")
    label_column: str = Field(default="label", max_length=200)
    columns: dict[str, str] = Field(default_factory=dict, max_length=100, description="input -> column")
    budget: int = Field(default=300, ge=10, le=100_000, description="model calls the search may spend")
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    holdout: float = Field(default=0.3, ge=0.0, le=0.9)
    retrieval: bool = False
    max_demos: int = Field(default=4, ge=0, le=32)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class SaveBody(_Strict):
    name: str = Field(pattern=NAME_RE.pattern)


def build_workbench_router(state: "ServerState") -> APIRouter:
    router = APIRouter(prefix="/api", tags=["workbench"])
    limiter = anyio.CapacityLimiter(state.config.max_concurrency)
    optimizer = OptimizerJobs(state)
    state.on_close.append(optimizer.close)

    async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)

    # -- builder ---------------------------------------------------------------------------
    @router.get("/builder/options")
    async def builder_options() -> dict[str, Any]:
        """What the builder offers: allowed callables, strategies, saved pipelines (sub-pipelines)."""
        from ..core.strategy import STRATEGIES

        saved = await in_thread(state.registry.list)
        return {"calls": list(state.config.allow_calls), "strategies": STRATEGIES.names(),
                "pipelines": [f"{p['name']}.yaml" for p in saved], "model": state.model_name}

    def to_graph(text: str) -> dict[str, Any]:
        try:
            graph = builder.yaml_to_graph(text)
        except builder.YamlSyntaxError as exc:
            return {"ok": False, "syntax_error": {"line": exc.line, "message": exc.message}}
        problems = builder.problem_steps(state.registry.problems(text), graph)
        return {"ok": True, "graph": graph, "problems": problems, "inputs": _inputs(text, problems)}

    def to_yaml(graph: builder.BuilderGraph) -> dict[str, Any]:
        try:
            text = builder.graph_to_yaml(graph)
        except ConfigError as exc:
            names = [s.name for s in graph.steps]
            step = (exc.field or "").split(".")[1] if (exc.field or "").startswith("steps.") else None
            return {"yaml": None, "problems": [{"line": None, "field": exc.field, "message": exc.message.split(": ", 1)[-1],
                                                "hint": exc.hint, "step": names.index(step) if step in names else None}]}
        shaped = builder.yaml_to_graph(text)
        problems = builder.problem_steps(state.registry.problems(text), shaped)
        return {"yaml": text, "problems": problems, "inputs": _inputs(text, problems),
                "steps": [{"name": s["name"], "line": s["line"]} for s in shaped["steps"]]}

    def _inputs(text: str, problems: list[dict[str, Any]]) -> list[str]:
        """The record fields a valid pipeline reads (``[]`` while it has problems)."""
        return [] if problems else sorted(state.registry.pipeline(text).required_inputs)

    @router.post("/builder/graph")
    async def yaml_to_graph(req: YamlBody) -> dict[str, Any]:
        """YAML → the builder's graph (``ok: false`` with the line when the YAML cannot be read)."""
        return await in_thread(to_graph, req.yaml)

    @router.post("/builder/yaml")
    async def graph_to_yaml(req: GraphBody) -> dict[str, Any]:
        """The builder's graph → YAML, with validation problems pointing at nodes (``step``)."""
        return await in_thread(to_yaml, req.graph)

    # -- run comparison ----------------------------------------------------------------------
    @router.get("/compare")
    async def compare_runs(runs: list[str] = Query(..., min_length=1, max_length=8),
                           seed: int = Query(0, ge=0, le=2**31 - 1),
                           draws: int = Query(1000, ge=200, le=10_000)) -> dict[str, Any]:
        """Per-run metrics, latency and cost; deltas against the first run with bootstrap 95 % intervals."""
        return await in_thread(lambda: compare(state, _ids(runs), seed=seed, draws=draws))

    @router.get("/compare/records")
    async def compare_records(runs: list[str] = Query(..., min_length=1, max_length=8),
                              filter: Literal["disagree", "all", "improved", "regressed", "errors"] = "disagree",
                              gold: str | None = Query(None, max_length=200), q: str | None = Query(None, max_length=500),
                              offset: int = Query(0, ge=0, le=10_000_000),
                              limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
        """Records side by side: each run's answer, confidence, error, prompts and responses."""
        return await in_thread(lambda: records(state, _ids(runs), filter=filter, gold=gold, q=q, offset=offset,
                                               limit=limit))

    # -- optimizer --------------------------------------------------------------------------
    @router.post("/optimize")
    async def start_optimize(req: OptimizeBody) -> dict[str, Any]:
        """Start a search on an uploaded train (and dev) file; answers at once with the job."""
        if (req.pipeline is None) == (req.yaml is None):
            raise APIError(400, "give either `pipeline` (a saved name) or `yaml`", param="pipeline")
        text = req.yaml if req.yaml is not None else state.registry.read(req.pipeline or "")
        return await in_thread(lambda: optimizer.start(
            text, req.train_upload, req.dev_upload, name=req.pipeline, label_column=req.label_column,
            columns=req.columns, budget=req.budget, metric=req.metric, holdout=req.holdout,
            retrieval=req.retrieval, max_demos=req.max_demos, seed=req.seed))

    @router.get("/optimize")
    async def list_optimize(limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
        return {"jobs": await in_thread(optimizer.list, limit)}

    @router.get("/optimize/{opt_id}")
    async def get_optimize(opt_id: str) -> dict[str, Any]:
        """Status, stages, candidates (score, rows), calls, budget left, log, chosen pipeline."""
        return await in_thread(optimizer.view, opt_id)

    @router.post("/optimize/{opt_id}/stop")
    async def stop_optimize(opt_id: str) -> dict[str, Any]:
        return await in_thread(optimizer.stop, opt_id)

    @router.post("/optimize/{opt_id}/save")
    async def save_optimize(opt_id: str, req: SaveBody) -> dict[str, Any]:
        """Save the chosen pipeline into the pipelines folder."""
        return await in_thread(optimizer.save, opt_id, req.name)

    @router.post("/optimize/{opt_id}/compare")
    async def compare_optimize(opt_id: str) -> dict[str, Any]:
        """Run the base and the chosen pipeline over the dev file, for the comparison page."""
        return await in_thread(optimizer.compare, opt_id)

    # -- monitoring --------------------------------------------------------------------------
    @router.get("/monitor", tags=["monitoring"])
    async def monitor(window: Literal["hour", "day"] = "hour",
                      pipeline: str | None = Query(None, max_length=200)) -> dict[str, Any]:
        """Requests/s, latency P50/P95/P99 (ms), error rate and accuracy per time bucket, from the store."""
        return await in_thread(lambda: state.jobs.events.series(window, pipeline or None))

    return router


def _ids(runs: list[str]) -> list[str]:
    """Run ids from ``?runs=a&runs=b`` or ``?runs=a,b``."""
    out = [r.strip() for value in runs for r in value.split(",") if r.strip()]
    if not 2 <= len(out) <= 8:
        raise APIError(400, f"pick 2 to 8 runs to compare (got {len(out)})", param="runs")
    for r in out:
        if len(r) > 64:
            raise APIError(400, "a run id is at most 64 characters", param="runs")
    return out
