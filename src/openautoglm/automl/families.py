"""Model families: search spaces (Optuna), sensible first configurations, builders.

Each family names the preparation flavour it needs (see :mod:`.prep`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

FLAVOUR = {"lgbm": "native", "hgb": "native", "et": "trees", "rf": "trees", "linear": "linear"}
FAMILIES = tuple(FLAVOUR)

#: a second, more regularised LightGBM start (small or noisy tables)
LGBM_SLOW = {"lgbm_learning_rate": 0.03, "lgbm_num_leaves": 12, "lgbm_min_child_samples": 40,
             "lgbm_subsample": 0.8, "lgbm_colsample_bytree": 0.5, "lgbm_reg_lambda": 5.0, "lgbm_reg_alpha": 1e-3}

#: first configuration tried for each family (library defaults, lightly tuned)
DEFAULTS: dict[str, dict[str, Any]] = {
    "lgbm": {"lgbm_learning_rate": 0.05, "lgbm_num_leaves": 31, "lgbm_min_child_samples": 20,
             "lgbm_subsample": 0.9, "lgbm_colsample_bytree": 0.8, "lgbm_reg_lambda": 1.0, "lgbm_reg_alpha": 1e-3},
    "linear": {"linear_C": 1.0},
    "hgb": {"hgb_learning_rate": 0.08, "hgb_max_leaf_nodes": 31, "hgb_min_samples_leaf": 20,
            "hgb_l2_regularization": 1e-3, "hgb_max_features": 1.0},
    "et": {"et_n_estimators": 100, "et_max_features": 0.5, "et_min_samples_leaf": 3},
    "rf": {"rf_n_estimators": 100, "rf_max_features": 0.3, "rf_min_samples_leaf": 3},
}


def suggest(trial: Any, family: str) -> dict[str, Any]:
    """Sample ``family``'s hyperparameters on an Optuna trial (names prefixed by family)."""
    if family == "lgbm":
        return {
            "lgbm_learning_rate": trial.suggest_float("lgbm_learning_rate", 0.01, 0.3, log=True),
            "lgbm_num_leaves": trial.suggest_int("lgbm_num_leaves", 4, 256, log=True),
            "lgbm_min_child_samples": trial.suggest_int("lgbm_min_child_samples", 2, 100, log=True),
            "lgbm_subsample": trial.suggest_float("lgbm_subsample", 0.5, 1.0),
            "lgbm_colsample_bytree": trial.suggest_float("lgbm_colsample_bytree", 0.2, 1.0),
            "lgbm_reg_lambda": trial.suggest_float("lgbm_reg_lambda", 1e-3, 30.0, log=True),
            "lgbm_reg_alpha": trial.suggest_float("lgbm_reg_alpha", 1e-3, 10.0, log=True),
        }
    if family == "linear":
        return {"linear_C": trial.suggest_float("linear_C", 1e-3, 1e3, log=True)}
    if family == "hgb":
        return {
            "hgb_learning_rate": trial.suggest_float("hgb_learning_rate", 0.01, 0.3, log=True),
            "hgb_max_leaf_nodes": trial.suggest_int("hgb_max_leaf_nodes", 4, 128, log=True),
            "hgb_min_samples_leaf": trial.suggest_int("hgb_min_samples_leaf", 2, 100, log=True),
            "hgb_l2_regularization": trial.suggest_float("hgb_l2_regularization", 1e-4, 10.0, log=True),
            "hgb_max_features": trial.suggest_float("hgb_max_features", 0.3, 1.0),
        }
    if family in ("et", "rf"):
        return {
            f"{family}_n_estimators": trial.suggest_int(f"{family}_n_estimators", 50, 300, step=50),
            f"{family}_max_features": trial.suggest_float(f"{family}_max_features", 0.1, 1.0),
            f"{family}_min_samples_leaf": trial.suggest_int(f"{family}_min_samples_leaf", 1, 30, log=True),
        }
    raise ValueError(f"unknown family {family!r}")


