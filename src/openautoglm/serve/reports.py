"""Run detail: predictions against gold labels, metrics, calibration, throughput and latency.

Metrics come from :mod:`openautoglm.evaluation` (accuracy, macro-F1, confusion matrix via
scikit-learn; calibration bins, ECE and Brier); without scikit-learn the run detail still
shows progress, timing and per-record results.
"""

from __future__ import annotations

from typing import Any, Sequence

LOW_CONFIDENCE = 0.6


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation (numpy's default); ``None`` for no values."""
    if not values:
        return None
    import numpy as np

    return float(np.percentile(values, q))


def predicted_label(output: Any) -> str | None:
    """The answer a stored output gives (its label, else its text or value), stripped."""
    if not isinstance(output, dict):
        return None
    for key in ("label", "text", "value"):
        if key in output and output[key] is not None:
            return str(output[key]).strip()
    return None


def predictions(inputs: list[dict[str, Any]], rows: list[dict[str, Any]], label_column: str | None,
                text_fields: Sequence[str]) -> list[dict[str, Any]]:
    """One row per committed record: text, gold, predicted, confidence, correct, scores, error."""
    out = []
    for row in rows:
        idx = row["idx"]
        rec = inputs[idx] if idx < len(inputs) else {}
        output = row["output"] if row["status"] == "done" else None
        gold = None
        if label_column and rec.get(label_column) not in (None, ""):
            gold = str(rec[label_column]).strip()
        pred = predicted_label(output)
        conf = output.get("confidence") if isinstance(output, dict) else None
        conf = float(conf) if isinstance(conf, (int, float)) and not isinstance(conf, bool) else None
        scores = output.get("scores") if isinstance(output, dict) else None
        out.append({
            "idx": idx,
            "text": " | ".join(str(rec.get(f, "")) for f in text_fields),
            "gold": gold,
            "predicted": pred,
            "confidence": conf,
            "correct": (pred == gold) if gold is not None else None,
            "scores": scores if isinstance(scores, dict) else None,
            "method": output.get("method") if isinstance(output, dict) else None,
            "error": row["error"],
        })
    return out


def quality(preds: list[dict[str, Any]], labels: list[str]) -> dict[str, Any] | None:
    """Accuracy, macro-F1, confusion and calibration over the records that have gold labels."""
    scored = [p for p in preds if p["gold"] is not None]
    if not scored:
        return None
    try:
        from ..evaluation.calibration import N_BINS, calibration_report
        from ..evaluation.metrics import classification_metrics

        metrics = classification_metrics([p["gold"] for p in scored], [p["predicted"] for p in scored],
                                         labels or sorted({p["gold"] for p in scored}))
    except Exception as exc:  # noqa: BLE001 - scikit-learn missing: say so, keep the rest
        return {"unavailable": f"{exc}"}
    confident = [p for p in scored if p["confidence"] is not None]
    with_scores = [p for p in confident if p["scores"]]
    metrics["calibration"] = calibration_report(
        [p["confidence"] for p in confident], [bool(p["correct"]) for p in confident],
        [p["scores"] for p in with_scores], [p["gold"] for p in with_scores], N_BINS,
    )
    metrics["n"] = len(scored)
    return metrics


def timing(chunks: list[dict[str, Any]], started: float | None) -> dict[str, Any]:
    """Throughput and per-record latency (a record waits for its whole chunk) over time."""
    if not chunks:
        return {"records": 0, "series": [], "windows": [], "p50_ms": None, "p95_ms": None, "p99_ms": None, "records_per_s": None}
    t0 = started or (chunks[0]["ts"] - chunks[0]["seconds"])
    per_record: list[float] = []
    series = []
    for c in chunks:
        per_record += [c["seconds"]] * c["n"]
        series.append({"t": round(c["ts"] - t0, 3), "n": c["n"], "latency_ms": c["seconds"] * 1000,
                       "records_per_s": c["n"] / c["seconds"] if c["seconds"] > 0 else None})
    busy = sum(c["seconds"] for c in chunks)
    wall = max(chunks[-1]["ts"] - t0, busy)
    return {
        "records": len(per_record),
        "series": series,
        "windows": windows(chunks, t0, wall),
        "p50_ms": percentile(per_record, 50) * 1000,
        "p95_ms": percentile(per_record, 95) * 1000,
        "p99_ms": percentile(per_record, 99) * 1000,
        "records_per_s": len(per_record) / wall if wall > 0 else None,
        "wall_s": wall,
    }


def windows(chunks: list[dict[str, Any]], t0: float, wall: float, n: int = 12) -> list[dict[str, Any]]:
    """Per-record latency P50/P95/P99 and throughput in ``n`` equal time windows of the run."""
    width = max(wall / n, 1e-9)
    out = []
    for w in range(n):
        lo, hi = w * width, (w + 1) * width
        inside = [c for c in chunks if lo <= c["ts"] - t0 < hi or (w == n - 1 and c["ts"] - t0 >= hi)]
        if not inside:
            continue
        lat = [c["seconds"] for c in inside for _ in range(c["n"])]
        out.append({"t": round(hi, 3), "records": len(lat), "records_per_s": len(lat) / width,
                    "p50_ms": percentile(lat, 50) * 1000, "p95_ms": percentile(lat, 95) * 1000,
                    "p99_ms": percentile(lat, 99) * 1000})
    return out


def filter_predictions(preds: list[dict[str, Any]], kind: str | None, threshold: float = LOW_CONFIDENCE
                       ) -> list[dict[str, Any]]:
    if kind in (None, "", "all"):
        return preds
    if kind == "wrong":
        return [p for p in preds if p["correct"] is False or p["error"]]
    if kind == "low":
        return [p for p in preds if p["confidence"] is not None and p["confidence"] < threshold]
    if kind == "errors":
        return [p for p in preds if p["error"]]
    if kind == "right":
        return [p for p in preds if p["correct"] is True]
    raise ValueError(f"unknown filter {kind!r}: use all, wrong, low, errors or right")
