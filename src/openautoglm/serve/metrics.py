"""Prometheus metrics for the server, on ``prometheus_client`` with one registry per app.

:class:`Metrics` wraps a private :class:`prometheus_client.CollectorRegistry` (never the
process-wide default), so two apps in one process (tests, embedding) keep separate counters.
Metrics are named ``<prefix>_<name>`` and take their labels by keyword; each metric's label
names are fixed when it is defined (:data:`DEFAULTS` for the server's own).  Routes are recorded
by their template (``/api/runs/{run_id}``), never the raw path, so the number of series stays
bounded.  A gauge reads its value from a callable when scraped; a failing callable gives NaN
instead of breaking the scrape.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
except ImportError as exc:  # pragma: no cover - prometheus-client is in the server extra
    raise ImportError("server metrics need prometheus-client: pip install 'openautoglm[server]'") from exc

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

#: the server's metrics: name -> (kind, help, label names[, buckets]); names and labels are a contract
DEFAULTS: tuple[tuple[Any, ...], ...] = (
    ("counter", "http_requests_total", "HTTP requests by method, route and status code", ("method", "route", "status")),
    ("histogram", "http_request_duration_seconds", "HTTP request latency by route", ("route",), LATENCY_BUCKETS),
    ("counter", "http_errors_total", "HTTP responses with status >= 400 by route and status class", ("class", "route")),
    ("counter", "tokens_total", "Model tokens by kind (prompt, completion) and endpoint", ("endpoint", "kind")),
    ("counter", "model_calls_total", "Backend calls by kind (generate, score)", ("kind",)),
    ("histogram", "batch_size", "Requests per backend call (micro-batching)", ("kind",), BATCH_BUCKETS),
    ("histogram", "batch_duration_seconds", "Seconds per backend call", ("kind",), LATENCY_BUCKETS),
    ("counter", "rate_limited_total", "Requests refused by the per-key rate limit", ("key",)),
)


def _safe(read: Callable[[], float]) -> Callable[[], float]:
    def value() -> float:
        try:
            return float(read())
        except Exception:  # noqa: BLE001 - a broken gauge must not break the scrape
            return float("nan")

    return value


class Metrics:
    """The server's metrics in their own registry; :meth:`render` gives the ``/metrics`` body."""

    def __init__(self, prefix: str = "openautoglm") -> None:
        self.prefix = prefix
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._metrics: dict[str, Any] = {}
        for kind, name, help, labelnames, *buckets in DEFAULTS:
            if kind == "counter":
                self.counter(name, help, labelnames)
            else:
                self.histogram(name, help, buckets[0], labelnames)

    # -- definitions (idempotent: a second definition of a name keeps the first) -------------
    def _define(self, name: str, make: Callable[[str], Any]) -> Any:
        with self._lock:
            if name not in self._metrics:
                self._metrics[name] = make(f"{self.prefix}_{name}")
            return self._metrics[name]

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        self._define(name, lambda full: Counter(full, help, tuple(labelnames), registry=self.registry))

    def histogram(self, name: str, help: str, buckets: Sequence[float], labelnames: Sequence[str] = ()) -> None:
        self._define(name, lambda full: Histogram(full, help, tuple(labelnames), buckets=tuple(buckets),
                                                  registry=self.registry))

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        """A gauge whose value is ``read()`` at scrape time (redefining it replaces ``read``)."""
        self._define(name, lambda full: Gauge(full, help, registry=self.registry)).set_function(_safe(read))

    # -- updates ------------------------------------------------------------------------------
    def _series(self, name: str, labels: dict[str, str] | None) -> Any:
        metric = self._metrics[name]
        return metric.labels(**{k: str(v) for k, v in labels.items()}) if labels else metric

    def inc(self, name: str, value: float = 1.0, labels: dict[str, str] | None = None) -> None:
        self._series(name, labels).inc(value)

    def observe(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        self._series(name, labels).observe(value)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A counter's current value (0 if never incremented)."""
        sample = f"{self.prefix}_{name.removesuffix('_total')}_total"
        return self.registry.get_sample_value(sample, {k: str(v) for k, v in (labels or {}).items()}) or 0.0

    # -- exposition ------------------------------------------------------------------------------
    def render(self) -> str:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry).decode("utf-8")
