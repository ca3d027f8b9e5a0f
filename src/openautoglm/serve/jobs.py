"""Background runs of a pipeline over an uploaded file: start, progress, cancel, results.

A job is an ordinary resumable batch run (:func:`openautoglm.core.batch.run_batch`) under
its run id, executed on one worker thread (jobs queue behind each other; the model is
shared with interactive requests through the micro-batcher).  With ``serve --engine ray``
the run's chunks go to a pool of Ray actors that load the model themselves; the server
stays the driver, so the run's progress, results and cancel work as for a local one.  Progress is what the store
has committed; the job adds its own table ``serve_jobs`` (pipeline text, uploaded file,
column mapping, label column, status) and ``serve_chunks`` (wall time of each checkpointed
chunk, for throughput and latency over time).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..core.records import FORMATS, read_records
from ..errors import InputDataError, OpenAutoGLMError
from .pipelines import PipelineRegistry
from ..redact import mask_text
from .reports import predicted_label
from .traces import ServerStore
from .workbench_monitor import EventLog
from .validation import lone_surrogate_path

SCHEMA = """
CREATE TABLE IF NOT EXISTS serve_jobs (
    run_id TEXT PRIMARY KEY,
    name TEXT,
    pipeline TEXT NOT NULL,
    upload_id TEXT NOT NULL,
    input_name TEXT,
    column_map TEXT,
    label_column TEXT,
    n_records INTEGER,
    status TEXT NOT NULL,
    error TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS serve_chunks (
    run_id TEXT NOT NULL,
    ts REAL NOT NULL,
    n INTEGER NOT NULL,
    seconds REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS serve_chunks_run ON serve_chunks(run_id, ts);
"""

ACTIVE = ("queued", "running")


class JobNotFound(OpenAutoGLMError):
    pass


class RunCancelled(KeyboardInterrupt):
    """Raised inside a run's worker to stop it (run_batch marks the run interrupted)."""


class _Watched:
    """A pipeline whose ``process`` checks for cancellation and times each chunk
    (``on_chunk(records, outputs, seconds)``)."""

    def __init__(self, pipeline: Any, cancel: threading.Event, on_chunk: Any) -> None:
        self._pipeline = pipeline
        self._cancel = cancel
        self._on_chunk = on_chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipeline, name)

    def process(self, records: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> Any:
        if self._cancel.is_set():
            raise RunCancelled
        t0 = time.perf_counter()
        out = self._pipeline.process(records, keys)
        self._on_chunk(records, out[0], time.perf_counter() - t0)
        return out


class JobManager:
    def __init__(self, store: ServerStore, registry: PipelineRegistry, home: str | Path, *,
                 chunk_size: int = 8, max_upload_rows: int = 100_000, engine: Any = None,
                 model: Any = None) -> None:
        self.store = store
        self.registry = registry
        #: where background runs execute (an EngineConfig; None: in this process) and, for Ray,
        #: the model its workers build for themselves (the served one stays here)
        self.engine = engine
        self.model = model
        self.uploads = Path(home) / "uploads"
        self.chunk_size = chunk_size
        self.max_upload_rows = max_upload_rows
        self._cancel: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openautoglm-job")
        with store.lock:
            store.store.add_schema(SCHEMA)
        #: per-record events for the monitor page (background runs and task API requests)
        self.events = EventLog(store)
        # runs left active by a previous server process are not running any more
        store.execute("UPDATE serve_jobs SET status = 'interrupted' WHERE status IN ('queued', 'running')")

    # -- uploads ------------------------------------------------------------------------
    def upload(self, filename: str, data: bytes) -> dict[str, Any]:
        """Save an uploaded CSV/TSV/JSONL/JSON file and describe its columns."""
        suffix = Path(filename or "").suffix.lower()
        if suffix not in FORMATS:
            raise InputDataError(f"upload {filename!r}: unknown format {suffix or '(none)'}",
                                 hint="upload a .csv, .tsv, .jsonl or .json file")
        upload_id = secrets.token_hex(8)
        self.uploads.mkdir(parents=True, exist_ok=True)
        path = self.uploads / f"{upload_id}{suffix}"
        path.write_bytes(data)
        try:
            records = read_records(path)
        except InputDataError as exc:
            path.unlink(missing_ok=True)
            raise InputDataError(str(exc.message).replace(str(path), f"upload {filename!r}"), hint=exc.hint) from None
        if not records:
            path.unlink(missing_ok=True)
            raise InputDataError(f"upload {filename!r} has no records", hint="the file needs a header and rows")
        bad = lone_surrogate_path(records)
        if bad is not None:
            path.unlink(missing_ok=True)
            raise InputDataError(f"upload {filename!r}: record {bad} holds a lone UTF-16 surrogate (e.g. \\ud800)",
                                 hint="the file must hold valid Unicode text")
        if len(records) > self.max_upload_rows:
            path.unlink(missing_ok=True)
            raise InputDataError(f"upload {filename!r} has {len(records)} records, more than {self.max_upload_rows}",
                                 hint="split the file, or use `openautoglm run` for large files")
        columns = list(dict.fromkeys(k for r in records[:50] for k in r))
        meta = {"upload_id": upload_id, "filename": Path(filename).name, "path": str(path), "rows": len(records),
                "columns": columns}
        (self.uploads / f"{upload_id}.json").write_text(json.dumps(meta), encoding="utf-8")
        return {**{k: v for k, v in meta.items() if k != "path"}, "preview": records[:5]}

    def upload_records(self, upload_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        if not upload_id.isalnum():
            raise JobNotFound(f"no upload {upload_id!r}", hint="upload the file first (POST /api/uploads)")
        meta_path = self.uploads / f"{upload_id}.json"
        if not meta_path.is_file():
            raise JobNotFound(f"no upload {upload_id!r}", hint="upload the file first (POST /api/uploads)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return read_records(meta["path"]), meta

    # -- jobs -----------------------------------------------------------------------------
    def start(self, upload_id: str, pipeline_text: str, *, name: str | None = None,
              column_map: Mapping[str, str] | None = None, label_column: str | None = None,
              limit: int | None = None) -> dict[str, Any]:
        config = self.registry.config(pipeline_text, source=name or "pipeline.yaml")
        records, meta = self.upload_records(upload_id)
        records = records[:limit] if limit else records
        pipe = self.registry.build_config(config)
        column_map = {k: v for k, v in (column_map or {}).items() if v}
        mapped = map_columns(records, column_map, pipe.required_inputs, meta["filename"])
        if label_column and label_column not in meta["columns"]:
            raise InputDataError(f"upload {meta['filename']!r} has no column {label_column!r}",
                                 hint=f"columns: {', '.join(meta['columns'])}")
        run_id = "srv-" + secrets.token_hex(6)
        now = time.time()
        self.store.execute(
            "INSERT INTO serve_jobs (run_id, name, pipeline, upload_id, input_name, column_map, label_column,"
            " n_records, status, created) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (run_id, name or config.name, pipeline_text, upload_id, meta["filename"], json.dumps(column_map),
             label_column, len(mapped), "queued", now),
        )
        cancel = threading.Event()
        with self._lock:
            self._cancel[run_id] = cancel
        self._executor.submit(self._execute, run_id, config, mapped, meta["filename"], cancel, label_column)
        return self.get(run_id)

    def resume(self, run_id: str) -> dict[str, Any]:
        """Start a stopped run again: committed records are skipped, failed ones retried."""
        job = self.job_row(run_id)
        if job["status"] in ACTIVE:
            raise OpenAutoGLMError(f"run {run_id} is already {job['status']}", hint="wait for it, or cancel it first")
        if job["status"] == "done":
            return self.get(run_id)
        config = self.registry.config(job["pipeline"], source=job["name"] or "pipeline.yaml")
        records, meta = self.upload_records(job["upload_id"])
        pipe = self.registry.build_config(config)
        mapped = map_columns(records[: job["n_records"]], json.loads(job["column_map"] or "{}"),
                             pipe.required_inputs, meta["filename"])
        cancel = threading.Event()
        with self._lock:
            self._cancel[run_id] = cancel
        self._set(run_id, status="queued", error=None, finished=None)
        self._executor.submit(self._execute, run_id, config, mapped, meta["filename"], cancel, job["label_column"])
        return self.get(run_id)

    def _set(self, run_id: str, **fields: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in fields)
        self.store.execute(f"UPDATE serve_jobs SET {cols} WHERE run_id = ?", (*fields.values(), run_id))

    def _execute(self, run_id: str, config: Any, records: list[dict[str, Any]], input_name: str,
                 cancel: threading.Event, label_column: str | None = None) -> None:
        from ..core.batch import run_batch

        if cancel.is_set():
            self._set(run_id, status="cancelled", finished=time.time())
            return
        self._set(run_id, status="running", started=time.time())
        on_ray = self.engine is not None and self.engine.name == "ray"
        if on_ray:  # the workers load their own model; the served one stays with interactive requests
            from ..core.pipeline import Pipeline

            pipe = Pipeline.from_config(config, model=self.model, policy=self.registry.policy,
                                        base_dir=self.registry.directory, store=str(self.store.path), trace=True,
                                        cache=False)
        else:
            pipe = self.registry.build_config(config, store=str(self.store.path), trace=True)

        def on_chunk(chunk: Sequence[Mapping[str, Any]], outputs: Sequence[Any], seconds: float) -> None:
            self.store.execute("INSERT INTO serve_chunks (run_id, ts, n, seconds) VALUES (?,?,?,?)",
                               (run_id, time.time(), len(chunk), seconds))
            self.events.add(config.name, "run", [
                (seconds * 1000, isinstance(out, Exception), _correct(rec, out, label_column))
                for rec, out in zip(chunk, outputs)])

        def stop() -> None:
            if cancel.is_set():
                raise RunCancelled

        try:
            if on_ray:
                result = run_batch(pipe, records, run_id=run_id, batch_size=self.chunk_size, input_name=input_name,
                                   engine="ray", on_chunk=on_chunk, should_stop=stop, **self.engine.options)
            else:
                result = run_batch(_Watched(pipe, cancel, on_chunk), records, run_id=run_id,
                                   batch_size=self.chunk_size, input_name=input_name)
            status = "done" if not result.failed else "done-with-errors"
            self._set(run_id, status=status, finished=time.time())
        except RunCancelled:
            self.store.store.finish_run(run_id, "cancelled")
            self._set(run_id, status="cancelled", finished=time.time())
        except Exception as exc:  # noqa: BLE001 - a failed run is reported, the server goes on
            self._set(run_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000], finished=time.time())
        finally:
            pipe.close()
            with self._lock:
                self._cancel.pop(run_id, None)

    def cancel(self, run_id: str) -> dict[str, Any]:
        job = self.get(run_id)
        with self._lock:
            event = self._cancel.get(run_id)
        if event is not None and job["status"] in ACTIVE:
            event.set()
            if job["status"] == "queued":
                self._set(run_id, status="cancelled", finished=time.time())
        return self.get(run_id)

    def job_row(self, run_id: str) -> dict[str, Any]:
        rows = self.store.execute("SELECT * FROM serve_jobs WHERE run_id = ?", (run_id,))
        if not rows:
            raise JobNotFound(f"no run {run_id!r} started by this server", hint="GET /api/runs lists the runs")
        return rows[0]

    def get(self, run_id: str) -> dict[str, Any]:
        job = self.job_row(run_id)
        run = self.store.get_run(run_id) or {}
        total = job["n_records"] or 0
        done, failed = run.get("done") or 0, run.get("failed") or 0
        return {
            "run_id": run_id, "name": job["name"], "status": job["status"], "input": job["input_name"],
            "label_column": job["label_column"], "column_map": json.loads(job["column_map"] or "{}"),
            "total": total, "done": done, "failed": failed,
            "progress": (done + failed) / total if total else 0.0,
            "error": mask_text(job["error"]) if job["error"] else None, "created": job["created"],
            "started": job["started"], "finished": job["finished"],
        }

    def list(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.store.execute("SELECT run_id FROM serve_jobs ORDER BY created DESC LIMIT ?", (limit,))
        return [self.get(r["run_id"]) for r in rows]

    def inputs(self, run_id: str) -> list[dict[str, Any]]:
        """The run's input records (as uploaded, before column mapping)."""
        job = self.job_row(run_id)
        records, _ = self.upload_records(job["upload_id"])
        return records[: job["n_records"]]

    def chunks(self, run_id: str) -> list[dict[str, Any]]:
        return self.store.execute("SELECT ts, n, seconds FROM serve_chunks WHERE run_id = ? ORDER BY ts", (run_id,))

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._cancel)

    def close(self) -> None:
        with self._lock:
            for event in self._cancel.values():
                event.set()
        self._executor.shutdown(wait=True, cancel_futures=True)


def _correct(record: Mapping[str, Any], output: Any, label_column: str | None) -> bool | None:
    """Whether ``output`` answers ``record``'s gold label (None: no gold)."""
    if not label_column or record.get(label_column) in (None, ""):
        return None
    if isinstance(output, Exception):
        return False
    return predicted_label(output) == str(record[label_column]).strip()


def map_columns(records: list[dict[str, Any]], column_map: Mapping[str, str], required: set[str],
                source: str) -> list[dict[str, Any]]:
    """Copy each chosen column to the input field the pipeline reads (``{field: column}``)."""
    columns = list(dict.fromkeys(k for r in records[:50] for k in r))
    for field, column in column_map.items():
        if column not in columns:
            raise InputDataError(f"upload {source!r} has no column {column!r} (chosen for input {field!r})",
                                 hint=f"columns: {', '.join(columns)}")
    missing = sorted(f for f in required if f not in column_map and f not in columns)
    if missing:
        raise InputDataError(
            f"the pipeline reads {', '.join(repr(m) for m in missing)}, which upload {source!r} does not have",
            hint=f"choose the column for each input (columns: {', '.join(columns)})",
        )
    if not column_map:
        return records
    return [{**r, **{f: r.get(c) for f, c in column_map.items()}} for r in records]
