"""Greedy ensemble selection (Caruana et al., 2004) on out-of-fold predictions."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .metrics import score, utility


def greedy_weights(oofs: Sequence[np.ndarray], y: np.ndarray, metric: str, *, rounds: int = 40) -> tuple[list[float], float]:
    """Weights (summing to 1) over ``oofs`` chosen greedily with replacement; and the
    blended out-of-fold metric.  Starts from the single best member."""
    if not oofs:
        raise ValueError("no members")
    singles = [utility(metric, score(metric, y, p)) for p in oofs]
    counts = np.zeros(len(oofs))
    first = int(np.argmax(singles))
    counts[first] = 1
    blend = oofs[first].astype(float).copy()
    best_u = singles[first]
    for _ in range(rounds):
        n = counts.sum()
        cand_u = [utility(metric, score(metric, y, (blend * n + p) / (n + 1))) for p in oofs]
        j = int(np.argmax(cand_u))
        if cand_u[j] <= best_u + 1e-12:
            break
        counts[j] += 1
        blend = (blend * n + oofs[j]) / (n + 1)
        best_u = max(best_u, cand_u[j])
    weights = (counts / counts.sum()).tolist()
    return weights, score(metric, y, sum(w * p for w, p in zip(weights, oofs)))
