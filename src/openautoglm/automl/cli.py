"""``openautoglm automl``: one name, routed on the first argument.

* ``openautoglm automl "predict whether a customer churns" --data FILE --time-budget 120 --out runs/churn``
  (anything that is not a subcommand is the instruction of ``run``);
* ``openautoglm automl predict --model runs/churn data.csv``;
* ``openautoglm automl plan "..." --data FILE``: only the plan, no search.

Imports only typer at module level; the subsystem loads inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer
from typer.core import TyperGroup


class _DefaultToRun(TyperGroup):
    """A group whose default command is ``run``: ``automl "instruction" ...`` means ``automl run "instruction" ...``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    """Add the ``automl`` group to the main app."""
    group = typer.Typer(cls=_DefaultToRun, no_args_is_help=True, add_completion=False,
                        help="Tabular AutoML from an instruction: automl \"predict ...\" --data FILE | automl predict --model DIR FILE")
    group.command("run")(run_command)
    group.command("predict")(predict_command)
    group.command("plan")(plan_command)
    app.add_typer(group, name="automl")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def run_command(
    instruction: str = typer.Argument(..., help="what to predict, e.g. \"predict whether a customer churns\""),
    data: Path = typer.Option(..., "--data", "-d", help="training table: .csv, .tsv, .jsonl or .parquet"),
    time_budget: float = typer.Option(120.0, "--time-budget", "-t", help="wall-clock seconds for the whole fit"),
    out: Path = typer.Option(Path("runs/automl"), "--output", "-o", "--out",
                             help="folder for model, plan, leaderboard, report"),
    seed: int = typer.Option(0, help="random seed (folds, sampler, models)"),
    planner: str = typer.Option("auto", help="auto | llm | heuristic"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="LLM for planning (default: local embedded model)"),
    target: Optional[str] = typer.Option(None, help="target column (overrides the plan)"),
    task: Optional[str] = typer.Option(None, help="binary | multiclass | regression (overrides the plan)"),
    metric: Optional[str] = typer.Option(None, help="metric to optimise (overrides the plan)"),
    drop: Optional[List[str]] = typer.Option(None, "--drop", help="column to leave out (repeatable)"),
    families: Optional[str] = typer.Option(None, help="comma-separated: lgbm,linear,hgb,et,rf"),
    cv: Optional[int] = typer.Option(None, help="number of CV folds (default 5; 3 above 50,000 rows)"),
    n_jobs: int = typer.Option(1, help="threads per model"),
    encoding: str = typer.Option("utf-8-sig", help="input file encoding"),
    no_report: bool = typer.Option(False, "--no-report", help="skip the HTML report"),
    no_progress: bool = typer.Option(False, "--no-progress", help="hide the progress bar"),
) -> None:
    """Plan from the instruction, search models within the budget, save model + report."""
    from .estimator import AutoML
    from .io import read_table

    err = _console(stderr=True)
    df = read_table(data, encoding=encoding)
    err.print(f"[bold]automl[/]: {len(df)} rows × {df.shape[1]} columns from {data} · budget {time_budget:g} s")
    automl = AutoML(instruction, time_budget=time_budget, seed=seed, planner=planner, model=model, target=target,
                    task=task, metric=metric, drop=drop or None, cv=cv, n_jobs=n_jobs,
                    families=[f.strip() for f in families.split(",")] if families else None,
                    progress=not no_progress)
    automl.fit(df)
    con = _console()
    con.print(_plan_table(automl.plan_))
    for note in automl.plan_.notes:
        err.print(f"[yellow]note:[/] {note}")
    board = automl.leaderboard()
    con.print(_board_table(board.head(10), automl.plan_.metric))
    folder = automl.save(out)
    con.print(f"cross-validated {automl.plan_.metric}: [bold]{automl.cv_score_:.4f}[/] · {len(automl.trials_)} trials")
    con.print(time_line(automl))
    if automl.over_budget_ > 0.5:
        err.print(f"[yellow]over the time budget by {automl.over_budget_:.1f} s:[/] planning took "
                  f"{automl.plan_seconds_:.1f} s, more than its half of the budget (loading the planning model "
                  "cannot be interrupted); --planner heuristic plans in well under a second")
    con.print(f"model: {folder / 'model.joblib'}\nplan: {folder / 'plan.json'}\nleaderboard: {folder / 'leaderboard.csv'}")
    if not no_report:
        con.print(f"report: {automl.report(folder)}")


