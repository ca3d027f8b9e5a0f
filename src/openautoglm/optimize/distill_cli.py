"""``openautoglm distill``: the CLI face of :func:`openautoglm.optimize.distill.distill`.

Registered in :mod:`openautoglm.cli` with ``app.command("distill")(distill_command)``;
this module imports only typer at import time, so ``openautoglm --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def distill_command(
    pipeline: Path = typer.Argument(..., help="teacher pipeline YAML (its result must be a label distribution)"),
    data: Path = typer.Argument(..., help="unlabeled records: .csv, .tsv, .jsonl or .json"),
    out: Path = typer.Option(Path("out/student"), "--out", "-o", help="directory to save the student in"),
    dev: Optional[Path] = typer.Option(None, help="gold-labelled records: compare teacher and student"),
    label_column: str = typer.Option("label", help="the dev file's gold label column"),
    min_confidence: float = typer.Option(0.8, help="keep teacher labels at least this confident"),
    embedder: str = typer.Option("auto", help="auto, minilm or char-ngram"),
    text_field: Optional[str] = typer.Option(None, help="embed this field instead of the task's rendered template"),
    limit: Optional[int] = typer.Option(None, help="only the first N records (and dev records)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="override the teacher pipeline's model"),
    store: Optional[Path] = typer.Option(None, help="SQLite store (default ./.openautoglm/store.db)"),
    no_progress: bool = typer.Option(False, "--no-progress", help="hide the progress bar"),
) -> None:
    """Distill a pipeline into a small, fast student classifier (embeddings + calibrated logistic regression)."""
    from rich.console import Console

    from ..core.pipeline import Pipeline
    from ..core.records import read_records, require_columns
    from .distill import distill

    out_console, err = Console(highlight=False), Console(stderr=True, highlight=False)
    pipe = Pipeline.from_yaml(pipeline, model=model, store=store or True)
    records = read_records(data, limit=limit)
    require_columns(records, pipe.required_inputs | ({text_field} if text_field else set()), str(data))
    dev_records = None
    if dev is not None:
        dev_records = read_records(dev, limit=limit)
        require_columns(dev_records, pipe.required_inputs | {label_column}, str(dev))
    err.print(f"[bold]{pipe.config.name}[/]: teacher {model or pipe.config.model} labels {len(records)} records "
              f"from {data}" + (f"; dev: {len(dev_records)} records from {dev}" if dev_records else ""))
    try:
        result = distill(pipe, records, text_field=text_field, min_confidence=min_confidence, embedder=embedder,
                         out_dir=out, dev=dev_records, label_column=label_column, progress=not no_progress)
    finally:
        pipe.close()
    out_console.print(result.summary())
    out_console.print(f"student saved to {out}")
    out_console.print(f"use it: openautoglm run {pipeline} --model student:{out} --input {data} --output out/student.jsonl")
