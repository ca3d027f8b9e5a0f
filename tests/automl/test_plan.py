from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from openautoglm.automl.errors import AmbiguousInstruction, PlanError
from openautoglm.automl.plan import make_plan, name_match
from openautoglm.automl.profile import profile_frame
from openautoglm.backends.fake import FakeBackend


def plan(df, inst, **kw):
    kw.setdefault("planner", "heuristic")
    return make_plan(df, inst, profile_frame(df), **kw)


def test_heuristic_plan_infers_target_task_metric_and_drops(churn_frame):
    p = plan(churn_frame, "predict whether a customer churns")
    assert p.target == "Churn" and p.task == "binary" and p.metric == "roc_auc"
    assert p.drop == ["customerID"]
    assert {f.source for f in p.fields.values()} == {"heuristic"}
    assert "Churn" in p.fields["target"].reason
    d = p.to_dict()
    assert d["plan"]["target"] == "Churn" and d["provenance"]["drop"]["source"] == "heuristic"
    assert "properties" in p.json_schema()


def test_chinese_instruction_and_stated_metric(churn_frame):
    p = plan(churn_frame, "创建一个用于预测用户流失的分类模型, 用准确率评估")
    assert p.target == "Churn"
    assert p.metric == "accuracy" and p.fields["metric"].source == "user"


def test_explicit_arguments_win_and_are_validated(churn_frame):
    p = plan(churn_frame, "anything", target="MonthlyCharges")
    assert p.target == "MonthlyCharges" and p.fields["target"].source == "user"
    assert p.task == "regression" and p.metric == "rmse"
    with pytest.raises(PlanError, match="not in the data"):
        plan(churn_frame, "x", target="churn_flag")
    with pytest.raises(PlanError, match="does not fit"):
        plan(churn_frame, "x", target="Contract", task="regression")
    with pytest.raises(PlanError, match="metric"):
        plan(churn_frame, "predict whether a customer churns", metric="rmse")


def test_regression_asked_for_a_categorical_column_is_an_error(churn_frame):
    with pytest.raises(PlanError, match="regression"):
        plan(churn_frame, "regression model for the Contract column")


def test_unclear_instruction_asks_a_question(churn_frame):
    with pytest.raises(AmbiguousInstruction) as err:
        plan(churn_frame, "build me a good model")
    assert err.value.field == "target" and err.value.candidates
    assert "Which column" in str(err.value) and "--target" in str(err.value)


def test_instruction_can_exclude_columns(churn_frame):
    p = plan(churn_frame, "predict whether a customer churns, ignore TotalCharges")
    assert "TotalCharges" in p.drop and p.fields["drop"].source == "user"


def test_name_match_scores():
    assert name_match("predict whether a customer churns", "Churn") == 1.0
    assert name_match("predict whether income exceeds 50K", "ltgt50k") >= 0.5
    assert name_match("predict whether income exceeds 50K", "age") == 0.0


def test_llm_choice_is_recorded_and_checked_by_the_data(churn_frame):
    # the fake backend scores a continuation by its word overlap with the prompt
    llm = FakeBackend()
    p = plan(churn_frame, "predict whether a customer churns", planner="llm", backend=llm)
    assert p.planner == "llm"
    t = p.fields["target"]
    assert t.value == "Churn" and t.llm is not None and t.llm["method"].startswith("scored")
    task = p.fields["task"]
    assert task.value == "binary" and task.llm is not None  # the data decides binary whatever the LLM says


def test_llm_without_scoring_votes_over_samples(churn_frame):
    llm = FakeBackend(can_score=False, responses=["tenure"])
    df = churn_frame.drop(columns=["Churn"])
    p = plan(df, "build me a model", planner="llm", backend=llm)
    assert p.target == "tenure" and p.fields["target"].source == "llm"
    assert p.fields["target"].llm["method"] == "votes"


def test_class_weight_for_imbalanced_threshold_metrics():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=300), "fraud": ["yes"] * 15 + ["no"] * 285})
    assert plan(df, "detect fraud").class_weight is None  # AUC: threshold-free
    p = plan(df, "detect fraud, maximise F1")
    assert p.class_weight == "balanced" and p.metric == "f1"
