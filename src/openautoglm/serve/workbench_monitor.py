"""Monitoring over time: one event per pipeline record answered, kept in the project store.

Background runs log each record of a chunk (latency: its chunk's wall time, as the run page
counts it; correct: whether the answer matches the gold column, when the run has one), the
task API each ``/api/pipelines/{name}/run`` and ``/api/try`` request.  :meth:`EventLog.series`
buckets the last hour (1-minute buckets) or day (15-minute buckets) per pipeline: requests per
second, latency P50/P95/P99, error rate and accuracy where gold exists.  Prometheus' metrics
(``/metrics``) are separate and keep their names; this is the store's history of the same traffic.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Literal

from .traces import ServerStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS serve_events (
    ts REAL NOT NULL,
    pipeline TEXT NOT NULL,
    source TEXT NOT NULL,
    latency_ms REAL,
    error INTEGER NOT NULL DEFAULT 0,
    correct INTEGER
);
CREATE INDEX IF NOT EXISTS serve_events_ts ON serve_events(ts);
"""

#: window name -> (span in seconds, bucket width in seconds)
WINDOWS = {"hour": (3600, 60), "day": (86400, 900)}
#: events read per query at most (the newest); enough for every bucket of a busy day's percentiles
MAX_EVENTS = 500_000

Window = Literal["hour", "day"]


class EventLog:
    """``serve_events`` of one store: written by runs and requests, read by the monitor page."""

    def __init__(self, store: ServerStore) -> None:
        self.store = store
        with store.lock:
            store.store.add_schema(SCHEMA)

    def add(self, pipeline: str, source: str, events: Iterable[tuple[float, bool, bool | None]],
            ts: float | None = None) -> None:
        """Record ``(latency_ms, failed, correct-or-None)`` events of ``pipeline``."""
        now = time.time() if ts is None else ts
        rows = [(now, pipeline[:200], source, float(lat), int(bool(err)), None if ok is None else int(bool(ok)))
                for lat, err, ok in events]
        if not rows:
            return
        for at in range(0, len(rows), 500):  # one INSERT per 500 events (the store autocommits)
            chunk = rows[at:at + 500]
            self.store.execute("INSERT INTO serve_events (ts, pipeline, source, latency_ms, error, correct) VALUES "
                               + ",".join(["(?,?,?,?,?,?)"] * len(chunk)), [v for row in chunk for v in row])

    def pipelines(self, since: float) -> list[str]:
        rows = self.store.execute("SELECT DISTINCT pipeline FROM serve_events WHERE ts >= ? ORDER BY pipeline",
                                  (since,))
        return [r["pipeline"] for r in rows]

    def series(self, window: Window = "hour", pipeline: str | None = None,
               now: float | None = None) -> dict[str, Any]:
        """Per-bucket requests/s, latency percentiles (ms), error rate and accuracy (None: no data)."""
        import numpy as np

        span, width = WINDOWS[window]
        end = time.time() if now is None else now
        start = end - span
        where, args = "ts >= ? AND ts <= ?", [start, end]
        if pipeline:
            where += " AND pipeline = ?"
            args.append(pipeline)
        rows = self.store.execute(
            f"SELECT ts, latency_ms, error, correct FROM serve_events WHERE {where} ORDER BY ts DESC LIMIT ?",
            (*args, MAX_EVENTS))
        n_buckets = span // width
        ts = np.array([r["ts"] for r in rows], dtype=float)
        lat = np.array([r["latency_ms"] if r["latency_ms"] is not None else np.nan for r in rows], dtype=float)
        err = np.array([r["error"] for r in rows], dtype=float)
        cor = np.array([np.nan if r["correct"] is None else r["correct"] for r in rows], dtype=float)
        bucket = np.minimum(((ts - start) // width).astype(int), n_buckets - 1) if len(rows) else np.array([], int)
        out: dict[str, list[Any]] = {k: [] for k in ("t", "requests", "qps", "p50_ms", "p95_ms", "p99_ms",
                                                     "error_rate", "accuracy", "gold")}
        for b in range(n_buckets):
            inside = bucket == b
            n = int(inside.sum())
            out["t"].append(round(start + (b + 1) * width, 3))
            out["requests"].append(n)
            out["qps"].append(n / width)
            values = lat[inside & ~np.isnan(lat)]
            for q in (50, 95, 99):
                out[f"p{q}_ms"].append(round(float(np.percentile(values, q)), 3) if len(values) else None)
            out["error_rate"].append(round(float(err[inside].mean()), 4) if n else None)
            gold = cor[inside & ~np.isnan(cor)]
            out["gold"].append(int(len(gold)))
            out["accuracy"].append(round(float(gold.mean()), 4) if len(gold) else None)
        gold_all = cor[~np.isnan(cor)]
        totals = {"requests": len(rows), "errors": int(err.sum()),
                  "error_rate": round(float(err.mean()), 4) if len(rows) else None,
                  "accuracy": round(float(gold_all.mean()), 4) if len(gold_all) else None,
                  "p50_ms": round(float(np.nanpercentile(lat, 50)), 3) if np.isfinite(lat).any() else None,
                  "p95_ms": round(float(np.nanpercentile(lat, 95)), 3) if np.isfinite(lat).any() else None}
        return {"window": window, "bucket_s": width, "start": start, "end": end, "pipeline": pipeline,
                "pipelines": self.pipelines(start), "totals": totals, "series": out}