def time_line(automl: Any) -> str:
    """Where the time went, against the budget: ``planning 3.1 s + search 16.5 s = 19.6 s of the 20 s budget``."""
    return (f"planning {automl.plan_seconds_:.1f} s + search {automl.search_seconds_:.1f} s = "
            f"{automl.time_used_:.1f} s of the {automl.time_budget:g} s budget (planning counts inside it)")


def predict_command(
    data: Path = typer.Argument(..., help="table to predict: same columns as the training data"),
    model: Path = typer.Option(..., "--model", "-m", help="folder written by 'openautoglm automl ... --output'"),
    out: Optional[Path] = typer.Option(None, "--output", "-o", "--out",
                                       help="write predictions here (.csv); default: stdout"),
    proba: bool = typer.Option(True, "--proba/--no-proba", help="add one probability column per class"),
    encoding: str = typer.Option("utf-8-sig", help="input file encoding"),
) -> None:
    """Predict with a saved model; prints CSV (or writes --output)."""
    import sys

    from .estimator import load
    from .io import read_table

    automl = load(model)
    df = read_table(data, encoding=encoding)
    result = df.copy()
    col = f"predicted_{automl.plan_.target}"
    result[col] = automl.predict(df)
    if proba and automl.plan_.task != "regression":
        p = automl.predict_proba(df)
        for k, c in enumerate(automl.classes_):
            result[f"proba_{c}"] = p[:, k].round(6)
    if out is None:
        result.to_csv(sys.stdout, index=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        result.to_csv(out, index=False)
        _console(stderr=True).print(f"{len(result)} predictions written to {out}")


def plan_command(
    instruction: str = typer.Argument(..., help="what to predict"),
    data: Path = typer.Option(..., "--data", "-d", help="training table"),
    planner: str = typer.Option("auto", help="auto | llm | heuristic"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="LLM for planning"),
    encoding: str = typer.Option("utf-8-sig", help="input file encoding"),
    as_json: bool = typer.Option(False, "--json", help="print the plan as JSON"),
) -> None:
    """Show the plan (task, target, metric, drops, weighting) and where each part came from; no search."""
    import json

    from .io import read_table
    from .plan import make_plan
    from .profile import profile_frame

    df = read_table(data, encoding=encoding)
    plan = make_plan(df, instruction, profile_frame(df), planner=planner, backend=model)
    if as_json:
        print(json.dumps(plan.to_dict(), indent=2, ensure_ascii=False, default=str))
        return
    _console().print(_plan_table(plan))
    for note in plan.notes:
        _console(stderr=True).print(f"[yellow]note:[/] {note}")


def _plan_table(plan: Any) -> Any:
    from rich.table import Table

    table = Table(title=f"plan ({plan.planner} planner)")
    for col in ("field", "value", "source", "why"):
        table.add_column(col, overflow="fold")
    for name, f in plan.fields.items():
        table.add_row(name, str(f.value), f.source, f.reason)
    return table


def _board_table(board: Any, metric: str) -> Any:
    from rich.table import Table

    table = Table(title="leaderboard")
    for col in ("model", metric, "folds", "seconds", "weight", "state"):
        table.add_column(col)
    for _, r in board.iterrows():
        v = r[metric]
        table.add_row(str(r["model"]), "–" if v != v else f"{v:.4f}", str(r["folds"]), f"{r['seconds']:.1f}",
                      f"{r['weight']:.2f}", str(r["state"]))
    return table
