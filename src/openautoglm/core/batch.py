"""Resumable batch runs.

The driver reads the records in input order and cuts them into chunks; each chunk runs
through ``Pipeline.process`` (a pure function of config and records) on the chosen engine
(in this process by default, or on a pool of Ray actors: ``engine="ray"``), and the driver
commits the chunk's results, call records and cache entries to the store in one transaction.
Only the driver writes the store.  The shared driver lives in :mod:`.engines.driver`.

Failures: a record that fails (a bad template variable, an endpoint's HTTP 400, a
malformed answer, retries exhausted) is committed as failed with its reason, and the
run goes on.  The run stops only when nothing can succeed: the endpoint is unreachable
(its circuit breaker is open), the first chunk failed entirely, or more than
``max_errors`` records failed.

Resuming: a run is identified by ``run_id`` (the CLI derives it from the pipeline
config, the input file and the output path, so re-running the same command resumes).
Records already committed are skipped before they are sent out (failed ones too, unless
``retry_failed``), but only if their content is unchanged: each is stored with a hash of
the pipeline config and the record, so an edited input or pipeline under the same run id
is run again, never answered with another record's result.

One run at a time: a run holds a lock on its run id and its output file (released by
the kernel if the process dies), so a second identical command exits with a clear
message instead of doing the work twice.  The output file is written to a ``.partial``
file, in input order, and moved into place when the run ends.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sized

from .engines import EngineConfig, check_engine, current_engine
from .engines.driver import Driver, Executor, RunOptions
from .engines.results import BatchResult, TooManyErrors, output_row, reason, record_hash

if TYPE_CHECKING:
    from .pipeline import Pipeline

__all__ = ["BatchResult", "TooManyErrors", "record_hash", "run_batch", "output_row", "reason"]


def run_batch(
    pipeline: "Pipeline",
    records: Iterable[dict[str, Any]],
    *,
    run_id: str | None = None,
    output: str | Path | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    input_name: str | None = None,
    resume: bool = True,
    retry_failed: bool = False,
    max_errors: int | None = None,
    engine: str | None = None,
    address: str | None = None,
    workers: int | None = None,
    worker_cpus: float | None = None,
    reserve_cpus: float | None = None,
    collect: bool = True,
    total: int | None = None,
    on_row: Callable[[int, dict[str, Any], dict[str, Any]], None] | None = None,
    on_chunk: Callable[[list[dict[str, Any]], list[Any], float], None] | None = None,
    should_stop: Callable[[], None] | None = None,
) -> BatchResult:
    """Run ``records`` through ``pipeline``; see the module docstring for failures and resuming.

    ``records`` may be a list or any iterable (read once, in order; with ``collect=False``
    nothing is kept per record, so memory stays flat for inputs of any size).
    ``engine``: ``"inprocess"`` (default) or ``"ray"`` with ``address`` (``None``: a local
    Ray instance; ``"auto"``; ``"host:6379"``; ``"ray://host:10001"``), ``workers`` actors
    of ``worker_cpus`` CPUs each, leaving ``reserve_cpus`` free (for Ray Data reading
    ``records``: see :mod:`~openautoglm.core.engines.sources`).  Without ``engine`` the innermost
    :func:`~openautoglm.core.engines.engine_scope` decides.
    """
    from ..store.lock import RunLock

    config = _engine(engine, address=address, workers=workers, worker_cpus=worker_cpus, reserve_cpus=reserve_cpus)
    run_id = run_id or uuid.uuid4().hex[:16]
    out_path = Path(output) if output else None
    if total is None and isinstance(records, Sized):
        total = len(records)
    options = RunOptions(run_id=run_id, output=out_path, batch_size=batch_size or pipeline.config.batch_size,
                         progress=progress, input_name=input_name, resume=resume, retry_failed=retry_failed,
                         max_errors=max_errors, total=total, collect=collect, on_row=on_row, on_chunk=on_chunk,
                         should_stop=should_stop)
    store = pipeline.store
    folder = store.path.parent if store is not None else (out_path.parent if out_path else None)
    if folder is None:
        return _execute(pipeline, records, options, config)
    names = [f"run:{run_id}"] + ([f"output:{out_path.resolve()}"] if out_path else [])
    with RunLock(folder / "locks", names, f"run {run_id}" + (f" (output {out_path})" if out_path else "")):
        return _execute(pipeline, records, options, config)


def _engine(name: str | None, **options: Any) -> EngineConfig:
    scoped = current_engine()
    given = {k: v for k, v in options.items() if v is not None}
    if name is None:
        return EngineConfig(scoped.name, {**scoped.options, **given})
    return EngineConfig(check_engine(name), given)


def _execute(pipeline: "Pipeline", records: Iterable[dict[str, Any]], options: RunOptions,
             config: EngineConfig) -> BatchResult:
    if config.name == "ray":
        from .engines.ray_engine import ray_executor

        with ray_executor(pipeline, **config.options) as executor:
            return Driver(pipeline, executor, options).execute(records)
    from .engines.inprocess import InProcessExecutor

    executor: Executor = InProcessExecutor(pipeline)
    return Driver(pipeline, executor, options).execute(records)
