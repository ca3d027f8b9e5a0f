"""Metrics on predictions: probability matrices for classes, values for regression.

``score(metric, y, pred)`` returns the metric in its natural units;
``utility`` turns it into "greater is better" for the search.
"""

from __future__ import annotations

import numpy as np

LOWER_IS_BETTER = {"log_loss", "rmse", "mae"}


def score(metric: str, y: np.ndarray, pred: np.ndarray) -> float:
    """``metric`` of predictions ``pred`` (class probabilities of shape (n, k), or values)."""
    from sklearn import metrics as m

    if metric == "rmse":
        return float(np.sqrt(m.mean_squared_error(y, pred)))
    if metric == "mae":
        return float(m.mean_absolute_error(y, pred))
    if metric == "r2":
        return float(m.r2_score(y, pred))
    proba = np.asarray(pred, dtype=float)
    k = proba.shape[1]
    labels = np.arange(k)
    if metric == "roc_auc":
        if k == 2:
            return float(m.roc_auc_score(y, proba[:, 1]))
        return float(m.roc_auc_score(y, _renorm(proba), multi_class="ovr", labels=labels))
    if metric == "log_loss":
        return float(m.log_loss(y, np.clip(_renorm(proba), 1e-15, 1), labels=labels))
    hard = proba.argmax(axis=1)
    if metric == "accuracy":
        return float(m.accuracy_score(y, hard))
    if metric == "balanced_accuracy":
        return float(m.balanced_accuracy_score(y, hard))
    if metric == "f1":
        return float(m.f1_score(y, hard, average="binary" if k == 2 else "macro", zero_division=0))
    if metric == "f1_macro":
        return float(m.f1_score(y, hard, average="macro", labels=labels, zero_division=0))
    raise ValueError(f"unknown metric {metric!r}")


def utility(metric: str, value: float) -> float:
    """Greater-is-better version of a metric value."""
    return -value if metric in LOWER_IS_BETTER else value


def _renorm(p: np.ndarray) -> np.ndarray:
    s = p.sum(axis=1, keepdims=True)
    s[s == 0] = 1.0
    return p / s
