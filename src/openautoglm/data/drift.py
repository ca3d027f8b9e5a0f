"""``drift``: compare a reference and a current dataset (or time windows of one dataset).

Measures, each with a threshold that marks the comparison as failed (for CI):

* label distribution: PSI, KL(current ‖ reference) and Jensen–Shannon divergence (base 2, in [0, 1]);
* text length: PSI over the reference's deciles;
* embeddings: the reference's top principal components, PSI per component over the
  reference's deciles (max and mean reported), and the cosine distance between mean vectors.

PSI < 0.1 is usually read as stable, 0.1–0.25 as moderate, > 0.25 as a large shift.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import InputDataError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

EPS = 1e-4
DEFAULT_THRESHOLDS = {"label_psi": 0.2, "label_js": 0.1, "length_psi": 0.2, "embedding_psi_max": 0.25}


def _distribution(counts: Mapping[str, float], keys: Sequence[str]) -> list[float]:
    total = sum(counts.get(k, 0) for k in keys) or 1
    return [max(counts.get(k, 0) / total, EPS) for k in keys]


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two distributions over the same bins (floored at 1e-4)."""
    return float(sum((a - e) * math.log(a / e) for e, a in zip(_floor(expected), _floor(actual))))


def kl(p: Sequence[float], q: Sequence[float]) -> float:
    """KL(p ‖ q) in nats (floored at 1e-4)."""
    return float(sum(a * math.log(a / b) for a, b in zip(_floor(p), _floor(q))))


def js(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen–Shannon divergence, base 2 (0 = identical, 1 = disjoint)."""
    p, q = _floor(p), _floor(q)
    m = [(a + b) / 2 for a, b in zip(p, q)]
    return float((kl(p, m) + kl(q, m)) / 2 / math.log(2))


def _floor(values: Sequence[float]) -> list[float]:
    floored = [max(float(v), EPS) for v in values]
    total = sum(floored)
    return [v / total for v in floored]


def binned(reference: "np.ndarray", current: "np.ndarray", bins: int = 10) -> tuple[list[float], list[float]]:
    """Shares of both samples in the reference's quantile bins."""
    import numpy as np

    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1)
    cur = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1)
    return list(ref / max(1, ref.sum())), list(cur / max(1, cur.sum()))


@dataclass
class DriftResult:
    """Metrics, thresholds and the names of the metrics over their threshold."""

    metrics: dict[str, float | None]
    thresholds: dict[str, float]
    failed: list[str]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "failed": self.failed, "metrics": self.metrics, "thresholds": self.thresholds,
                "details": self.details}

    def to_html(self) -> str:
        from .report import generic_html

        rows = [(k, "–" if v is None else round(v, 4), self.thresholds.get(k, "–"), "FAIL" if k in self.failed else "ok")
                for k, v in self.metrics.items()]
        labels = self.details.get("labels", {})
        label_rows = [(k, labels["reference"].get(k, 0), labels["current"].get(k, 0)) for k in labels.get("keys", [])]
        return generic_html("Drift report", {"ok": self.ok, "failed": ", ".join(self.failed) or "none"},
                            [("Metrics", ["metric", "value", "threshold", "status"], rows),
                             ("Labels", ["label", "reference", "current"], label_rows)])


def drift(reference: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]], *,
          text_column: str | None = "text", label_column: str | None = None, embeddings: bool = True,
          embedder: str = "auto", components: int = 5, thresholds: Mapping[str, float] | None = None,
          sample: int | None = 5000, seed: int = 0) -> DriftResult:
    """Compare ``current`` records to ``reference`` records."""
    import numpy as np

    if not reference or not current:
        raise InputDataError("drift needs two non-empty datasets")
    limits = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    metrics: dict[str, float | None] = {}
    details: dict[str, Any] = {"rows": {"reference": len(reference), "current": len(current)}}
    for name, rows in (("reference", reference), ("current", current)):
        for col in (text_column, label_column):
            if col and col not in rows[0]:
                raise InputDataError(f"{name} data has no column {col!r}; it has: {', '.join(map(str, rows[0]))}",
                                     hint="pass --text-column / --label-column")
    if label_column:
        ref_c = Counter(str(r.get(label_column)) for r in reference)
        cur_c = Counter(str(r.get(label_column)) for r in current)
        keys = sorted(set(ref_c) | set(cur_c))
        p, q = _distribution(ref_c, keys), _distribution(cur_c, keys)
        metrics.update(label_psi=psi(p, q), label_kl=kl(q, p), label_js=js(p, q))
        details["labels"] = {"keys": keys, "reference": dict(ref_c), "current": dict(cur_c)}
    if text_column:
        rng = np.random.default_rng(seed)

        def pick(rows: Sequence[Mapping[str, Any]]) -> list[str]:
            texts = ["" if r.get(text_column) is None else str(r.get(text_column)) for r in rows]
            if sample and len(texts) > sample:
                texts = [texts[i] for i in sorted(rng.choice(len(texts), sample, replace=False))]
            return texts

        ref_t, cur_t = pick(reference), pick(current)
        e, a = binned(np.array([len(t) for t in ref_t], float), np.array([len(t) for t in cur_t], float))
        metrics["length_psi"] = psi(e, a)
        if embeddings:
            from ..embeddings import get_embedder

            model = get_embedder(embedder, corpus=ref_t + cur_t)
            ref_v, cur_v = model.encode(ref_t), model.encode(cur_t)
            mean = ref_v.mean(axis=0)
            k = max(1, min(components, ref_v.shape[1], len(ref_v) - 1))
            _, _, vt = np.linalg.svd(ref_v - mean, full_matrices=False)
            per = []
            for c in range(k):
                e, a = binned((ref_v - mean) @ vt[c], (cur_v - mean) @ vt[c])
                per.append(psi(e, a))
            m1, m2 = ref_v.mean(axis=0), cur_v.mean(axis=0)
            metrics.update(embedding_psi_max=max(per), embedding_psi_mean=float(np.mean(per)),
                           embedding_mean_cosine_distance=float(1 - m1 @ m2 / (np.linalg.norm(m1) * np.linalg.norm(m2) + 1e-12)))
            details["embedding_psi_per_component"] = [round(v, 4) for v in per]
    failed = [k for k, v in metrics.items() if v is not None and k in limits and v > limits[k]]
    return DriftResult(metrics, dict(limits), failed, details)


def drift_over_time(records: Sequence[Mapping[str, Any]], time_column: str, *, freq: str = "M",
                    **kwargs: Any) -> list[tuple[str, DriftResult]]:
    """Each time window (pandas period ``freq``: D, W, M, Q, Y) against the first window."""
    import pandas as pd

    if not records or time_column not in records[0]:
        raise InputDataError(f"no time column {time_column!r}", hint="pass --time-column with a date column")
    times = pd.to_datetime(pd.Series([r.get(time_column) for r in records]), errors="coerce")
    if times.isna().all():
        raise InputDataError(f"column {time_column!r} holds no parseable dates", hint="use ISO dates like 2024-05-01")
    periods = times.dt.to_period(freq).astype(str)
    windows: dict[str, list[Mapping[str, Any]]] = {}
    for record, period, bad in zip(records, periods, times.isna()):
        if not bad:
            windows.setdefault(period, []).append(record)
    keys = sorted(windows)
    base = windows[keys[0]]
    return [(key, drift(base, windows[key], **kwargs)) for key in keys[1:]]
