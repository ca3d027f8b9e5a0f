"""Resumable batch runs.

The driver splits the records into chunks, runs each chunk through
``Pipeline.process`` (a pure function of config and records), then commits the
chunk's results, call records and cache entries to the store in one transaction.

Failures: a record that fails (a bad template variable, an endpoint's HTTP 400, a
malformed answer, retries exhausted) is committed as failed with its reason, and the
run goes on.  The run stops only when nothing can succeed: the endpoint is unreachable
(its circuit breaker is open), the first chunk failed entirely, or more than
``max_errors`` records failed.

Resuming: a run is identified by ``run_id`` (the CLI derives it from the pipeline
config, the input file and the output path, so re-running the same command resumes).
Records already committed are skipped (failed ones too, unless ``retry_failed``), but
only if their content is unchanged: each is stored with a hash of the pipeline config
and the record, so an edited input or pipeline under the same run id is run again,
never answered with another record's result.

One run at a time: a run holds a lock on its run id and its output file (released by
the kernel if the process dies), so a second identical command exits with a clear
message instead of doing the work twice.  The output file is written to a ``.partial``
file and moved into place, complete and in input order, when the run ends.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from ..errors import BackendError, OpenAutoGLMError, StopRun
from .records import write_jsonl
from .result import Result

if TYPE_CHECKING:
    from .pipeline import Pipeline


class TooManyErrors(OpenAutoGLMError):
    """More records failed than the run allows (``max_errors``)."""


@dataclass
class BatchResult:
    run_id: str
    results: list[Result]
    done: int = 0
    failed: int = 0
    skipped: int = 0  # already done (or failed) in an earlier attempt of the same run
    changed: int = 0  # stored results discarded because the record or the pipeline changed
    seconds: float = 0.0
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def failure_reasons(self) -> list[tuple[str, int]]:
        """Why records failed, most common first: ``(reason, count)``."""
        return Counter(_reason(msg) for _, msg in self.errors).most_common()


def _reason(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return first[:200]


def record_hash(config_fingerprint: str, record: Any) -> str:
    """What a stored result answers: the pipeline config and the record's content."""
    blob = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(f"{config_fingerprint}\n{blob}".encode("utf-8", "surrogatepass")).hexdigest()[:24]


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
    retry_failed: bool = False,
    max_errors: int | None = None,
) -> BatchResult:
    """Run ``records`` through ``pipeline``; see the module docstring for failures and resuming."""
    from ..store.lock import RunLock

    run_id = run_id or uuid.uuid4().hex[:16]
    out_path = Path(output) if output else None
    store = pipeline.store
    folder = (store.path.parent if store is not None else (out_path.parent if out_path else None))
    names = [f"run:{run_id}"] + ([f"output:{out_path.resolve()}"] if out_path else [])
    if folder is None:
        return _Run(pipeline, records, run_id, out_path, batch_size, progress, input_name, resume, retry_failed,
                    max_errors).execute()
    with RunLock(folder / "locks", names, f"run {run_id}" + (f" (output {out_path})" if out_path else "")):
        return _Run(pipeline, records, run_id, out_path, batch_size, progress, input_name, resume, retry_failed,
                    max_errors).execute()


