from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from openautoglm.automl import AutoML, load
from openautoglm.automl.errors import PlanError
from openautoglm.automl.io import read_table

from .conftest import shared

FAST = dict(planner="heuristic", time_budget=60, max_trials=4, cv=3, families=["lgbm", "linear"])


@pytest.fixture(scope="module")
def cancer():
    return load_breast_cancer(as_frame=True).frame


@pytest.fixture(scope="module")
def fitted(cancer):
    return AutoML("classify tumours as malignant or benign", seed=0, **FAST).fit(cancer)


def test_fit_predict_proba_leaderboard(fitted, cancer):
    m = fitted
    assert m.plan_.target == "target" and m.plan_.task == "binary"
    p = m.predict_proba(cancer.head(20))
    assert p.shape == (20, 2) and np.allclose(p.sum(axis=1), 1)
    assert set(m.predict(cancer)) <= set(m.classes_)
    assert m.cv_score_ > 0.95  # cross-validated AUC on an easy task
    board = m.leaderboard()
    assert {"model", "roc_auc", "seconds", "weight", "params"} <= set(board.columns)
    done = board[board.state == "complete"]
    assert done["roc_auc"].is_monotonic_decreasing
    assert abs(sum(m.ensemble_weights_.values()) - 1) < 1e-9
    assert m.n_features_in_ == 30 and m.time_used_ <= 60 + 5


def test_same_seed_same_search(cancer, fitted):
    again = AutoML("classify tumours as malignant or benign", seed=0, **FAST).fit(cancer)
    a = fitted.leaderboard()["roc_auc"].to_numpy()
    b = again.leaderboard()["roc_auc"].to_numpy()
    assert np.allclose(a, b, equal_nan=True)
    assert np.allclose(fitted.predict_proba(cancer), again.predict_proba(cancer))


def test_save_load_roundtrip_and_report(fitted, cancer, tmp_path):
    fitted.save(tmp_path / "run")
    assert (tmp_path / "run" / "plan.json").exists() and (tmp_path / "run" / "leaderboard.csv").exists()
    back = load(tmp_path / "run")
    assert np.array_equal(back.predict_proba(cancer), fitted.predict_proba(cancer))
    html = fitted.report(tmp_path / "run").read_text()
    for section in ("Plan", "Data profile", "Leaderboard", "Search", "Diagnostics", "Permutation importance",
                    "TreeSHAP", "data:image/png;base64"):
        assert section in html
    with pytest.raises(Exception, match="missing column"):
        fitted.predict(cancer.drop(columns=["mean radius"]))


@pytest.mark.slow
def test_regression_and_multiclass():
    diab = load_diabetes(as_frame=True).frame
    reg = AutoML("predict disease progression", **FAST).fit(diab, )
    assert reg.plan_.task == "regression" and reg.plan_.metric == "rmse"
    assert reg.cv_score_ < diab["target"].std()  # better than predicting the mean
    with pytest.raises(PlanError, match="regression"):
        reg.predict_proba(diab)
    wine = load_wine(as_frame=True).frame
    cls = AutoML("predict the wine class", **FAST).fit(wine)
    assert cls.plan_.task == "multiclass" and cls.predict_proba(wine).shape == (len(wine), 3)
    assert cls.score_metric(wine) < 0.5  # in-sample log-loss of bagged fold models
    assert cls.score(wine) > 0.9  # scikit-learn's score: accuracy


@pytest.mark.slow
def test_features_with_datetime_text_missing_and_leak(churn_frame):
    df = churn_frame.copy()
    df["signup"] = pd.date_range("2020-01-01", periods=len(df), freq="D").strftime("%Y-%m-%d")
    df["churn_copy"] = df["Churn"]
    m = AutoML("predict whether a customer churns", **FAST).fit(df)
    assert "churn_copy" in m.leakage_ and "churn_copy" in m.plan_.drop
    assert "signup" in m.feature_names_in_ and "customerID" not in m.feature_names_in_
    assert m.predict(df.head(5)).shape == (5,)


def test_fit_with_X_and_y_and_bad_budget(cancer):
    X, y = cancer.drop(columns=["target"]), cancer["target"]
    m = AutoML(**{**FAST, "max_trials": 2}).fit(X, y)
    assert m.plan_.target == "target" and m.plan_.fields["target"].source == "user"
    with pytest.raises(PlanError, match="time_budget"):
        AutoML(time_budget=0).fit(X, y)


@pytest.mark.slow
def test_adult_quirks_are_handled_generically():
    train = read_table(shared("adult", "adult.data")).sample(3000, random_state=0)
    test = read_table(shared("adult", "adult.test")).head(1000)
    assert train.isna().any().any()  # '?' became missing
    m = AutoML("predict whether income exceeds 50K", **FAST).fit(train)
    assert m.plan_.target == "ltgt50k"
    auc = m.score_metric(test)  # test labels end with '.', aligned to the training classes
    assert auc > 0.85


def test_sklearn_contract_params_and_clone():
    from sklearn.base import clone

    m = AutoML("predict y", time_budget=5, seed=3, families=["linear"])
    c = clone(m)
    assert c.get_params()["seed"] == 3 and c.get_params()["families"] == ["linear"]
    assert not hasattr(c, "plan_")
    with pytest.raises(Exception, match="not fitted"):
        c.predict(pd.DataFrame({"x": [1]}))


def test_fit_plans_with_a_given_backend(churn_frame):
    from openautoglm.backends.fake import FakeBackend

    m = AutoML("predict whether a customer churns", **{**FAST, "planner": "llm", "max_trials": 2},
               model=FakeBackend()).fit(churn_frame)
    assert m.plan_.planner == "llm" and m.plan_.fields["target"].llm is not None
    assert m.plan_seconds_ >= 0 and m.plan_.target == "Churn"
