"""Calibration of label confidences: expected calibration error, Brier score, reliability bins.

Pure Python (no numpy), so it is cheap to import and easy to check by hand.

* **ECE** — split the top-label confidences into ``n_bins`` equal-width bins
  ``(lo, hi]`` over ``[0, 1]`` (a confidence of exactly 0 goes to the first bin);
  ``ECE = Σ_b (n_b / N) · |accuracy_b − mean confidence_b|``.
* **Brier** — the multi-class Brier score: the mean over examples of
  ``Σ_k (p_k − y_k)²`` where ``y`` is the one-hot gold label.  It lies in ``[0, 2]``;
  with two classes it is twice sklearn's binary ``brier_score_loss``.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Mapping, Sequence

N_BINS = 15


def _bin_index(confidence: float, edges: Sequence[float]) -> int:
    """Index of the bin ``(edges[i], edges[i + 1]]`` holding ``confidence`` (0 → bin 0)."""
    return min(max(bisect_left(edges, confidence) - 1, 0), len(edges) - 2)


def reliability_bins(
    confidences: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS
) -> list[dict[str, Any]]:
    """Per-bin counts, accuracy and mean confidence (``None`` for empty bins)."""
    if len(confidences) != len(correct):
        raise ValueError("confidences and correct must have the same length")
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    edges = [i / n_bins for i in range(n_bins + 1)]
    sums = [[0, 0.0, 0] for _ in range(n_bins)]  # count, confidence sum, correct count
    for conf, ok in zip(confidences, correct):
        conf = float(conf)
        if not 0.0 <= conf <= 1.0:
            raise ValueError(f"confidence {conf} is outside [0, 1]")
        b = sums[_bin_index(conf, edges)]
        b[0] += 1
        b[1] += conf
        b[2] += bool(ok)
    return [
        {
            "lo": edges[i],
            "hi": edges[i + 1],
            "count": n,
            "accuracy": hits / n if n else None,
            "confidence": total / n if n else None,
        }
        for i, (n, total, hits) in enumerate(sums)
    ]


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], n_bins: int = N_BINS
) -> float:
    """ECE with equal-width bins on the top-label confidence (0 when calibrated, ≤ 1)."""
    bins = reliability_bins(confidences, correct, n_bins)
    total = sum(b["count"] for b in bins)
    if not total:
        raise ValueError("no confidences to calibrate")
    return sum(b["count"] / total * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])


def brier_score(scores: Sequence[Mapping[str, float]], gold: Sequence[str]) -> float:
    """Mean multi-class Brier score of probability dicts against gold labels.

    A gold label missing from a score dict counts as predicted with probability 0.
    """
    if len(scores) != len(gold):
        raise ValueError("scores and gold must have the same length")
    if not scores:
        raise ValueError("no scores to compute a Brier score on")
    total = 0.0
    for dist, label in zip(scores, gold):
        total += sum((float(p) - (k == label)) ** 2 for k, p in dist.items())
        if label not in dist:
            total += 1.0
    return total / len(scores)


def calibration_report(
    confidences: Sequence[float],
    correct: Sequence[bool],
    scores: Sequence[Mapping[str, float]] = (),
    gold_for_scores: Sequence[str] = (),
    n_bins: int = N_BINS,
) -> dict[str, Any] | None:
    """ECE, Brier, reliability bins and mean confidence/accuracy; ``None`` without confidences."""
    if not confidences:
        return None
    bins = reliability_bins(confidences, correct, n_bins)
    n = len(confidences)
    return {
        "n": n,
        "n_bins": n_bins,
        "ece": sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]),
        "brier": brier_score(scores, gold_for_scores) if scores else None,
        "mean_confidence": sum(float(c) for c in confidences) / n,
        "accuracy": sum(bool(c) for c in correct) / n,
        "bins": bins,
    }
