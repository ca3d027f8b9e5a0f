"""``openautoglm eval``: score a pipeline against a labelled file and write the report.

Registered in :mod:`openautoglm.cli` with ``app.command("eval")(eval_command)``; errors
(:class:`~openautoglm.errors.OpenAutoGLMError`) propagate to ``cli.main``, which prints
them without a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer


def eval_command(
    pipeline: Path = typer.Argument(..., help="pipeline YAML file"),
    data: Path = typer.Option(..., "--data", "-d", help="labelled records: .csv, .tsv, .jsonl or .json"),
    label_column: str = typer.Option("label", "--label-column", "-l", help="column with the gold labels"),
    label_map: Optional[str] = typer.Option(None, help="map file labels to task labels, e.g. '1=positive,0=negative'"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder (default out/eval-<name>)"),
    limit: Optional[int] = typer.Option(None, help="only the first N records"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="override the pipeline's model"),
    store: Optional[Path] = typer.Option(None, help="SQLite store (default ./.openautoglm/store.db)"),
    no_progress: bool = typer.Option(False, "--no-progress", help="hide the progress bar"),
    encoding: str = typer.Option("utf-8-sig", help="input file encoding"),
) -> None:
    """Evaluate a pipeline on labelled data: metrics, calibration, cost and an HTML report."""
    from rich.console import Console

    from ..core.records import parse_label_map
    from . import evaluate

    err = Console(stderr=True, highlight=False)
    err.print(f"evaluating {pipeline} on {data}" + (f" (first {limit})" if limit else ""))
    result = evaluate(pipeline, data, label_column=label_column, limit=limit, model=model,
                      store=store, progress=not no_progress, encoding=encoding,
                      label_map=parse_label_map(label_map))
    paths = result.save(out if out is not None else Path("out") / f"eval-{result.name}")
    console = Console(highlight=False)
    console.print(_summary_table(result.metrics, f"{result.name} · {result.model} · run {result.run_id}"))
    for warning in result.metrics["warnings"]:
        err.print(f"[yellow]warning:[/] {warning}")
    for item in result.metrics["errors"][:3]:
        err.print(f"[red]record {item['idx']}:[/] {item['error']}")
    for kind, path in paths.items():
        console.print(f"{kind}: {path}")


def _summary_table(metrics: dict[str, Any], title: str) -> Any:
    from rich.table import Table

    cal = metrics.get("calibration") or {}
    cost = metrics.get("cost") or {}
    rows = [
        ("examples", f"{metrics['n']} ({metrics['n_errors']} errors)"),
        ("accuracy", _num(metrics["accuracy"])),
        ("macro-F1", _num(metrics["macro_f1"])),
        ("ECE (15 bins)", _num(cal.get("ece"))),
        ("Brier", _num(cal.get("brier"))),
        ("model calls", _num(cost.get("model_calls"))),
        ("tokens (prompt + completion)",
         "–" if cost.get("prompt_tokens") is None else f"{cost['prompt_tokens']} + {cost['completion_tokens']}"),
        ("wall seconds", _num(cost.get("wall_seconds"), 1)),
        ("examples/s", _num(cost.get("examples_per_s"), 2)),
    ]
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    return table


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
