"""``openautoglm distill``: the CLI face of :func:`openautoglm.optimize.distill.distill`.

Registered in :mod:`openautoglm.cli` with ``app.command("distill")(distill_command)``;
this module imports only typer at import time, so ``openautoglm --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def distill_command(
    pipeline: Path = typer.Argument(..., help="teacher pipeline YAML (its result must be a label distribution)"),
    data: Path = typer.Argument(..., help="unlabeled records: .csv, .tsv, .jsonl, .json or .parquet"),
    out: Path = typer.Option(Path("out/student"), "--output", "-o", "--out", help="directory to save the student in"),
    dev: Optional[Path] = typer.Option(None, help="gold-labelled records: compare teacher and student"),
    label_column: str = typer.Option("label", help="the dev file's gold label column"),
    label_map: Optional[str] = typer.Option(None, help="map the dev file's labels to task labels, e.g. "
                                            "'1=positive,0=negative'"),
    input_map: Optional[List[str]] = typer.Option(
        None, "--map", help="feed a template variable from a column, e.g. text=sentence (repeatable)"),
    min_confidence: float = typer.Option(0.8, help="keep teacher labels at least this confident"),
    embedder: str = typer.Option("auto", help="auto, minilm or char-ngram"),
    text_field: Optional[str] = typer.Option(None, help="embed this field instead of the task's rendered template"),
    limit: Optional[int] = typer.Option(None, help="only the first N records (and dev records)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="override the teacher pipeline's model"),
    store: Optional[Path] = typer.Option(None, help="SQLite store (default ./.openautoglm/store.db)"),
    no_progress: bool = typer.Option(False, "--no-progress", help="hide the progress bar"),
    engine: str = typer.Option("inprocess", "--engine", help="where the teacher labels the records: inprocess or ray"),
    address: Optional[str] = typer.Option(None, "--address", help="--engine ray: auto, HOST:6379 or ray://HOST:10001"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="--engine ray: how many actors"),
    worker_cpus: Optional[float] = typer.Option(None, "--worker-cpus", min=0.01, help="--engine ray: CPUs per actor"),
) -> None:
    """Distill a pipeline into a small, fast student classifier (embeddings + calibrated logistic regression).

    With --engine ray the teacher labels the records on a pool of Ray actors."""
    from rich.console import Console
    from rich.markup import escape

    from ..core.engines import engine_scope
    from ..core.pipeline import Pipeline
    from ..core.records import check_gold, map_labels, parse_input_map, parse_label_map, read_records, require_columns
    from .distill import distill, final_label_step

    out_console, err = Console(highlight=False), Console(stderr=True, highlight=False)
    mapping = parse_label_map(label_map)
    pipe = Pipeline.from_yaml(pipeline, model=model, store=store or True, inputs=parse_input_map(input_map))
    step = final_label_step(pipe)
    records = read_records(data, limit=limit)
    require_columns(records, pipe.required_inputs | ({text_field} if text_field else set()), str(data))
    records = [pipe.map_inputs(r) for r in records]  # the student renders the task's template from these
    dev_records = None
    if dev is not None:
        dev_records = read_records(dev, limit=limit)
        require_columns(dev_records, pipe.required_inputs | {label_column}, str(dev))
        # dev labels that match none of the teacher's labels fail now, not as accuracy 0.000 at the end
        gold = check_gold(dev_records, label_column, {step.name: pipe.label_steps()[step.name]}, mapping=mapping,
                          source=str(dev))
        for warning in gold.warnings:
            err.print("[yellow]warning:[/] " + escape(warning))
        dev_records = map_labels([pipe.map_inputs(r) for r in dev_records], label_column, mapping)
    err.print(f"[bold]{pipe.config.name}[/]: teacher {model or pipe.config.model} labels {len(records)} records "
              f"from {data}" + (f"; dev: {len(dev_records)} records from {dev}" if dev_records else ""))
    try:
        with engine_scope(engine, address=address, workers=workers, worker_cpus=worker_cpus):
            result = distill(pipe, records, text_field=text_field, min_confidence=min_confidence, embedder=embedder,
                             out_dir=out, dev=dev_records, label_column=label_column, progress=not no_progress)
    finally:
        pipe.close()
    out_console.print(result.summary())
    out_console.print(f"student saved to {out}")
    maps = "".join(f" --map {m}" for m in input_map or [])
    out_console.print(f"use it: openautoglm run {pipeline} --model student:{out} --input {data}{maps} "
                      "--output out/student.jsonl")
