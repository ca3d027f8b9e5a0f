"""``openautoglm optimize``: search a better prompt for a label pipeline; write it as YAML.

Registered in :mod:`openautoglm.cli`; imports only typer at import time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..core.records import map_labels, parse_label_map


def optimize_command(
    pipeline: Path = typer.Argument(..., help="pipeline YAML whose (single) step is a label task"),
    train: Path = typer.Option(..., "--train", help="labelled rows for demonstrations and calibration"),
    dev: Path = typer.Option(..., "--dev", help="labelled rows for selection (a share is held out for the report)"),
    budget: int = typer.Option(2000, help="model calls the whole run may spend (the held-out measurement included)"),
    out: Optional[Path] = typer.Option(None, "--output", "-o", "--out",
                                       help="optimized pipeline YAML (default <name>.optimized.yaml)"),
    label_column: str = typer.Option("label", help="gold label column in --train and --dev"),
    label_map: Optional[str] = typer.Option(None, help="map file labels to task labels, e.g. '1=positive,0=negative'"),
    input_map: Optional[List[str]] = typer.Option(
        None, "--map", help="feed a template variable from a column, e.g. text=sentence (repeatable; kept in the "
        "optimized YAML's `inputs:`)"),
    metric: str = typer.Option("accuracy", help="accuracy or macro_f1"),
    holdout: float = typer.Option(0.3, help="share of --dev rows never used for choices (the honest estimate)"),
    max_train: int = typer.Option(2000, help="use at most this many train rows"),
    max_demos: int = typer.Option(8, help="most demonstrations in a prompt"),
    no_retrieval: bool = typer.Option(False, "--no-retrieval", help="skip embedding retrieval and the kNN prior"),
    seed: int = typer.Option(0),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="override the pipeline's model"),
) -> None:
    """Optimize a label pipeline's prompt, verbalizers, demonstrations and calibration on labelled data."""
    import random

    import yaml
    from rich.console import Console

    from ..core.pipeline import Pipeline
    from ..core.records import check_gold, parse_input_map, read_records, require_columns
    from ..errors import ConfigError
    from .search import Optimizer

    con = Console(stderr=True, highlight=False)
    pipe = Pipeline.from_yaml(pipeline, model=model, store=False, inputs=parse_input_map(input_map))
    steps = pipe.config.steps
    if len(steps) != 1 or steps[0].task is None:
        raise ConfigError("optimize works on single-task pipelines for now", source=str(pipeline), field="steps",
                          hint="optimize the label step as its own pipeline, then paste its task back")
    task = steps[0].task
    mapping = parse_label_map(label_map)
    rows = {}
    for name, path in (("train", train), ("dev", dev)):
        recs = read_records(path)
        require_columns(recs, pipe.required_inputs | {label_column}, str(path))
        if pipe.label_steps():  # (a task without labels is refused by the Optimizer, with its own reason)
            check_gold(recs, label_column, pipe.label_steps(), mapping=mapping, source=str(path))
        # the task reads its variables as the pipeline would feed them (top-level and step `inputs:`)
        recs = [{**pipe.step_context(steps[0].name, r), label_column: r[label_column]} for r in recs]
        rows[name] = map_labels(recs, label_column, mapping)
    random.Random(seed).shuffle(rows["train"])
    backend = pipe.backend_for(steps[0])
    con.print(f"[bold]{pipe.config.name}[/]: optimizing on {min(max_train, len(rows['train']))} train / "
              f"{len(rows['dev'])} dev rows with {model or pipe.config.model}, budget {budget} calls")
    try:
        opt = Optimizer(backend, task, rows["train"][:max_train], rows["dev"], label_column=label_column,
                        budget=budget, metric=metric, holdout=holdout, seed=seed, max_demos=max_demos,
                        retrieval=not no_retrieval, log=con.print)
        result = opt.optimize()
    finally:
        pipe.close()
    out = out or pipeline.with_name(pipeline.stem + ".optimized.yaml")
    config = pipe.to_config()
    config["steps"][0]["task"] = result.task.to_config()
    config["description"] = (f"optimized by `openautoglm optimize` from {pipeline.name}: "
                             f"{result.metric} {result.scores['best_select']:.3f} on selection rows"
                             + (f", {result.scores['best_holdout']:.3f} on held-out rows" if "best_holdout" in result.scores else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    report = out.with_suffix(".report.json")
    report.write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    Console(highlight=False).print(result.summary())
    Console(highlight=False).print(f"wrote {out} (run or eval it like any pipeline) and {report}")
