"""The server's view of the project store: buffered trace writes and the reads the UI needs.

:class:`ServerStore` wraps one :class:`~openautoglm.store.sqlite.Store` connection behind a
lock (the server's threads share it).  Calls made by interactive requests are buffered
and written in one transaction every ``flush_every`` calls or ``flush_s`` seconds, so
tracing stays cheap under load; batch runs commit their own calls with each checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from ..core.client import CallRecord
from ..store.sqlite import Store
from ..redact import mask_secrets
from .validation import lone_surrogate_path, scrub

#: trace columns that may hold configuration or error text (masked when read); prompts and
#: responses are the user's data and are shown as they are
MASKED_COLUMNS = ("params", "error", "backend", "model")

TRACE_COLUMNS = ("id", "ts", "run_id", "step", "record_key", "attempt", "kind", "backend", "model", "params",
                 "prompt", "response", "prompt_tokens", "completion_tokens", "latency_ms", "error", "cached")


def _loads(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


class ServerStore:
    """One store connection shared by the server's threads, with a write-behind trace buffer."""

    def __init__(self, path: str | Path, flush_every: int = 256, flush_s: float = 1.0) -> None:
        self.store = Store(path)
        self.path = self.store.path
        self.lock = threading.RLock()
        self.flush_every = flush_every
        self.flush_s = flush_s
        self._pending: list[CallRecord] = []
        self._last = time.monotonic()
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._loop, name="openautoglm-trace-writer", daemon=True)
        self._flusher.start()

    # -- writing -------------------------------------------------------------------------
    def trace(self, calls: Sequence[CallRecord]) -> None:
        if not calls:
            return
        with self.lock:
            self._pending.extend(_storable(c) for c in calls)
            if len(self._pending) >= self.flush_every:
                self.flush()

    def flush(self) -> None:
        with self.lock:
            self._last = time.monotonic()
            if self._pending:
                calls, self._pending = self._pending, []
                self.store.log(calls)

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_s / 2):
            if self._pending and time.monotonic() - self._last >= self.flush_s:
                try:
                    self.flush()
                except Exception:  # noqa: BLE001 - a busy database must not kill the writer
                    pass

    def close(self) -> None:
        self._stop.set()
        self._flusher.join(timeout=5)
        self.flush()
        self.store.close()

    # -- reading ---------------------------------------------------------------------------
    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.lock:
            return self.store.query(sql, args)

    def traces(self, search: str | None = None, run_id: str | None = None, limit: int = 50,
               errors_only: bool = False) -> list[dict[str, Any]]:
        search, run_id = _clean(search), _clean(run_id)
        self.flush()
        with self.lock:
            rows = self.store.recent_calls(limit=limit if not errors_only else limit * 20, search=search or None,
                                           run_id=run_id or None)
        if errors_only:
            rows = [r for r in rows if r["error"]][:limit]
        return [_summary(r) for r in rows]

    def get_trace(self, call_id: int) -> dict[str, Any] | None:
        self.flush()
        rows = self.execute("SELECT * FROM calls WHERE id = ?", (call_id,))
        if not rows:
            return None
        row = rows[0]
        for key in ("params", "prompt", "response"):
            row[key] = _loads(row[key])
        row.update({key: mask_secrets(row[key]) for key in MASKED_COLUMNS})
        row["related"] = []
        if row["run_id"] is not None and row["record_key"] is not None:  # attempts for the same record and step
            row["related"] = mask_secrets(self.execute(
                "SELECT id, attempt, error, latency_ms FROM calls WHERE run_id = ? AND record_key = ? AND step IS ?"
                " AND id != ? ORDER BY id LIMIT 20",
                (row["run_id"], row["record_key"], row["step"], call_id),
            ))
        return row

    def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        with self.lock:
            return self.store.list_runs(limit)

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        with self.lock:
            return self.store.get_run(run_id)

    def run_records(self, run_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.store.iter_records(run_id))


#: the call fields that carry text from requests or the model
TEXT_FIELDS = ("params", "prompt", "response", "error", "step", "record_key")


def _storable(call: CallRecord) -> CallRecord:
    """``call`` with text SQLite can store: lone surrogates (which no UTF-8 encoder accepts, and
    which would fail the whole buffered write) become U+FFFD."""
    values = {name: getattr(call, name) for name in TEXT_FIELDS}
    if lone_surrogate_path(values) is None:
        return call
    return dataclasses.replace(call, **scrub(values))


def _clean(text: str | None) -> str | None:
    """User text safe for SQLite and its FTS5 parser (no NUL bytes, no lone surrogates)."""
    if text is None:
        return None
    return text.replace("\x00", " ").encode("utf-8", "ignore").decode("utf-8").strip() or None


def _preview(value: Any, width: int = 160) -> str:
    if value is None:
        return ""
    data = _loads(value)
    if isinstance(data, list) and data and isinstance(data[-1], dict) and "content" in data[-1]:
        data = data[-1]["content"]
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    text = text.replace("\n", " ⏎ ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "ts": row["ts"], "run_id": row["run_id"], "step": row["step"],
        "record_key": row["record_key"], "attempt": row["attempt"], "kind": row["kind"],
        "model": mask_secrets(row["model"]), "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"], "latency_ms": row["latency_ms"],
        "error": mask_secrets(row["error"]), "cached": bool(row["cached"]),
        "prompt": _preview(row["prompt"]), "response": _preview(row["response"]),
    }
