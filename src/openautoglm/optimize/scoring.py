"""Scoring for the optimizer: the selection metric and the label-bias fit of calibration."""

from __future__ import annotations

import math
from typing import Sequence


def fit_label_bias(probs: Sequence[Sequence[float]], prior: Sequence[float], iterations: int = 50) -> list[float]:
    """Log-space biases that make the mean predicted distribution match ``prior``."""
    n_labels = len(prior)
    bias = [0.0] * n_labels
    logs = [[math.log(max(p, 1e-12)) for p in row] for row in probs]
    for _ in range(iterations):
        mean = [0.0] * n_labels
        for row in logs:
            shifted = [v + b for v, b in zip(row, bias)]
            top = max(shifted)
            exps = [math.exp(v - top) for v in shifted]
            total = sum(exps)
            for j, e in enumerate(exps):
                mean[j] += e / total / len(logs)
        bias = [b + 0.5 * (math.log(max(q, 1e-12)) - math.log(max(m, 1e-12))) for b, q, m in zip(bias, prior, mean)]
    top = max(bias)
    return [b - top for b in bias]


def score(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str], metric: str) -> float:
    if not gold:
        return 0.0
    if metric == "accuracy":
        return sum(g == p for g, p in zip(gold, pred)) / len(gold)
    f1s = []
    for lab in labels:
        tp = sum(g == lab and p == lab for g, p in zip(gold, pred))
        fp = sum(g != lab and p == lab for g, p in zip(gold, pred))
        fn = sum(g == lab and p != lab for g, p in zip(gold, pred))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / len(f1s) if f1s else 0.0


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
