"""``openautoglm eval``: score a pipeline against a labelled file and write the report.

Registered in :mod:`openautoglm.cli` with ``app.command("eval")(eval_command)``; errors
(:class:`~openautoglm.errors.OpenAutoGLMError`) propagate to ``cli.main``, which prints
them without a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer


def eval_command(
    pipeline: Path = typer.Argument(..., help="pipeline YAML file"),
    data: Path = typer.Option(..., "--data", "-d", help="labelled records: .csv, .tsv, .jsonl, .json or .parquet"),
    label_column: str = typer.Option("label", "--label-column", "-l", help="column with the gold labels"),
    label_map: Optional[str] = typer.Option(None, help="map file labels to task labels, e.g. '1=positive,0=negative'"),
    input_map: Optional[List[str]] = typer.Option(
        None, "--map", help="feed a template variable from a column, e.g. text=sentence (repeatable)"),
    gold_step: Optional[str] = typer.Option(
        None, "--gold-step", help="the label step to score (default: the step whose labels the gold values match)"),
    out: Optional[Path] = typer.Option(None, "--output", "-o", "--out", help="output folder (default out/eval-<name>)"),
    limit: Optional[int] = typer.Option(None, help="only the first N records"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="override the pipeline's model"),
    store: Optional[Path] = typer.Option(None, help="SQLite store (default ./.openautoglm/store.db)"),
    no_progress: bool = typer.Option(False, "--no-progress", help="hide the progress bar"),
    encoding: str = typer.Option("utf-8-sig", help="input file encoding"),
    engine: str = typer.Option("inprocess", "--engine", help="where the records run: inprocess or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: auto, HOST:6379 or ray://HOST:10001"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="--engine ray: how many actors"),
    worker_cpus: Optional[float] = typer.Option(None, "--worker-cpus", min=0.01, help="--engine ray: CPUs per actor"),
) -> None:
    """Evaluate a pipeline on labelled data: metrics, calibration, cost and an HTML report.

    The gold labels are checked against the task's labels before the first model call.
    With --engine ray the records run on a pool of Ray actors (pip install 'openautoglm[ray]').
    """
    from rich.console import Console

    from ..core.engines import engine_scope
    from ..core.records import parse_label_map
    from . import evaluate

    err = Console(stderr=True, highlight=False)
    mapping = parse_label_map(label_map)
    pipe = _checked_pipeline(pipeline, data, label_column, mapping, input_map, gold_step, model, store,
                             encoding, limit, err)
    err.print(f"evaluating {pipeline} on {data}" + (f" (first {limit})" if limit else ""))
    try:
        with engine_scope(engine, address=address, workers=workers, worker_cpus=worker_cpus):
            result = evaluate(pipe, data, label_column=label_column, limit=limit, progress=not no_progress,
                              encoding=encoding, label_map=mapping)
    finally:
        pipe.close()
    paths = result.save(out if out is not None else Path("out") / f"eval-{result.name}")
    console = Console(highlight=False)
    console.print(_summary_table(result.metrics, f"{result.name} · {result.model} · run {result.run_id}"))
    for warning in result.metrics["warnings"]:
        err.print(f"[yellow]warning:[/] {warning}")
    for item in result.metrics["errors"][:3]:
        err.print(f"[red]record {item['idx']}:[/] {item['error']}")
    for kind, path in paths.items():
        console.print(f"{kind}: {path}")


def _checked_pipeline(pipeline: Path, data: Path, label_column: str, mapping: dict[str, str],
                      input_map: Optional[List[str]], gold_step: Optional[str], model: Optional[str],
                      store: Optional[Path], encoding: str, limit: Optional[int], err: Any) -> Any:
    """The pipeline to evaluate, scoring the step its gold labels match; a file whose gold
    labels match no task label fails here, before any model call (with a ``--label-map``)."""
    from rich.markup import escape

    from ..core.pipeline import Pipeline
    from ..core.records import check_gold, parse_input_map, read_records, require_columns

    inputs = parse_input_map(input_map)
    pipe = Pipeline.from_yaml(pipeline, model=model, store=store or True, inputs=inputs)
    records = read_records(data, encoding=encoding, limit=limit)
    require_columns(records, pipe.required_inputs | {label_column}, str(data))
    steps = pipe.label_steps()
    if not steps and gold_step is None:
        return pipe  # free-text outputs: compared with the gold text as they are
    gold = check_gold(records, label_column, steps, mapping=mapping, source=str(data), step=gold_step,
                      prefer=pipe.output_step)
    if gold.step != pipe.output_step:  # score that step: it becomes the evaluated output
        err.print(escape(f"scoring step {gold.step!r} ({gold.matched} of {gold.total} gold labels are its labels)"))
        pipe.close()
        pipe = Pipeline.from_yaml(pipeline, model=model, store=store or True, inputs=inputs, output=gold.step)
    for warning in gold.warnings:
        err.print("[yellow]warning:[/] " + escape(warning))
    return pipe


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
        *((f"method: {name}", f"{row['records']} ({_num(row['accuracy'])})")
          for name, row in (metrics.get("methods") or {}).items()),
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
