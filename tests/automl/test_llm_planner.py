"""The planner on the real embedded model (slow: loads SmolLM2-135M)."""

from __future__ import annotations

import pytest

from openautoglm.automl.io import read_table
from openautoglm.automl.plan import make_plan
from openautoglm.automl.profile import profile_frame

from .conftest import shared


@pytest.mark.slow
def test_llm_planner_on_telco_records_its_choices_and_is_checked():
    pytest.importorskip("torch")
    from openautoglm.backends.registry import create_backend

    try:
        llm = create_backend("local")
    except Exception as exc:  # noqa: BLE001 - the weights package may be absent outside CI
        pytest.skip(f"embedded model unavailable: {exc}")
    df = read_table(shared("telco_churn", "WA_Fn-UseC_-Telco-Customer-Churn.csv"))
    plan = make_plan(df, "predict whether a customer churns", profile_frame(df), planner="llm", backend=llm)
    assert plan.planner == "llm"
    target = plan.fields["target"]
    assert target.value == "Churn"  # the LLM may disagree; the name match cannot be overruled
    probs = dict(target.llm["top"])
    assert target.llm["method"] == "scored, calibrated" and all(0 <= p <= 1 for p in probs.values())
    assert "customerID" not in probs  # ids are never offered as targets
    task = plan.fields["task"]
    assert task.value == "binary" and task.llm is not None
    assert sum(p for _, p in task.llm["top"]) == pytest.approx(1.0, abs=1e-3)
