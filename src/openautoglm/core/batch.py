"""Resumable batch runs.

The driver splits the records into chunks, runs each chunk through
``Pipeline.process`` (a pure function of config and records), then commits the
chunk's results, call records and cache entries to the store in one transaction.

Resuming: a run is identified by ``run_id`` (the CLI derives it from the pipeline
config, the input file and the output path, so re-running the same command resumes).
Records already committed are skipped; the output file is rebuilt from the store
before new results are appended, so a crash at any point loses nothing and
duplicates nothing.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import BackendError, OpenAutoGLMError
from .records import write_jsonl

if TYPE_CHECKING:
    from .pipeline import Pipeline


@dataclass
class BatchResult:
    run_id: str
    results: list[dict[str, Any]]
    done: int = 0
    failed: int = 0
    skipped: int = 0  # already done in an earlier attempt of the same run
    seconds: float = 0.0
    errors: list[tuple[int, str]] = field(default_factory=list)


def _output_row(idx: int, record: Any, output: Any, error: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {"idx": idx, "input": record}
    if error is not None:
        row["error"] = error
    else:
        row["output"] = output
    return row


def run_batch(
    pipeline: "Pipeline",
    records: Sequence[dict[str, Any]],
    *,
    run_id: str | None = None,
    output: str | Path | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    input_name: str | None = None,
    resume: bool = True,
) -> BatchResult:
    """Run ``records`` through ``pipeline``; see the module docstring for resume semantics."""
    store = pipeline.store
    run_id = run_id or uuid.uuid4().hex[:16]
    size = batch_size or pipeline.config.batch_size
    out_path = Path(output) if output else None
    t0 = time.perf_counter()
    done_before: set[int] = set()
    stored: dict[int, dict[str, Any]] = {}
    if store is not None:
        store.start_run(run_id, name=pipeline.config.name, config_hash=pipeline.config.fingerprint(),
                        input=input_name, output=str(out_path) if out_path else None, total=len(records))
        if resume:
            for row in store.iter_records(run_id):
                if row["status"] == "done" and row["idx"] < len(records):
                    stored[row["idx"]] = row["output"]
            done_before = set(stored)
    if out_path is not None:  # rebuild the file from what is committed, then append
        write_jsonl(out_path, (_output_row(i, records[i], stored[i], None) for i in sorted(stored)))
    results: list[dict[str, Any] | None] = [stored.get(i) for i in range(len(records))]
    todo = [i for i in range(len(records)) if i not in done_before]
    summary = BatchResult(run_id=run_id, results=[], skipped=len(done_before))
    bar = _Progress(len(records), len(done_before), enabled=progress)
    try:
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            outs, calls, cache = pipeline.process([records[i] for i in chunk], [str(i) for i in chunk])
            committed = []
            for i, out in zip(chunk, outs):
                if isinstance(out, Exception):
                    msg = str(out)
                    committed.append((i, str(i), "error", None, msg))
                    summary.errors.append((i, msg))
                    results[i] = {"error": msg}
                else:
                    committed.append((i, str(i), "done", out, None))
                    results[i] = out
            if store is not None:
                store.commit_chunk(run_id, committed, calls if pipeline.trace else [],
                                   cache if pipeline.cache else {})
            if out_path is not None:
                write_jsonl(out_path, (_output_row(i, records[i], o, e) for i, _, _, o, e in committed), append=True)
            summary.done += sum(1 for c in committed if c[2] == "done")
            summary.failed += sum(1 for c in committed if c[2] == "error")
            bar.advance(len(chunk))
            if summary.failed and summary.failed == summary.done + summary.failed >= size:
                # every record so far failed: a systematic problem, not bad rows
                raise OpenAutoGLMError(
                    f"the first {summary.failed} records all failed; first error: {summary.errors[0][1]}",
                    hint="fix the pipeline or the input; rerun the same command to resume",
                )
    except (BackendError, KeyboardInterrupt) as exc:
        if store is not None:
            store.finish_run(run_id, "interrupted")
        if isinstance(exc, BackendError):
            raise BackendError(
                f"{exc.message} (run {run_id}: {summary.done + summary.skipped} of {len(records)} records are saved)",
                hint=(exc.hint or "") + " — rerun the same command to resume where it stopped",
            ) from exc
        raise
    except Exception:
        if store is not None:  # e.g. an unknown model or a systematic failure: not left "running"
            store.finish_run(run_id, "failed")
        raise
    finally:
        bar.close()
    if out_path is not None and todo and done_before and min(todo) < max(done_before):
        # records retried on resume (earlier errors) were appended after later ones: restore input order
        _rewrite_in_order(out_path, records, results, dict(summary.errors))
    if store is not None:
        store.finish_run(run_id, "done" if not summary.failed else "done-with-errors")
    summary.seconds = time.perf_counter() - t0
    summary.results = [r if r is not None else {"error": "not run"} for r in results]
    return summary


def _rewrite_in_order(
    path: Path, records: Sequence[dict[str, Any]], results: list[dict[str, Any] | None], errors: dict[int, str]
) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write_jsonl(tmp, (_output_row(i, records[i], r, errors.get(i)) for i, r in enumerate(results) if r is not None))
    tmp.replace(path)  # atomic: a crash leaves the complete old file or the complete new one


class _Progress:
    """A rich progress bar on stderr (a no-op when disabled)."""

    def __init__(self, total: int, completed: int, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self._bar = Progress(
                "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), console=Console(file=sys.stderr), transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("records", total=total, completed=completed)

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