class _Run:
    """One attempt at a batch run: what to skip, the chunk loop, the output file."""

    def __init__(self, pipeline: "Pipeline", records: Sequence[dict[str, Any]], run_id: str, out_path: Path | None,
                 batch_size: int | None, progress: bool, input_name: str | None, resume: bool, retry_failed: bool,
                 max_errors: int | None) -> None:
        self.pipeline, self.records, self.run_id, self.out_path = pipeline, records, run_id, out_path
        self.size = batch_size or pipeline.config.batch_size
        self.progress, self.input_name = progress, input_name
        self.resume, self.retry_failed, self.max_errors = resume, retry_failed, max_errors
        self.store = pipeline.store
        fingerprint = pipeline.config.fingerprint()
        self.hashes = [record_hash(fingerprint, r) for r in records]
        self.results: list[dict[str, Any] | None] = [None] * len(records)
        self.errors: dict[int, str] = {}
        self.partial = out_path.with_name(out_path.name + ".partial") if out_path else None

    # -- what an earlier attempt left --------------------------------------------------
    def _earlier(self, summary: BatchResult) -> set[int]:
        """Load the results to keep; returns their indices."""
        keep: set[int] = set()
        if self.store is None or not self.resume:
            return keep
        for row in self.store.iter_records(self.run_id):
            i = row["idx"]
            if i >= len(self.records) or row["status"] not in ("done", "error"):
                continue
            if row["input_hash"] is not None and row["input_hash"] != self.hashes[i]:
                summary.changed += 1
                continue
            if row["status"] == "done":
                self.results[i] = row["output"]
            elif self.retry_failed:
                continue
            else:
                self.errors[i] = row["error"] or "failed"
                self.results[i] = {"error": self.errors[i]}
            keep.add(i)
        return keep

    def _rows(self, indices: Sequence[int]) -> Iterator[dict[str, Any]]:
        for i in indices:
            yield _output_row(i, self.records[i], self.results[i] if i not in self.errors else None,
                              self.errors.get(i))

    # -- the run ----------------------------------------------------------------------------
    def execute(self) -> BatchResult:
        t0 = time.perf_counter()
        store, records, pipeline = self.store, self.records, self.pipeline
        if store is not None:
            store.start_run(self.run_id, name=pipeline.config.name, config_hash=pipeline.config.fingerprint(),
                            input=self.input_name, output=str(self.out_path) if self.out_path else None,
                            total=len(records))
        summary = BatchResult(run_id=self.run_id, results=[])
        kept = self._earlier(summary)
        summary.skipped = len(kept)
        summary.errors = sorted(self.errors.items())
        if self.partial is not None:  # rebuild from what is committed, then append
            write_jsonl(self.partial, self._rows(sorted(kept)))
        todo = [i for i in range(len(records)) if i not in kept]
        bar = _Progress(len(records), len(kept), enabled=self.progress)
        status = "done"
        try:
            for start in range(0, len(todo), self.size):
                self._chunk(todo[start:start + self.size], summary)
                bar.advance(min(self.size, len(todo) - start))
                self._check_errors(summary)
        except (BackendError, StopRun, KeyboardInterrupt) as exc:
            status = "interrupted"
            self._finish(status, todo, kept)
            if isinstance(exc, (BackendError, StopRun)):
                raise BackendError(
                    f"{exc.message} (run {self.run_id}: {summary.done + summary.skipped} of {len(records)} records "
                    "are saved)",
                    hint=(exc.hint or "") + " — rerun the same command to resume where it stopped",
                ) from exc
            raise
        except Exception:
            status = "failed"  # e.g. a systematic failure: not left "running"
            self._finish(status, todo, kept)
            raise
        finally:
            bar.close()
        self._finish("done" if not self.errors else "done-with-errors", todo, kept)
        summary.seconds = time.perf_counter() - t0
        summary.errors = sorted(self.errors.items())
        summary.results = [Result.wrap(r) if r is not None else Result(error="not run") for r in self.results]
        return summary

    def _chunk(self, chunk: list[int], summary: BatchResult) -> None:
        pipeline = self.pipeline
        outs, calls, cache = pipeline.process([self.records[i] for i in chunk], [str(i) for i in chunk])
        committed = []
        for i, out in zip(chunk, outs):
            if isinstance(out, Exception):
                msg = str(out) or type(out).__name__
                committed.append((i, str(i), "error", None, msg, self.hashes[i]))
                self.errors[i] = msg
                self.results[i] = {"error": msg}
                summary.failed += 1
            else:
                committed.append((i, str(i), "done", out, None, self.hashes[i]))
                self.errors.pop(i, None)
                self.results[i] = out
                summary.done += 1
        if self.store is not None:
            self.store.commit_chunk(self.run_id, committed, calls if pipeline.trace else [],
                                    cache if pipeline.cache else {})
        if self.partial is not None:
            write_jsonl(self.partial, self._rows(chunk), append=True)
        summary.errors = sorted(self.errors.items())

    def _check_errors(self, summary: BatchResult) -> None:
        if summary.failed and summary.done == 0 and summary.failed >= self.size:
            # every record so far failed: a systematic problem, not bad rows
            raise OpenAutoGLMError(
                f"the first {summary.failed} records all failed; first error: {summary.errors[0][1]}",
                hint="fix the pipeline or the input; rerun the same command to resume",
            )
        if self.max_errors is not None and summary.failed > self.max_errors:
            reasons = "; ".join(f"{n}× {r}" for r, n in summary.failure_reasons[:3])
            raise TooManyErrors(
                f"{summary.failed} records failed in this run, more than max_errors={self.max_errors}: {reasons}",
                hint="fix the cause, then rerun with --retry-failed to redo the failed records",
            )

    def _finish(self, status: str, todo: list[int], kept: set[int]) -> None:
        """Record the run's status; move the output (complete lines, input order) into place."""
        if self.store is not None:
            self.store.finish_run(self.run_id, status)
        if self.partial is None or self.out_path is None:
            return
        done = sorted(kept | {i for i in todo if self.results[i] is not None})
        in_order = not kept or not todo or min(todo) > max(kept)
        if not in_order:  # records redone on resume were appended after later ones
            write_jsonl(self.partial, self._rows(done))
        os.replace(self.partial, self.out_path)  # atomic: readers see the old file or the new one


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
