"""Prometheus metrics in the text exposition format (no client library needed).

:class:`Metrics` holds counters, histograms and gauges (a gauge reads its value from a
callable when scraped).  Label values are escaped; routes are recorded by their template
(``/api/runs/{run_id}``), never the raw path, so the number of series stays bounded.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable, Sequence

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

Labels = tuple[tuple[str, str], ...]


def _labels(labels: dict[str, str] | None) -> Labels:
    return tuple(sorted((k, str(v)) for k, v in (labels or {}).items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_labels(labels: Iterable[tuple[str, str]]) -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels]
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metrics:
    """Thread-safe registry; :meth:`render` gives the ``/metrics`` body."""

    def __init__(self, prefix: str = "openautoglm") -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._help: dict[str, tuple[str, str]] = {}  # name -> (type, help)
        self._counters: dict[str, dict[Labels, float]] = {}
        self._hists: dict[str, tuple[tuple[float, ...], dict[Labels, list[float]]]] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        self._define_defaults()

    def _define_defaults(self) -> None:
        self.counter("http_requests_total", "HTTP requests by method, route and status code")
        self.histogram("http_request_duration_seconds", "HTTP request latency by route", LATENCY_BUCKETS)
        self.counter("http_errors_total", "HTTP responses with status >= 400 by route and status class")
        self.counter("tokens_total", "Model tokens by kind (prompt, completion) and endpoint")
        self.counter("model_calls_total", "Backend calls by kind (generate, score)")
        self.histogram("batch_size", "Requests per backend call (micro-batching)", BATCH_BUCKETS)
        self.histogram("batch_duration_seconds", "Seconds per backend call", LATENCY_BUCKETS)
        self.counter("rate_limited_total", "Requests refused by the per-key rate limit")

    # -- definitions ------------------------------------------------------------------
    def _name(self, name: str) -> str:
        return f"{self.prefix}_{name}"

    def counter(self, name: str, help: str) -> None:
        with self._lock:
            self._help[self._name(name)] = ("counter", help)
            self._counters.setdefault(self._name(name), {})

    def histogram(self, name: str, help: str, buckets: Sequence[float]) -> None:
        with self._lock:
            self._help[self._name(name)] = ("histogram", help)
            self._hists.setdefault(self._name(name), (tuple(buckets), {}))

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        with self._lock:
            self._help[self._name(name)] = ("gauge", help)
            self._gauges[self._name(name)] = read

    # -- updates ------------------------------------------------------------------------
    def inc(self, name: str, value: float = 1.0, labels: dict[str, str] | None = None) -> None:
        key = self._name(name)
        with self._lock:
            series = self._counters[key]
            lab = _labels(labels)
            series[lab] = series.get(lab, 0.0) + value

    def observe(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        key = self._name(name)
        with self._lock:
            buckets, series = self._hists[key]
            lab = _labels(labels)
            row = series.get(lab)
            if row is None:
                row = series[lab] = [0.0] * (len(buckets) + 2)  # bucket counts..., count, sum
            for i, edge in enumerate(buckets):
                if value <= edge:
                    row[i] += 1
            row[-2] += 1
            row[-1] += value

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A counter's current value (0 if never incremented)."""
        with self._lock:
            return self._counters.get(self._name(name), {}).get(_labels(labels), 0.0)

    # -- exposition ----------------------------------------------------------------------
    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            gauges = self._gauges
            for name, (kind, help) in sorted(self._help.items()):
                lines.append(f"# HELP {name} {help}")
                lines.append(f"# TYPE {name} {kind}")
                if kind == "counter":
                    for lab, v in sorted(self._counters[name].items()):
                        lines.append(f"{name}{_fmt_labels(lab)} {_num(v)}")
                elif kind == "histogram":
                    buckets, series = self._hists[name]
                    for lab, row in sorted(series.items()):
                        for edge, count in zip(buckets, row):
                            lines.append(f"{name}_bucket{_fmt_labels(lab + (('le', _num(edge)),))} {_num(count)}")
                        lines.append(f"{name}_bucket{_fmt_labels(lab + (('le', '+Inf'),))} {_num(row[-2])}")
                        lines.append(f"{name}_count{_fmt_labels(lab)} {_num(row[-2])}")
                        lines.append(f"{name}_sum{_fmt_labels(lab)} {_num(row[-1])}")
                else:
                    try:
                        value = float(gauges[name]())
                    except Exception:  # noqa: BLE001 - a broken gauge must not break the scrape
                        value = float("nan")
                    lines.append(f"{name} {'NaN' if value != value else _num(value)}")
        return "\n".join(lines) + "\n"
