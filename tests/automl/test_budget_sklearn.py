"""AutoML as scikit-learn expects it (score is accuracy / R², classifier or regressor tags) and
its time budget as an upper bound with LLM planning inside it (issue 19)."""

from __future__ import annotations

import time
import types

import numpy as np
import pytest
from sklearn.base import is_classifier, is_regressor
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score

from openautoglm.automl import AutoML
from openautoglm.automl import plan as plan_module
from openautoglm.automl.plan import make_plan
from openautoglm.automl.profile import profile_frame
from openautoglm.backends.fake import FakeBackend

FAST = dict(planner="heuristic", time_budget=60, max_trials=2, cv=3, families=["linear"])


@pytest.fixture(scope="module")
def cancer():
    return load_breast_cancer(as_frame=True).frame


@pytest.fixture(scope="module")
def classifier(cancer):
    return AutoML("classify tumours as malignant or benign", **FAST).fit(cancer)


def test_score_is_accuracy_and_score_metric_the_plans_metric(classifier, cancer) -> None:
    assert classifier.plan_.metric == "roc_auc"
    expected = accuracy_score(classifier.encode_labels(cancer["target"]),
                              classifier.encode_labels(classifier.predict(cancer)))
    assert classifier.score(cancer) == pytest.approx(expected)
    auc = roc_auc_score(cancer["target"], classifier.predict_proba(cancer)[:, 1])
    assert classifier.score_metric(cancer) == pytest.approx(auc)
    assert classifier.score(cancer) != pytest.approx(auc)


def test_regression_score_is_r2() -> None:
    diabetes = load_diabetes(as_frame=True).frame
    model = AutoML("predict disease progression", **FAST).fit(diabetes)
    assert model.plan_.task == "regression" and model.plan_.metric == "rmse"
    assert model.score(diabetes) == pytest.approx(r2_score(diabetes["target"], model.predict(diabetes)))
    assert is_regressor(model) and not is_classifier(model)


def test_estimator_tags(classifier) -> None:
    assert is_classifier(classifier) and not is_regressor(classifier)
    assert is_classifier(AutoML("predict whether a customer churns"))
    assert is_regressor(AutoML("predict the price of a house"))
    assert is_regressor(AutoML("anything", task="regression"))
    assert is_classifier(AutoML())  # nothing says regression: a classifier until the plan decides
    tags = classifier.__sklearn_tags__()
    assert tags.input_tags.allow_nan and tags.input_tags.string and not tags.target_tags.required


class Clock:
    """A clock that each planning question moves 100 s on."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_no_planning_question_is_asked_after_the_deadline(churn_frame) -> None:
    clock, asked = Clock(), []

    class Slow(FakeBackend):
        def score_batch(self, requests):  # type: ignore[no-untyped-def]
            asked.append(requests)
            clock.now += 100
            return super().score_batch(requests)

    plan = make_plan(churn_frame, "predict whether a customer churns", profile_frame(churn_frame), planner="llm",
                     backend=Slow(), deadline=10.0, clock=clock)
    assert len(asked) == 1  # the question under way at the deadline finished; none after it
    assert plan.planner == "llm" and plan.target == "Churn" and plan.task == "binary"
    assert any("stopped at its share of the time budget" in note for note in plan.notes)
    unhurried = make_plan(churn_frame, "predict whether a customer churns", profile_frame(churn_frame),
                          planner="llm", backend=FakeBackend())
    assert not any("stopped" in note for note in unhurried.notes)


def test_fit_gives_planning_half_the_budget(churn_frame, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, float] = {}
    real = plan_module.make_plan

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen["called"], seen["deadline"] = time.monotonic(), kwargs["deadline"]
        return real(*args, **kwargs)

    monkeypatch.setattr(plan_module, "make_plan", spy)
    started = time.monotonic()
    model = AutoML("predict whether a customer churns", **{**FAST, "time_budget": 30}).fit(churn_frame)
    assert started + 15 <= seen["deadline"] <= seen["called"] + 15
    assert model.plan_seconds_ + model.search_seconds_ == pytest.approx(model.time_used_, abs=0.05)


def test_an_overrun_is_reported(churn_frame, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planning that cannot be interrupted (a model load) overran: fit says by how much."""
    from openautoglm.automl import estimator

    offset = {"s": 0.0}
    monkeypatch.setattr(estimator, "time", types.SimpleNamespace(monotonic=lambda: time.monotonic() + offset["s"]))
    real = plan_module.make_plan

    def slow_load(*args, **kwargs):  # type: ignore[no-untyped-def]
        offset["s"] += 100.0  # the planning model took 100 s to load
        return real(*args, **kwargs)

    monkeypatch.setattr(plan_module, "make_plan", slow_load)
    model = AutoML("predict whether a customer churns", **{**FAST, "time_budget": 20}).fit(churn_frame)
    assert model.over_budget_ >= 80 and model.plan_seconds_ >= 100
    from openautoglm.automl.cli import time_line

    assert "of the 20 s budget" in time_line(model) and np.isfinite(model.cv_score_)
