from __future__ import annotations

import json

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from openautoglm.automl.cli import register


@pytest.fixture
def app():
    app = typer.Typer()

    @app.command()
    def version() -> None:  # a second command, so 'automl' is a real subcommand
        print("0")

    register(app)
    return app


@pytest.mark.slow
def test_train_then_predict_through_the_cli(app, churn_frame, tmp_path):
    data = tmp_path / "customers.csv"
    churn_frame.to_csv(data, index=False)
    out = tmp_path / "runs" / "churn"
    runner = CliRunner()
    res = runner.invoke(app, ["automl", "predict whether a customer churns", "--data", str(data), "--time-budget",
                              "10", "--out", str(out), "--planner", "heuristic", "--no-progress", "--cv", "3",
                              "--families", "lgbm,linear"])
    assert res.exit_code == 0, res.output
    assert "Churn" in res.output and "roc_auc" in res.output
    assert (out / "model.joblib").exists() and (out / "report.html").exists()
    plan = json.loads((out / "plan.json").read_text())
    assert plan["plan"]["target"] == "Churn"
    new = tmp_path / "new.csv"
    churn_frame.drop(columns=["Churn"]).head(7).to_csv(new, index=False)
    preds = tmp_path / "preds.csv"
    res = runner.invoke(app, ["automl", "predict", "--model", str(out), str(new), "--out", str(preds)])
    assert res.exit_code == 0, res.output
    got = pd.read_csv(preds)
    assert len(got) == 7 and set(got["predicted_Churn"]) <= {"Yes", "No"}
    assert ((got["proba_Yes"] + got["proba_No"]).round(4) == 1).all()


def test_plan_subcommand_and_clear_errors(app, churn_frame, tmp_path):
    data = tmp_path / "c.csv"
    churn_frame.to_csv(data, index=False)
    runner = CliRunner()
    res = runner.invoke(app, ["automl", "plan", "predict whether a customer churns", "--data", str(data),
                              "--planner", "heuristic", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["provenance"]["target"]["value"] == "Churn"
    res = runner.invoke(app, ["automl", "predict", "--model", str(tmp_path / "nope"), str(data)])
    assert res.exit_code != 0 and "no saved model" in str(res.exception)
    res = runner.invoke(app, ["automl", "build a model", "--data", str(data), "--planner", "heuristic"])
    assert res.exit_code != 0 and "Which column" in str(res.exception)
