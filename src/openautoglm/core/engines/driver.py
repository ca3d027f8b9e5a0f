"""The batch driver every engine shares: what to skip, committing, the output file, the summary.

The driver reads the records as a stream, in input order, and cuts them into *windows*:
consecutive records holding up to ``batch_size`` records still to do.  For each record it
decides, by merging with what the store holds for the run (read a page at a time, in index
order), whether an earlier attempt already answered it: a stored result is kept only when
its content hash (pipeline config + record) matches.  The records still to do go to the
engine's :class:`Executor` as one chunk; when a chunk's results come back (in any order)
the driver commits them with their call records and cache entries in one transaction, and
writes the output rows of finished windows in input order to ``<output>.partial``, moved
into place when the run ends.  Memory stays flat: at most ``executor.window`` chunks are in
flight and at most ``max_queued`` windows wait to be written, whatever the input size.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol

from ...errors import BackendError, OpenAutoGLMError, StopRun
from ..result import Result
from .results import BatchResult, TooManyErrors, output_row, reason, record_hash

if TYPE_CHECKING:
    from ..pipeline import Pipeline

#: errors kept with their record index when results are not collected (counts are always kept)
MAX_LISTED_ERRORS = 1000


class Executor(Protocol):
    """Runs chunks of records through ``Pipeline.process``; ``window`` chunks may be in flight."""

    window: int

    def submit(self, ticket: int, records: list[dict[str, Any]], keys: list[str]) -> None: ...

    def pending(self) -> int: ...

    def next_result(self) -> tuple[int, list[Any], list[Any], dict[str, Any], float]:
        """Wait for a chunk: ``(ticket, outputs or per-record exceptions, calls, cache, seconds)``."""
        ...

    def close(self) -> None: ...


@dataclass
class RunOptions:
    """How one batch run behaves (see :func:`openautoglm.core.batch.run_batch`)."""

    run_id: str
    output: Path | None = None
    batch_size: int = 64
    progress: bool = False
    input_name: str | None = None
    resume: bool = True
    retry_failed: bool = False
    max_errors: int | None = None
    total: int | None = None
    collect: bool = True  # keep every result in memory (returned in BatchResult.results)
    on_row: Callable[[int, dict[str, Any], dict[str, Any]], None] | None = None  # idx, record, output or error
    on_chunk: Callable[[list[dict[str, Any]], list[Any], float], None] | None = None
    should_stop: Callable[[], None] | None = None  # raises to stop the run (checked before each chunk)


@dataclass
class _Window:
    start: int
    records: list[dict[str, Any]] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)  # per record: output dict, {"error": ...}, or None (to do)
    todo: list[int] = field(default_factory=list)  # positions in the window still to run
    done: bool = False


class Committed:
    """What earlier attempts of a run committed, read in index order a page at a time."""

    PAGE = 2048

    def __init__(self, store: Any, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self._rows: deque[dict[str, Any]] = deque()
        self._end = False

    def get(self, idx: int) -> dict[str, Any] | None:
        """The committed row of record ``idx`` (asked in increasing order), or None."""
        while True:
            while self._rows and self._rows[0]["idx"] < idx:
                self._rows.popleft()
            if self._rows:
                return self._rows[0] if self._rows[0]["idx"] == idx else None
            if self._end:
                return None
            # only rows at or after idx: this run commits records before idx, never after it
            rows = self.store.query(
                "SELECT idx, status, output, error, input_hash FROM records WHERE run_id = ? AND idx >= ?"
                " ORDER BY idx LIMIT ?", (self.run_id, idx, self.PAGE))
            self._end = len(rows) < self.PAGE
            self._rows.extend(rows)


class Driver:
    """One attempt at a batch run on an executor; see the module docstring."""

    def __init__(self, pipeline: "Pipeline", executor: Executor, options: RunOptions) -> None:
        self.pipeline, self.executor, self.opts = pipeline, executor, options
        self.store = pipeline.store
        self.fingerprint = pipeline.config.fingerprint()
        self.size = max(1, options.batch_size)
        self.max_window_records = max(self.size * 8, 4096)
        self.max_queued = executor.window + 64
        self.summary = BatchResult(run_id=options.run_id, results=[])
        self.committed = Committed(self.store, options.run_id) if self.store is not None and options.resume else None
        out = options.output
        self.partial = out.with_name(out.name + ".partial") if out else None
        self._fh: Any = None
        self._queue: deque[_Window] = deque()
        self._tickets: dict[int, _Window] = {}
        self._next_ticket = 0
        self._seen = 0
        self._errors_total = 0
        self.bar = Progress(options.total, enabled=options.progress)

    # -- the run ---------------------------------------------------------------------
    def execute(self, records: Iterable[dict[str, Any]]) -> BatchResult:
        t0 = time.perf_counter()
        cfg = self.pipeline.config
        if self.store is not None:
            self.store.start_run(self.opts.run_id, name=cfg.name, config_hash=self.fingerprint,
                                 input=self.opts.input_name, output=str(self.opts.output) if self.opts.output else None,
                                 total=self.opts.total)
        if self.partial is not None:
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.partial.open("w", encoding="utf-8")
        windows = self._windows(iter(records))
        try:
            for window in windows:
                self._queue.append(window)
                if window.todo:
                    if self.opts.should_stop is not None:
                        self.opts.should_stop()
                    self._tickets[self._next_ticket] = window
                    self.executor.submit(self._next_ticket, [window.records[j] for j in window.todo],
                                         [str(window.start + j) for j in window.todo])
                    self._next_ticket += 1
                else:
                    window.done = True
                self._flush()
                while self.executor.pending() and (self.executor.pending() >= self.executor.window
                                                  or len(self._queue) >= self.max_queued):
                    self._take(*self.executor.next_result())
            while self.executor.pending():
                self._take(*self.executor.next_result())
        except (BackendError, StopRun, KeyboardInterrupt) as exc:
            self._stop("interrupted", windows)
            if isinstance(exc, (BackendError, StopRun)):
                raise BackendError(
                    f"{exc.message} (run {self.opts.run_id}: {self.summary.done + self.summary.skipped} of "
                    f"{self._seen} records are saved)",
                    hint=(exc.hint or "") + " — rerun the same command to resume where it stopped",
                ) from exc
            raise
        except Exception:
            self._stop("failed", windows)  # e.g. a systematic failure: not left "running"
            raise
        self._finish("done" if not self._errors_total else "done-with-errors", complete=True)
        self.summary.seconds = time.perf_counter() - t0
        return self.summary

    def _windows(self, records: Iterator[dict[str, Any]]) -> Iterator[_Window]:
        window = _Window(start=0)
        for record in records:
            idx = self._seen
            self._seen += 1
            h = record_hash(self.fingerprint, record)
            window.records.append(record)
            window.hashes.append(h)
            kept = self._kept(idx, h)
            window.results.append(kept)
            if kept is None:
                window.todo.append(len(window.records) - 1)
            if len(window.todo) >= self.size or len(window.records) >= self.max_window_records:
                yield window
                window = _Window(start=self._seen)
        if window.records:
            yield window

    def _kept(self, idx: int, h: str) -> dict[str, Any] | None:
        """The stored answer of record ``idx`` to keep, or None to run it."""
        row = self.committed.get(idx) if self.committed is not None else None
        if row is None or row["status"] not in ("done", "error"):
            return None
        if row["input_hash"] is not None and row["input_hash"] != h:
            self.summary.changed += 1
            return None
        if row["status"] == "error" and self.opts.retry_failed:
            return None
        self.summary.skipped += 1
        if row["status"] == "done":
            return json.loads(row["output"]) if row["output"] else {}
        self._note_error(idx, row["error"] or "failed")
        return {"error": row["error"] or "failed"}

    def _take(self, ticket: int, outs: list[Any], calls: list[Any], cache: dict[str, Any], seconds: float) -> None:
        """Commit one chunk's results, then write the windows now complete."""
        window = self._tickets.pop(ticket)
        committed = []
        for j, out in zip(window.todo, outs):
            i = window.start + j
            if isinstance(out, Exception):
                msg = str(out) or type(out).__name__
                committed.append((i, str(i), "error", None, msg, window.hashes[j]))
                window.results[j] = {"error": msg}
                self._note_error(i, msg)
                self.summary.failed += 1
            else:
                committed.append((i, str(i), "done", out, None, window.hashes[j]))
                window.results[j] = out
                self.summary.done += 1
        if self.store is not None:
            self.store.commit_chunk(self.opts.run_id, committed, calls if self.pipeline.trace else [],
                                    cache if self.pipeline.cache else {})
        window.done = True
        self.bar.update(len(committed), self.summary.failed)
        if self.opts.on_chunk is not None:
            self.opts.on_chunk([window.records[j] for j in window.todo], list(outs), seconds)
        self._flush()
        self._check_errors()

    def _note_error(self, idx: int, msg: str) -> None:
        self._errors_total += 1
        self.summary.reason_counts[reason(msg)] += 1
        if self.opts.collect or len(self.summary.errors) < MAX_LISTED_ERRORS:
            self.summary.errors.append((idx, msg))
        self.summary.errors_total = self._errors_total

    def _flush(self) -> None:
        """Write the finished windows at the head of the queue (input order)."""
        while self._queue and self._queue[0].done:
            window = self._queue.popleft()
            self._write(window)
            self.bar.update(len(window.records) - len(window.todo), None)

    def _write(self, window: _Window, only_answered: bool = False) -> None:
        rows = []
        for j, (record, result) in enumerate(zip(window.records, window.results)):
            if result is None:
                if self.opts.collect:
                    self.summary.results.append(Result(error="not run"))
                continue
            i = window.start + j
            error = result.get("error") if isinstance(result, dict) and set(result) == {"error"} else None
            if self._fh is not None:
                rows.append(output_row(i, record, None if error is not None else result, error))
            if self.opts.collect:
                self.summary.results.append(Result.wrap(result))
            if self.opts.on_row is not None:
                self.opts.on_row(i, record, result)
        if rows:
            self._fh.write("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))

    def _check_errors(self) -> None:
        s = self.summary
        if s.failed and s.done == 0 and s.failed >= self.size:
            # every record so far failed: a systematic problem, not bad rows
            first = next((m for _, m in sorted(s.errors)), "unknown error")
            raise OpenAutoGLMError(f"the first {s.failed} records all failed; first error: {first}",
                                   hint="fix the pipeline or the input; rerun the same command to resume")
        if self.opts.max_errors is not None and s.failed > self.opts.max_errors:
            reasons = "; ".join(f"{n}× {r}" for r, n in s.failure_reasons[:3])
            raise TooManyErrors(
                f"{s.failed} records failed in this run, more than max_errors={self.opts.max_errors}: {reasons}",
                hint="fix the cause, then rerun with --retry-failed to redo the failed records")

    # -- ending --------------------------------------------------------------------------
    def _stop(self, status: str, rest: Iterator[_Window]) -> None:
        """The run stops early: write what is answered (earlier results of the records not
        reached included, as a complete output would hold them), record the status."""
        self.executor.close()
        try:
            for window in self._queue:
                self._write(window)
            self._queue.clear()
            for window in rest:  # the rest of the input: only what earlier attempts answered
                self._write(window)
        except Exception:  # noqa: BLE001 - the input failed to read: keep what is written
            pass
        self._finish(status, complete=False)

    def _finish(self, status: str, complete: bool) -> None:
        """Record the run's status; move the output (complete lines, input order) into place."""
        self.bar.close()
        self.summary.errors.sort()
        if self.store is not None:
            self.store.finish_run(self.opts.run_id, status)
            if complete and self.opts.total is None:
                self.store.query("UPDATE runs SET total = ? WHERE run_id = ?", (self._seen, self.opts.run_id))
        self.summary.total = self._seen
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            assert self.partial is not None and self.opts.output is not None
            os.replace(self.partial, self.opts.output)  # atomic: readers see the old file or the new one


class Progress:
    """A rich progress bar on stderr with records/s and failures (a no-op when disabled)."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self._bar: Any = None
        self._t0 = time.perf_counter()
        self._ran = 0
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self._bar = Bar("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[rate]}"), TextColumn("{task.fields[failed]}"),
                            TimeRemainingColumn(), console=Console(file=sys.stderr), transient=False)
            self._bar.start()
            self._task = self._bar.add_task("records", total=total, rate="", failed="")

    def update(self, ran: int, failed: int | None) -> None:
        """``ran`` more records are finished (run now, or kept from earlier); ``failed`` so far."""
        if self._bar is None or not ran:
            return
        fields: dict[str, Any] = {}
        if failed is not None:
            self._ran += ran
            fields["rate"] = f"{self._ran / max(time.perf_counter() - self._t0, 1e-9):.1f} rec/s"
            fields["failed"] = f"[red]{failed} failed[/]" if failed else "0 failed"
        self._bar.update(self._task, advance=ran, **fields)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
