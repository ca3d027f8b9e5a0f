"""``AutoML``: the scikit-learn-style estimator that ties planning, preparation,
search, ensembling and reporting together."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ..errors import InputDataError
from .errors import PlanError
from .io import align_labels, clean_frame, require_columns

ORDER = ("lgbm", "linear", "hgb", "et", "rf")
#: share of ``time_budget`` LLM planning may use (no question is asked after it)
PLAN_SHARE = 0.5


class AutoML(BaseEstimator):
    """Natural-language-driven tabular AutoML.

    Parameters
    ----------
    instruction: what to predict, in plain words ("predict whether a customer churns").
    time_budget: wall-clock seconds for the whole ``fit`` (planning, preparation, search,
        ensemble), an upper bound.  LLM planning counts inside it: no question is asked after
        half of it (the heuristic planner decides the rest, and the plan's notes say so).
        What cannot be interrupted, loading the planning model or a question under way, can
        overrun that half; the search then still gets half the budget, and ``over_budget_``
        (printed by the CLI) says by how many seconds the fit went over.  ``plan_seconds_``,
        ``search_seconds_`` and ``time_used_`` say where the time went.
    seed: makes folds, sampler and models reproducible (given the same number of trials).
    planner: ``"auto"`` (LLM checked by heuristics), ``"llm"`` or ``"heuristic"``.
    model: the LLM for planning: a model string for the backends registry (``"local"``,
        ``"zhipu:glm-4-flash"``, ...), a config dict (``{"model": "openai:gpt-4o-mini",
        "base_url": ..., "api_key": ...}``) or a Backend; default ``local``.
    target, task, metric, drop, class_weight: override the plan (recorded as ``user``).
    cv: folds: an int, a scikit-learn splitter, or a list of (train, valid) index arrays.
    families: model families to search, from ``lgbm, linear, hgb, et, rf``.
    ensemble: blend the best trials greedily when it improves the out-of-fold score.
    max_trials: stop after this many trials even if time is left.
    n_jobs: threads per model (1 is fastest on small, shared machines).
    progress: show a progress bar with the current best.
    """

    def __init__(self, instruction: str = "", *, time_budget: float = 60.0, seed: int = 0, planner: str = "auto",
                 model: Any = None, target: str | None = None, task: str | None = None, metric: str | None = None,
                 drop: Sequence[str] | None = None, class_weight: str | None = "auto", cv: Any = None,
                 families: Sequence[str] | None = None, ensemble: bool = True, max_trials: int | None = None,
                 n_jobs: int = 1, progress: bool = False) -> None:
        self.instruction = instruction
        self.time_budget = time_budget
        self.seed = seed
        self.planner = planner
        self.model = model
        self.target = target
        self.task = task
        self.metric = metric
        self.drop = drop
        self.class_weight = class_weight
        self.cv = cv
        self.families = families
        self.ensemble = ensemble
        self.max_trials = max_trials
        self.n_jobs = n_jobs
        self.progress = progress

    # ------------------------------------------------------------------ fit

    def fit(self, X: Any, y: Any = None) -> "AutoML":
        """Plan and search on ``X`` (a DataFrame holding the target column, or features with ``y``)."""
        from .families import FLAVOUR
        from .model import BaggedEnsemble, Member
        from .plan import PlanField, make_plan
        from .prep import categorical_indices, feature_kinds, leakage_check, make_preparer
        from .profile import profile_frame
        from .search import FoldCache, run_search

        t0 = time.monotonic()
        if self.time_budget is None or self.time_budget <= 0:
            raise PlanError(f"time_budget={self.time_budget!r} must be a positive number of seconds",
                            hint="e.g. time_budget=60")
        deadline = t0 + float(self.time_budget)
        df = self._frame(X, y)
        self.profile_ = profile_frame(df, seed=self.seed)
        target = self.target
        if y is not None and target is None:
            target = df.columns[-1]
        self.plan_ = make_plan(df, self.instruction, self.profile_, planner=self.planner, backend=self.model,
                               target=target, task=self.task, metric=self.metric, drop=self.drop,
                               class_weight=self.class_weight, deadline=t0 + PLAN_SHARE * float(self.time_budget))
        plan = self.plan_
        self.plan_seconds_ = time.monotonic() - t0
        # only an uninterruptible model load can overrun planning's share; the search still gets
        # at least half the budget then (over_budget_ reports the overrun)
        deadline = max(deadline, time.monotonic() + (1 - PLAN_SHARE) * float(self.time_budget))
        search_started = time.monotonic()
        tgt = plan.target
        if df[tgt].isna().any():
            n_missing = int(df[tgt].isna().sum())
            plan.notes.append(f"{n_missing} rows without a value of {tgt!r} were left out")
            df = df[df[tgt].notna()].reset_index(drop=True)
        y_enc = self._encode_target(df[tgt], plan.task)
        features = [c for c in df.columns if c != tgt and c not in plan.drop
                    and self.profile_[c].kind not in ("id", "constant")]
        groups = feature_kinds(self.profile_, features)
        self.leakage_ = leakage_check(df[features], y_enc, groups, plan.task, seed=self.seed)
        if self.leakage_:
            features = [c for c in features if c not in self.leakage_]
            groups = feature_kinds(self.profile_, features)
            f = plan.fields["drop"]
            plan.fields["drop"] = PlanField(sorted(set(f.value) | set(self.leakage_)), f.source,
                                            f.reason + "; leakage: " + "; ".join(f"{c} {r}" for c, r in self.leakage_.items()),
                                            f.llm)
            plan.notes.append(f"dropped as leakage: {sorted(self.leakage_)}")
        if not any(groups.values()):
            raise PlanError(f"no usable feature columns left (dropped: {plan.drop})",
                            hint="keep at least one numeric, categorical, datetime or text column")
        self.feature_names_in_ = np.asarray(features, dtype=object)
        self.n_features_in_ = len(features)
        self.feature_groups_ = groups
        folds = self._folds(df, y_enc, plan.task)
        self.folds_ = folds
        cache = FoldCache(df[features], folds, lambda fl: make_preparer(groups, fl, seed=self.seed))
        fams = self._families()
        cat_native = categorical_indices(groups, "native")
        small = [i for i, c in zip(cat_native, groups["categorical"]) if self.profile_[c].n_unique <= 250]
        n_classes = len(self.classes_) if plan.task != "regression" else 0
        reserve = min(5.0, max(0.5, 0.03 * float(self.time_budget)))
        bar = _ProgressBar(deadline - t0, plan.metric) if self.progress else None
        from threadpoolctl import threadpool_limits

        try:
            with threadpool_limits(limits=self.n_jobs):
                trials = run_search(cache, y_enc, task=plan.task, metric=plan.metric, n_classes=n_classes,
                                    families=fams, deadline=deadline - reserve, seed=self.seed, n_jobs=self.n_jobs,
                                    class_weight=plan.class_weight, categorical={"lgbm": cat_native, "hgb": small},
                                    max_trials=self.max_trials, on_trial=bar.update if bar else None)
        finally:
            if bar:
                bar.close()
        self.trials_ = trials
        done = sorted((t for t in trials if t.state == "complete" and t.models), key=lambda t: -t.utility)
        if not done:
            errors = "; ".join(sorted({t.error for t in trials if t.error}))[:400]
            raise PlanError(f"no model finished within time_budget={self.time_budget}s"
                            + (f" (errors: {errors})" if errors else ""),
                            hint="raise the time budget (--time-budget), or use fewer folds (cv=3)")
        weights = [1.0]
        members_t = [done[0]]
        blend_value = done[0].value
        if self.ensemble and len(done) > 1:
            from .ensemble import greedy_weights

            w, v = greedy_weights([t.oof for t in done], y_enc, plan.metric)
            from .metrics import utility

            if utility(plan.metric, v) > done[0].utility + 1e-9:
                members_t = [t for t, wi in zip(done, w) if wi > 0]
                weights = [wi for wi in w if wi > 0]
                blend_value = v
        self.ensemble_weights_ = {t.number: wt for t, wt in zip(members_t, weights)}
        members = [Member(t.family, t.number, wt, t.params, t.models) for t, wt in zip(members_t, weights)]
        needed = {FLAVOUR[m.family] for m in members}
        self.best_estimator_ = BaggedEnsemble(members, {fl: cache.preparers(fl) for fl in needed}, dict(FLAVOUR),
                                              n_classes)
        self.oof_ = sum(wt * t.oof for t, wt in zip(members_t, weights))
        self.cv_score_ = float(blend_value)
        self.best_trial_ = done[0].number
        for t in trials:  # keep the saved model small: out-of-fold arrays only for the members
            if t.number not in self.ensemble_weights_:
                t.oof = None
                t.models = None
        va0 = np.sort(folds[0][1])[:1000]  # held-out rows of fold 0: importance in the report
        self.holdout_ = (df.iloc[va0][features].reset_index(drop=True), y_enc[va0])
        self.y_ = y_enc
        self.time_used_ = time.monotonic() - t0
        self.search_seconds_ = time.monotonic() - search_started
        self.over_budget_ = max(0.0, self.time_used_ - float(self.time_budget))
        self.n_rows_ = len(df)
        return self

    # ------------------------------------------------------------------ predict

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        self._check_fitted()
        if self.plan_.task == "regression":
            raise PlanError("predict_proba is for classification; this model does regression", hint="use predict()")
        return self.best_estimator_.predict_raw(self._features(X))

    def predict(self, X: Any) -> np.ndarray:
        """Classes (for classification) or values (for regression)."""
        self._check_fitted()
        raw = self.best_estimator_.predict_raw(self._features(X))
        if self.plan_.task == "regression":
            return raw
        return self.classes_[np.argmax(raw, axis=1)]

    def score(self, X: Any, y: Any = None) -> float:
        """scikit-learn's score: accuracy for classification, R² for regression (target column
        in ``X`` or given as ``y``); :meth:`score_metric` gives the plan's metric."""
        self._check_fitted()
        return self.score_metric(X, y, metric="r2" if self.plan_.task == "regression" else "accuracy")

    def score_metric(self, X: Any, y: Any = None, metric: str | None = None) -> float:
        """The plan's metric (or ``metric``) on ``X`` (target column in ``X`` or given as ``y``),
        in natural units: ROC AUC, log-loss, RMSE... (lower is better for losses)."""
        from .metrics import score

        self._check_fitted()
        metric = metric or self.plan_.metric
        df = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
        truth = pd.Series(y) if y is not None else df.get(self.plan_.target)
        if truth is None:
            raise InputDataError(f"score(): no target column {self.plan_.target!r} and no y given",
                                 hint="pass y, or data that includes the target column")
        raw = self.best_estimator_.predict_raw(self._features(df))
        if self.plan_.task == "regression":
            return score(metric, pd.to_numeric(truth).to_numpy(dtype=float), raw)
        return score(metric, self.encode_labels(truth), raw)

    # ------------------------------------------------------------------ scikit-learn tags

    @property
    def _estimator_type(self) -> str:  # what scikit-learn < 1.6 reads
        from .sklearn_api import estimator_kind

        return estimator_kind(self)

    def __sklearn_tags__(self) -> Any:  # scikit-learn >= 1.6
        from .sklearn_api import sklearn_tags

        return sklearn_tags(self, super().__sklearn_tags__())

    def encode_labels(self, labels: Any) -> np.ndarray:
        """Indices into ``classes_`` (labels differing only by case/spaces/trailing dots are aligned)."""
        self._check_fitted()
        values = [self._label_key(v) for v in align_labels(list(labels), list(self.classes_))]
        lookup = {self._label_key(c): i for i, c in enumerate(self.classes_)}
        unknown = sorted({str(v) for v in values if v not in lookup})
        if unknown:
            raise InputDataError(f"labels {unknown[:5]} were not seen in training (classes: {list(self.classes_)})",
                                 hint="check the target column of the evaluation data")
        return np.asarray([lookup[v] for v in values])

    def leaderboard(self) -> pd.DataFrame:
        """One row per trial (best first) plus the ensemble: metric, family, time, parameters."""
        self._check_fitted()
        m = self.plan_.metric
        rows = []
        for t in self.trials_:
            rows.append({"model": f"{t.family}#{t.number}", "family": t.family, "trial": t.number, "state": t.state,
                         m: t.value if t.state == "complete" else None, "folds": len(t.fold_values), "seconds": round(t.seconds, 2),
                         "weight": round(self.ensemble_weights_.get(t.number, 0.0), 3),
                         "params": json.dumps({k.split("_", 1)[1]: _round(v) for k, v in t.params.items()})})
        if len(self.ensemble_weights_) > 1:
            rows.append({"model": "ensemble", "family": "ensemble", "trial": -1, "state": "complete", m: self.cv_score_,
                         "folds": len(self.folds_), "seconds": 0.0, "weight": 1.0,
                         "params": json.dumps({f"#{k}": round(v, 3) for k, v in self.ensemble_weights_.items()})})
        board = pd.DataFrame(rows)
        from .metrics import LOWER_IS_BETTER

        ok = board["state"] == "complete"
        board = pd.concat([board[ok].sort_values(m, ascending=m in LOWER_IS_BETTER), board[~ok]])
        return board.reset_index(drop=True)

    def report(self, path: str | Path, *, data: Any = None) -> Path:
        """Write the HTML report (profile, plan, leaderboard, search curve, diagnostics, importance)."""
        from .report import write_report

        self._check_fitted()
        return write_report(self, Path(path), data=data)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Save to folder ``path``: ``model.joblib``, ``plan.json``, ``leaderboard.csv``."""
        import joblib

        self._check_fitted()
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, out / "model.joblib", compress=3)
        (out / "plan.json").write_text(json.dumps(self.plan_.to_dict(), indent=2, ensure_ascii=False, default=str),
                                       encoding="utf-8")
        self.leaderboard().to_csv(out / "leaderboard.csv", index=False)
        return out

    # ------------------------------------------------------------------ helpers

    def _frame(self, X: Any, y: Any) -> pd.DataFrame:
        if isinstance(X, (str, Path)):
            from .io import read_table

            X = read_table(X)
        if not isinstance(X, pd.DataFrame):
            X = pd.DataFrame(np.asarray(X), columns=[f"x{i}" for i in range(np.asarray(X).shape[1])])
        df = clean_frame(X)
        if y is not None:
            name = getattr(y, "name", None) or self.target or "target"
            if len(y) != len(df):
                raise InputDataError(f"fit(): X has {len(df)} rows but y has {len(y)}", hint="pass matching X and y")
            df[name] = np.asarray(y)
            if self.target is None:
                df = df[[c for c in df.columns if c != name] + [name]]
        return df

    def _encode_target(self, s: pd.Series, task: str) -> np.ndarray:
        if task == "regression":
            vals = pd.to_numeric(s, errors="coerce")
            if vals.isna().any():
                raise PlanError(f"target {s.name!r} has non-numeric values for regression",
                                hint="choose a numeric target or a classification task")
            self.classes_ = np.asarray([])
            return vals.to_numpy(dtype=float)
        values = s.to_numpy()
        try:
            classes, codes = np.unique(values, return_inverse=True)
        except TypeError:  # mixed types
            classes, codes = np.unique(values.astype(str), return_inverse=True)
        self.classes_ = classes
        counts = np.bincount(codes)
        if counts.min() < 2:
            rare = [str(c) for c, n in zip(classes, counts) if n < 2]
            raise PlanError(f"class(es) {rare[:5]} of {s.name!r} occur only once: cannot cross-validate",
                            hint="remove those rows or merge rare classes")
        return codes

    def _folds(self, df: pd.DataFrame, y: np.ndarray, task: str) -> list[tuple[np.ndarray, np.ndarray]]:
        from sklearn.model_selection import KFold, StratifiedKFold

        cv = self.cv
        if cv is not None and not isinstance(cv, int) and not hasattr(cv, "split"):
            return [(np.asarray(a), np.asarray(b)) for a, b in cv]
        if cv is None or isinstance(cv, int):
            k = cv or (5 if len(df) <= 50000 else 3)
            if task != "regression":
                k = max(2, min(k, int(np.bincount(y).min())))
                cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=self.seed)
            else:
                cv = KFold(n_splits=k, shuffle=True, random_state=self.seed)
        return [(a, b) for a, b in cv.split(np.zeros(len(y)), y)]

    def _families(self) -> list[str]:
        fams = list(self.families) if self.families else list(ORDER)
        bad = [f for f in fams if f not in ORDER]
        if bad:
            raise PlanError(f"unknown model families {bad}", hint=f"choose from {list(ORDER)}")
        return fams

    def _features(self, X: Any) -> pd.DataFrame:
        if isinstance(X, (str, Path)):
            from .io import read_table

            X = read_table(X)
        if not isinstance(X, pd.DataFrame):
            X = pd.DataFrame(np.asarray(X), columns=list(self.feature_names_in_))
        df = clean_frame(X, source="prediction data")
        require_columns(df, self.feature_names_in_, "prediction data")
        return df[list(self.feature_names_in_)]

    @staticmethod
    def _label_key(v: Any) -> Any:
        return v.item() if hasattr(v, "item") else v

    def _check_fitted(self) -> None:
        if not hasattr(self, "best_estimator_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this AutoML is not fitted yet: call fit(df) first")


def load(path: str | Path) -> AutoML:
    """Load a model saved with :meth:`AutoML.save` (a folder or its ``model.joblib``)."""
    import joblib

    p = Path(path)
    f = p / "model.joblib" if p.is_dir() else p
    if not f.exists():
        raise InputDataError(f"{f}: no saved model here", hint="pass the --out folder of 'openautoglm automl'")
    model = joblib.load(f)
    if not isinstance(model, AutoML):
        raise InputDataError(f"{f}: holds a {type(model).__name__}, not an AutoML model",
                             hint="pass the --out folder of 'openautoglm automl'")
    return model


def _round(v: Any) -> Any:
    return round(v, 5) if isinstance(v, float) else v


class _ProgressBar:
    """A rich progress bar over the time budget, showing trials and the current best."""

    def __init__(self, seconds: float, metric: str) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.metric = metric
        self.start = time.monotonic()
        from rich.console import Console

        self.progress = Progress(TextColumn("[bold]automl[/]"), BarColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.description}"), transient=False, console=Console(stderr=True))
        self.progress.start()
        self.task = self.progress.add_task("starting", total=seconds)

    def update(self, trial: Any, best: Any) -> None:
        desc = f"trial {trial.number} {trial.family} {trial.state}"
        if best is not None:
            desc += f" · best {self.metric}={best.value:.4f} ({best.family}#{best.number})"
        self.progress.update(self.task, completed=time.monotonic() - self.start, description=desc)

    def close(self) -> None:
        self.progress.stop()
