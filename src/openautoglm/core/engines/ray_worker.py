"""What runs inside a Ray actor: the pipeline, built once, and ``Pipeline.process`` on chunks.

Plain Python (the engine wraps it with ``ray.remote``), so importing it needs no Ray.  The
actor's pipeline has no store: workers never touch the SQLite file; they return results,
call records and new cache entries to the driver, which commits them.  Workers do not read
the response cache (it lives in the driver's store); they do produce its entries.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from ...errors import BackendError, EndpointUnavailable, OpenAutoGLMError, StopRun


class RecordFailed(Exception):
    """A record's failure as it travels back to the driver (its message only: always picklable)."""


def pipeline_spec(pipeline: Any) -> dict[str, Any]:
    """What a worker needs to build the same pipeline: its config as data, where it was loaded
    from (for sub-pipelines and ``call:`` modules), its load policy and trace/cache settings."""
    backend = getattr(pipeline, "_backend_obj", None)
    return {"config": pipeline.to_config(), "source": pipeline.source, "base_dir": str(pipeline.base_dir),
            "policy": pipeline.policy, "trace": pipeline.trace, "cache": pipeline.cache, "backend": backend}


def build_pipeline(spec: dict[str, Any]) -> Any:
    """The worker's pipeline (no store; cache entries produced, never looked up)."""
    from ..client import ModelClient
    from ..pipeline import Pipeline

    class WorkerPipeline(Pipeline):
        def client_for(self, step: Any) -> ModelClient:
            return ModelClient(self.backend_for(step), cache_get=_no_cache if self.cache else None, trace=self.trace)

    kwargs: dict[str, Any] = {"store": False, "trace": spec["trace"], "cache": spec["cache"],
                              "policy": spec["policy"], "base_dir": spec["base_dir"]}
    if spec.get("backend") is not None:
        kwargs["model"] = spec["backend"]
    return WorkerPipeline.from_config(spec["config"], source=spec.get("source"), **kwargs)


def _no_cache(keys: Any) -> dict[str, Any]:
    return {}


class PipelineWorker:
    """One actor: builds the pipeline and its backends once (``setup``), then runs chunks."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.pipeline: Any = None

    def setup(self) -> dict[str, Any]:
        """Build the pipeline and load every task step's backend now (a model that cannot load
        fails here, once, not on every record).  Returns where it runs, or ``{"error": ...}``."""
        t0 = time.perf_counter()
        try:
            self.pipeline = build_pipeline(self.spec)
            backends = [self.pipeline.backend_for(s).name for s in self.pipeline.config.steps if s.task is not None]
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which stops the run once
            return {"error": f"{type(exc).__name__}: {exc}", "pid": os.getpid(), "host": socket.gethostname()}
        return {"pid": os.getpid(), "host": socket.gethostname(), "backends": backends,
                "seconds": time.perf_counter() - t0}

    def process(self, records: list[dict[str, Any]], keys: list[str]) -> tuple[Any, ...]:
        """``("ok", outputs, calls, cache, seconds)`` or ``("raise", kind, message, hint)``."""
        t0 = time.perf_counter()
        try:
            outs, calls, cache = self.pipeline.process(records, keys)
        except Exception as exc:  # noqa: BLE001 - the driver raises it again on its side
            kind = ("unavailable" if isinstance(exc, EndpointUnavailable) else "stop" if isinstance(exc, StopRun)
                    else "backend" if isinstance(exc, BackendError) else "error")
            message = exc.message if isinstance(exc, OpenAutoGLMError) else f"{type(exc).__name__}: {exc}"
            return ("raise", kind, message, getattr(exc, "hint", None))
        outs = [RecordFailed(str(o) or type(o).__name__) if isinstance(o, Exception) else o for o in outs]
        return ("ok", outs, calls, cache, time.perf_counter() - t0)

    def pid(self) -> int:
        return os.getpid()


def raise_from_worker(kind: str, message: str, hint: str | None) -> None:
    """Raise on the driver what a worker's ``process`` raised, as the same kind of error."""
    if kind == "unavailable":
        raise EndpointUnavailable(message, hint=hint)
    if kind == "stop":
        raise StopRun(message, hint=hint)
    if kind == "backend":
        raise BackendError(message, hint=hint)
    raise OpenAutoGLMError(f"a Ray worker failed: {message}", hint=hint)
