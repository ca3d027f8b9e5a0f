"""Feature importance on held-out rows: permutation importance (any model) and
TreeSHAP (LightGBM's exact ``pred_contrib``) for LightGBM members."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .metrics import score, utility


def fold_predict(model: Any, df: pd.DataFrame, k: int) -> np.ndarray:
    """Blend of each member's fold-``k`` model: a prediction on rows that fold never trained on."""
    from .families import predict

    est = model.best_estimator_
    total = None
    for m in est.members:
        X = np.asarray(est.preparers[est.flavours[m.family]][k].transform(df), dtype=np.float64)
        p = m.weight * predict(m.models[k], X, est.n_classes)
        total = p if total is None else total + p
    return total


def permutation_importance(model: Any, *, repeats: int = 3, seed: int = 0) -> pd.DataFrame:
    """Drop of the plan's metric when each feature is shuffled, on fold 0's validation rows."""
    df, y = model.holdout_
    metric = model.plan_.metric
    base = utility(metric, score(metric, y, fold_predict(model, df, 0)))
    rng = np.random.default_rng(seed)
    rows = []
    for col in df.columns:
        drops = []
        for _ in range(repeats):
            shuffled = df.copy()
            shuffled[col] = df[col].to_numpy()[rng.permutation(len(df))]
            drops.append(base - utility(metric, score(metric, y, fold_predict(model, shuffled, 0))))
        rows.append({"feature": col, "importance": float(np.mean(drops)), "std": float(np.std(drops))})
    return pd.DataFrame(rows).sort_values("importance", ascending=False).reset_index(drop=True)


def lgbm_shap(model: Any) -> pd.DataFrame | None:
    """Mean |SHAP value| per prepared feature of the best LightGBM member (fold 0), or None."""
    est = model.best_estimator_
    members = [m for m in est.members if m.family == "lgbm"]
    if not members:
        return None
    m = max(members, key=lambda m: m.weight)
    df, _ = model.holdout_
    prep = est.preparers["native"][0]
    X = np.asarray(prep.transform(df), dtype=np.float64)
    contrib = m.models[0].predict(X, pred_contrib=True)
    if isinstance(contrib, list):  # some versions return one matrix per class
        contrib = np.hstack(contrib)
    names = list(prep.get_feature_names_out())
    width = len(names) + 1
    per_class = np.asarray(contrib).reshape(len(X), -1, width)[:, :, :-1]  # drop the bias column
    values = np.abs(per_class).mean(axis=(0, 1))
    return pd.DataFrame({"feature": names, "mean_abs_shap": values}).sort_values(
        "mean_abs_shap", ascending=False).reset_index(drop=True)
