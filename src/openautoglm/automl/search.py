"""The search: Optuna (TPE + median pruning) over model families and their
hyperparameters, scored by cross-validation under a wall-clock deadline.

Every trial fits one model per fold on features prepared once per
(flavour, fold); the out-of-fold predictions feed the ensemble and the fold
models are kept (for the best trials) to predict new data as a bag.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from . import families as F
from .metrics import score, utility


@dataclass
class TrialResult:
    number: int
    family: str
    params: dict[str, Any]
    state: str  # complete | pruned | timeout | failed
    value: float | None = None  # metric in natural units (mean over folds)
    utility: float | None = None
    fold_values: list[float] = field(default_factory=list)
    seconds: float = 0.0
    finished_at: float = 0.0  # seconds since the search started
    error: str = ""
    oof: np.ndarray | None = None
    models: list[Any] | None = None  # one per fold


class FoldCache:
    """Prepared features per (flavour, fold), computed on first use."""

    def __init__(self, df: Any, folds: Sequence[tuple[np.ndarray, np.ndarray]], make: Callable[[str], Any]) -> None:
        self.df, self.folds, self.make = df, folds, make
        self._data: dict[tuple[str, int], tuple[Any, np.ndarray, np.ndarray]] = {}

    def get(self, flavour: str, k: int) -> tuple[Any, np.ndarray, np.ndarray]:
        key = (flavour, k)
        if key not in self._data:
            tr, va = self.folds[k]
            prep = self.make(flavour)
            Xtr = np.asarray(prep.fit_transform(self.df.iloc[tr]), dtype=np.float64)
            Xva = np.asarray(prep.transform(self.df.iloc[va]), dtype=np.float64)
            self._data[key] = (prep, Xtr, Xva)
        return self._data[key]

    def preparers(self, flavour: str) -> list[Any]:
        return [self.get(flavour, k)[0] for k in range(len(self.folds))]


def run_search(
    cache: FoldCache,
    y: np.ndarray,
    *,
    task: str,
    metric: str,
    n_classes: int,
    families: Sequence[str],
    deadline: float,
    seed: int,
    n_jobs: int,
    class_weight: str | None,
    categorical: dict[str, list[int]],
    max_trials: int | None = None,
    keep_models: int = 8,
    on_trial: Callable[[TrialResult, TrialResult | None], None] | None = None,
) -> list[TrialResult]:
    """Search until ``deadline`` (``time.monotonic()``) or ``max_trials``; return all trials."""
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 'multivariate'/'group' are flagged experimental
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                             n_startup_trials=len(families) + 4)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=max(5, len(families)), n_warmup_steps=0)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    for fam in families:
        study.enqueue_trial({"family": fam, **F.DEFAULTS[fam]})
        if fam == "lgbm":
            study.enqueue_trial({"family": fam, **F.LGBM_SLOW})
    start = time.monotonic()
    fold_cost: dict[str, float] = {}
    results: list[TrialResult] = []
    best: TrialResult | None = None
    n_folds = len(cache.folds)
    skipped = 0
    while max_trials is None or len(results) < max_trials:  # noqa: PLR1702
        if time.monotonic() + min(fold_cost.values(), default=0.0) > deadline:
            break
        trial = study.ask()
        fam = trial.suggest_categorical("family", list(families))
        params = F.suggest(trial, fam)
        res = TrialResult(number=trial.number, family=fam, params=params, state="complete")
        t0 = time.monotonic()
        oof = np.zeros((len(y), n_classes)) if n_classes else np.zeros(len(y))
        models: list[Any] = []
        try:
            for k in range(n_folds):
                est = fold_cost.get(fam)
                if est is not None and time.monotonic() + est > deadline:
                    res.state = "timeout"
                    break
                f0 = time.monotonic()
                _, Xtr, Xva = cache.get(F.FLAVOUR[fam], k)
                tr, va = cache.folds[k]
                cats = categorical.get(fam, [])
                model = F.build(fam, params, task=task, class_weight=class_weight, seed=seed + k,
                                n_jobs=n_jobs, categorical=cats)
                model, pred = F.fit_predict(fam, model, Xtr, y[tr], Xva, y[va], n_classes=n_classes,
                                            deadline=deadline, categorical=cats)
                oof[va] = pred
                models.append(model)
                res.fold_values.append(score(metric, y[va], pred))
                cost = time.monotonic() - f0
                fold_cost[fam] = cost if fam not in fold_cost else 0.5 * (fold_cost[fam] + cost)
                trial.report(float(np.mean([utility(metric, v) for v in res.fold_values])), step=k)
                if k < n_folds - 1 and trial.should_prune():
                    res.state = "pruned"
                    break
        except Exception as exc:  # a configuration that fails is a failed trial, not a failed search
            res.state, res.error = "failed", f"{type(exc).__name__}: {exc}"[:300]
        res.seconds = time.monotonic() - t0
        res.finished_at = time.monotonic() - start
        if res.state == "complete":
            res.value = score(metric, y, oof)
            res.utility = utility(metric, res.value)
            res.oof, res.models = oof, models
            study.tell(trial, res.utility)
            if best is None or res.utility > best.utility:  # type: ignore[operator]
                best = res
        elif res.state == "pruned":
            if res.fold_values:
                res.value = float(np.mean(res.fold_values))
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        if res.state != "timeout" or res.fold_values:  # not-started trials are not worth listing
            results.append(res)
        _forget_models(results, keep_models)
        if on_trial is not None:
            on_trial(res, best)
        skipped = skipped + 1 if res.state == "timeout" and not res.fold_values else 0
        if skipped >= 20:  # only unaffordable configurations left
            break
    return results


def _forget_models(results: list[TrialResult], keep: int) -> None:
    """Keep fold models (and out-of-fold predictions) only for the ``keep`` best complete
    trials plus the best trial of each family: memory stays bounded and the ensemble
    still has different families to blend when one family fills the top."""
    done = sorted((r for r in results if r.state == "complete"), key=lambda r: -(r.utility or -np.inf))
    kept = {id(r) for r in done[:keep]}
    seen: set[str] = set()
    for r in done:
        if r.family not in seen:
            seen.add(r.family)
            kept.add(id(r))
    for r in done:
        if id(r) not in kept:
            r.models = None
            r.oof = None
