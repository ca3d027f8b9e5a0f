"""openautoglm.automl vs FLAML at the same wall-clock budget, on identical CV folds.

Datasets: Telco churn (AUC), Adult (AUC; its own train/test files), breast_cancer
(AUC), wine (log-loss and accuracy), diabetes (RMSE).  Both systems get the same
training rows, the same feature columns, the same 5 CV folds (FLAML through a
splitter object), the same seed, one thread per model, and are scored on the
same held-out test rows.

    python bench/automl_vs_flaml.py              # 60 s per dataset per system (~11 min)
    python bench/automl_vs_flaml.py --quick      # 15 s per dataset per system (~3 min)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))


class FixedFolds:
    """A splitter that yields given (train, valid) index pairs (FLAML's split_type accepts it)."""

    def __init__(self, folds: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.folds = folds

    def split(self, X=None, y=None, groups=None):  # noqa: ANN001, ANN201
        yield from self.folds

    def get_n_splits(self, X=None, y=None, groups=None) -> int:  # noqa: ANN001
        return len(self.folds)


def datasets(seed: int) -> list[dict]:
    """name, instruction, train frame, test frame, target, task, metric."""
    from sklearn import datasets as D
    from sklearn.model_selection import train_test_split

    from openautoglm.automl.io import read_table

    out = []
    telco = DATA / "telco_churn" / "WA_Fn-UseC_-Telco-Customer-Churn.csv"
    if telco.exists():
        df = read_table(telco)
        tr, te = train_test_split(df, test_size=0.2, random_state=seed, stratify=df["Churn"])
        out.append(dict(name="telco_churn", instruction="predict whether a customer churns", train=tr, test=te,
                        task="binary", metric="roc_auc"))
    adult = DATA / "adult"
    if (adult / "adult.data").exists():
        out.append(dict(name="adult", instruction="predict whether income exceeds 50K",
                        train=read_table(adult / "adult.data"), test=read_table(adult / "adult.test"),
                        task="binary", metric="roc_auc"))
    for name, loader, task, metric, inst in (
        ("breast_cancer", D.load_breast_cancer, "binary", "roc_auc", "classify tumours as malignant or benign"),
        ("wine", D.load_wine, "multiclass", "log_loss", "predict the wine cultivar class"),
        ("diabetes", D.load_diabetes, "regression", "rmse", "predict disease progression (the target)"),
    ):
        df = loader(as_frame=True).frame
        strat = df["target"] if task != "regression" else None
        tr, te = train_test_split(df, test_size=0.25, random_state=seed, stratify=strat)
        out.append(dict(name=name, instruction=inst, train=tr, test=te, task=task, metric=metric))
    return out


def run_ours(ds: dict, budget: float, seed: int, folds: list) -> dict:
    from openautoglm.automl import AutoML

    t0 = time.monotonic()
    model = AutoML(ds["instruction"], time_budget=budget, seed=seed, planner="heuristic", cv=folds, n_jobs=1,
                   metric=ds["metric"]).fit(ds["train"])
    used = time.monotonic() - t0
    test = ds["test"]
    if ds["task"] == "regression":
        pred = model.predict(test)
    else:
        pred = model.predict_proba(test)
    return {"model": model, "pred": pred, "time": used,
            "trials": sum(t.state == "complete" for t in model.trials_),
            "best": ", ".join(f"{m['family']}:{m['weight']:.2f}" for m in model.best_estimator_.describe())}


def run_flaml(ds: dict, budget: float, seed: int, folds: list, features: list[str], classes: np.ndarray | None,
              numeric_text: list[str]) -> dict:
    from flaml import AutoML as FLAML

    def frame(df: pd.DataFrame) -> pd.DataFrame:
        X = df[features].copy()
        for c in numeric_text:  # give FLAML numbers where the column holds numbers as text
            X[c] = pd.to_numeric(X[c], errors="coerce")
        for c in X.columns:
            if X[c].dtype == object:
                X[c] = X[c].astype("category")
        return X

    target = ds["target"]
    Xtr = frame(ds["train"])
    ytr = ds["train"][target].to_numpy()
    if classes is not None:
        ytr = np.searchsorted(classes, ytr)
    metric = {"rmse": "rmse", "roc_auc": "roc_auc", "log_loss": "log_loss"}[ds["metric"]]
    task = "regression" if ds["task"] == "regression" else "classification"
    automl = FLAML()
    t0 = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        automl.fit(Xtr.reset_index(drop=True), ytr, task=task, metric=metric, time_budget=budget,
                   eval_method="cv", split_type=FixedFolds(folds), seed=seed, n_jobs=1, verbose=0)
    used = time.monotonic() - t0
    Xte = frame(ds["test"]).reset_index(drop=True)
    pred = automl.predict(Xte) if task == "regression" else automl.predict_proba(Xte)
    return {"pred": pred, "time": used, "best": automl.best_estimator, "trials": len(automl.config_history)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60.0, help="seconds per dataset per system")
    ap.add_argument("--quick", action="store_true", help="15 s per dataset per system")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated dataset names")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    budget = 15.0 if args.quick else args.budget
    from sklearn.model_selection import KFold, StratifiedKFold

    from openautoglm.automl.metrics import LOWER_IS_BETTER, score
    from openautoglm.automl.plan import make_plan
    from openautoglm.automl.profile import profile_frame

    rows = []
    t_all = time.monotonic()
    for ds in datasets(args.seed):
        if args.only and ds["name"] not in args.only.split(","):
            continue
        train = ds["train"].reset_index(drop=True)
        ds["train"] = train
        prof = profile_frame(train)
        plan = make_plan(train, ds["instruction"], prof, planner="heuristic", metric=ds["metric"])
        ds["target"] = tgt = plan.target
        features = [c for c in train.columns if c != tgt and c not in plan.drop]
        numeric_text = [c for c in features if prof[c].numeric_text]
        y = train[tgt].to_numpy()
        classes = None
        if ds["task"] != "regression":
            classes = np.unique(y)
            splitter = StratifiedKFold(5, shuffle=True, random_state=args.seed)
        else:
            splitter = KFold(5, shuffle=True, random_state=args.seed)
        folds = list(splitter.split(np.zeros(len(y)), y))
        ours = run_ours(ds, budget, args.seed, folds)
        flaml = run_flaml(ds, budget, args.seed, folds, features, classes, numeric_text)
        if ds["task"] == "regression":
            y_test = ds["test"][tgt].to_numpy(dtype=float)
        else:
            y_test = ours["model"].encode_labels(ds["test"][tgt])  # aligns '>50K.' with '>50K' generically
        metrics = [ds["metric"]] + (["accuracy"] if ds["task"] == "multiclass" else [])
        for m in metrics:
            a, b = score(m, y_test, ours["pred"]), score(m, y_test, np.asarray(flaml["pred"]))
            lower = m in LOWER_IS_BETTER
            win = "tie" if abs(a - b) < 1e-4 else ("openautoglm" if (a < b) == lower else "flaml")
            rows.append({"dataset": ds["name"], "metric": m, "openautoglm": a, "flaml": b, "winner": win,
                         "ratio": a / b if b else float("nan"), "budget_s": budget,
                         "ours_time_s": ours["time"], "flaml_time_s": flaml["time"],
                         "ours_trials": ours["trials"], "flaml_trials": flaml["trials"],
                         "ours_model": ours["best"], "flaml_model": flaml["best"],
                         "n_train": len(train), "n_test": len(ds["test"]), "seed": args.seed})
        print(f"[{time.monotonic() - t_all:6.0f} s] {ds['name']}: done", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 40):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    wins = sum(r["winner"] in ("openautoglm", "tie") for r in rows if r["metric"] != "accuracy")
    print(f"\nopenautoglm at least as good on {wins}/{sum(r['metric'] != 'accuracy' for r in rows)} primary metrics; "
          f"budget {budget:g} s per system per dataset; seed {args.seed}; total {time.monotonic() - t_all:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