def build(family: str, params: dict[str, Any], *, task: str, class_weight: str | None, seed: int,
          n_jobs: int, categorical: list[int]) -> Any:
    """An unfitted estimator of ``family`` with ``params`` (prefixed names)."""
    p = {k.split("_", 1)[1]: v for k, v in params.items() if k.startswith(family + "_")}
    cls = task != "regression"
    if family == "lgbm":
        import lightgbm as lgb

        common = dict(n_estimators=3000, learning_rate=p["learning_rate"], num_leaves=p["num_leaves"],
                      min_child_samples=p["min_child_samples"], subsample=p["subsample"], subsample_freq=1,
                      colsample_bytree=p["colsample_bytree"], reg_lambda=p["reg_lambda"], reg_alpha=p["reg_alpha"],
                      random_state=seed, n_jobs=n_jobs, verbose=-1)
        return lgb.LGBMClassifier(class_weight=class_weight, **common) if cls else lgb.LGBMRegressor(**common)
    if family == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        common = dict(learning_rate=p["learning_rate"], max_iter=1000, max_leaf_nodes=p["max_leaf_nodes"],
                      min_samples_leaf=p["min_samples_leaf"], l2_regularization=p["l2_regularization"],
                      max_features=p["max_features"], early_stopping=True, validation_fraction=0.1,
                      n_iter_no_change=20, categorical_features=categorical or None, random_state=seed)
        return HistGradientBoostingClassifier(class_weight=class_weight, **common) if cls \
            else HistGradientBoostingRegressor(**common)
    if family in ("et", "rf"):
        from sklearn import ensemble as E

        name = {"et": "ExtraTrees", "rf": "RandomForest"}[family] + ("Classifier" if cls else "Regressor")
        kw = dict(n_estimators=p["n_estimators"], max_features=p["max_features"],
                  min_samples_leaf=p["min_samples_leaf"], n_jobs=n_jobs, random_state=seed)
        if cls:
            kw["class_weight"] = class_weight
        return getattr(E, name)(**kw)
    if family == "linear":
        from sklearn.linear_model import LogisticRegression, Ridge

        if cls:
            return LogisticRegression(C=p["C"], max_iter=2000, class_weight=class_weight)
        return Ridge(alpha=1.0 / p["C"])
    raise ValueError(f"unknown family {family!r}")


def fit_predict(family: str, model: Any, Xtr: np.ndarray, ytr: np.ndarray, Xva: np.ndarray, yva: np.ndarray,
                *, n_classes: int, deadline: float, categorical: list[int]) -> tuple[Any, np.ndarray]:
    """Fit on the training fold (LightGBM stops early on the validation fold and at the
    deadline) and predict the validation fold (probabilities of all ``n_classes``)."""
    if family == "lgbm":
        import lightgbm as lgb

        def stop_at_deadline(env: Any) -> None:
            if time.monotonic() > deadline:
                raise lgb.callback.EarlyStopException(env.iteration, env.evaluation_result_list)

        import inspect

        evals = {"eval_X": (Xva,), "eval_y": (yva,)} if "eval_X" in inspect.signature(model.fit).parameters \
            else {"eval_set": [(Xva, yva)]}
        model.fit(Xtr, ytr, categorical_feature=categorical or "auto",
                  callbacks=[lgb.early_stopping(50, verbose=False), stop_at_deadline], **evals)
    else:
        model.fit(Xtr, ytr)
    return model, predict(model, Xva, n_classes)


def predict(model: Any, X: np.ndarray, n_classes: int) -> np.ndarray:
    """Class probabilities over all ``n_classes`` (even if a fold missed one), or values."""
    if n_classes == 0:
        return np.asarray(model.predict(X), dtype=float)
    proba = model.predict_proba(X)
    if proba.shape[1] == n_classes:
        return proba
    full = np.zeros((X.shape[0], n_classes))
    full[:, np.asarray(model.classes_, dtype=int)] = proba
    return full
