"""The ``openautoglm`` command line.  Each command imports its subsystem lazily."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

ENGINE_HELP = "where the records run: inprocess (default) or ray (a pool of Ray actors; pip install 'openautoglm[ray]')"
ADDRESS_HELP = ("--engine ray: the cluster (auto, HOST:6379 or ray://HOST:10001; default: a local Ray instance "
                "for this run)")
WORKERS_HELP = "--engine ray: how many actors (each loads the model once; default: the cluster's CPUs / --worker-cpus)"
WORKER_CPUS_HELP = "--engine ray: CPUs each actor reserves (default 1; give a model's actor all the threads it uses)"
MAP_HELP = "feed a template variable from a column, e.g. text=sentence (repeatable; adds to the YAML's `inputs:`)"
GOLD_STEP_HELP = "the label step the gold column scores (default: the step whose labels the gold values match)"

app = typer.Typer(
    name="openautoglm",
    help="Automate NLP and ML work with LLMs; runs offline on an embedded model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_flags_without_a_value() -> None:
    """Typer's help lists every boolean flag as ``--fresh <bool>``, which reads as if it took a
    value (``--fresh yes`` then fails): show flags with no value type, as click does."""
    from typer.core import TyperOption

    original = TyperOption.display_type_rich
    if getattr(original, "_flags_fixed", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> Optional[str]:
        if self.is_flag and not self.count:
            return None
        return original(self, ctx)

    display_type_rich._flags_fixed = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_show_flags_without_a_value()


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        print(__version__)
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", "-V", callback=_print_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    """Automate NLP and ML work with LLMs; runs offline on an embedded model."""


def _console(stderr: bool = False):  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _run_id(config_hash: str, input_path: Path, output: Path | None, model: str | None) -> str:
    st = input_path.stat()
    blob = f"{config_hash}|{input_path.resolve()}|{st.st_size}|{int(st.st_mtime)}|{output and output.resolve()}|{model}"
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@app.command()
def run(
    pipeline: Path = typer.Argument(..., help="pipeline YAML file"),
    input: str = typer.Option(..., "--input", "-i", help="records: .csv, .tsv, .jsonl, .json or .parquet (with "
                              "--engine ray also a folder of .parquet files or a URI Ray Data reads, e.g. s3://...)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="results (.jsonl)"),
    input_map: Optional[List[str]] = typer.Option(None, "--map", help=MAP_HELP),
    gold_column: Optional[str] = typer.Option(None, "--gold-column", "-g", help="column with gold labels: prints accuracy"),
    gold_step: Optional[str] = typer.Option(None, "--gold-step", help=GOLD_STEP_HELP),
    label_map: Optional[str] = typer.Option(None, help="map gold labels to task labels, e.g. '1=positive,0=negative'"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="override the pipeline's model"),
    limit: Optional[int] = typer.Option(None, help="only the first N records"),
    batch_size: Optional[int] = typer.Option(None, help="records per checkpoint/batch"),
    run_id: Optional[str] = typer.Option(None, help="resume/name this run (default: derived from the command)"),
    fresh: bool = typer.Option(False, "--fresh", help="ignore earlier progress of the same run"),
    retry_failed: bool = typer.Option(False, "--retry-failed",
                                      help="redo the records that failed in an earlier attempt of this run"),
    max_errors: Optional[int] = typer.Option(None, "--max-errors", min=0,
                                             help="stop the run once more than N records have failed"),
    show: int = typer.Option(5, help="print this many predictions"),
    encoding: str = typer.Option("utf-8-sig", help="input file encoding"),
    store: Optional[Path] = typer.Option(None, help="SQLite store (default ./.openautoglm/store.db)"),
    no_progress: bool = typer.Option(False, "--no-progress", help="hide the progress bar"),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="an input without records is not an error"),
    engine: str = typer.Option("inprocess", "--engine", help=ENGINE_HELP),
    address: Optional[str] = typer.Option(None, "--address", help=ADDRESS_HELP),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help=WORKERS_HELP),
    worker_cpus: Optional[float] = typer.Option(None, "--worker-cpus", min=0.01, help=WORKER_CPUS_HELP),
) -> None:
    """Run a pipeline over a file of records (resumable: rerun the same command to continue).

    A record that fails is saved with its reason and the run goes on; the exit status is 3
    when the run finished with failed records (--retry-failed redoes them).  With --engine ray
    the records stream (driver memory stays flat) to a pool of Ray actors.
    """
    from .core.batch import run_batch
    from .core.engines import check_engine
    from .core.pipeline import Pipeline
    from .core.records import check_gold, map_labels, parse_input_map, parse_label_map, read_records, require_columns

    mapping = parse_label_map(label_map)  # a malformed map fails before any model call
    if check_engine(engine) == "ray":
        _run_on_ray(pipeline, input, output=output, input_map=input_map, gold_column=gold_column, gold_step=gold_step,
                   mapping=mapping, model=model, limit=limit, batch_size=batch_size, run_id=run_id, fresh=fresh,
                   retry_failed=retry_failed, max_errors=max_errors, show=show, encoding=encoding, store=store,
                   no_progress=no_progress, allow_empty=allow_empty, address=address, workers=workers,
                   worker_cpus=worker_cpus)
        return
    if address is not None or workers is not None or worker_cpus is not None:
        from .errors import ConfigError

        raise ConfigError("--address, --workers and --worker-cpus need --engine ray", source="openautoglm run")
    pipe = Pipeline.from_yaml(pipeline, model=model, store=store or True, inputs=parse_input_map(input_map))
    input_path = Path(input)
    records = read_records(input_path, encoding=encoding, limit=limit, allow_empty=allow_empty)
    require_columns(records, pipe.required_inputs | ({gold_column} if gold_column else set()), str(input_path))
    con = _console(stderr=True)
    gold = None
    if gold_column and records:  # gold labels that match no task label fail now, not after the run
        gold = check_gold(records, gold_column, pipe.label_steps(), mapping=mapping, source=str(input_path),
                          step=gold_step, prefer=pipe.output_step)
        _print_gold_check(con, gold, pipe.output_step, gold_column)
    rid = run_id or _run_id(pipe.config.fingerprint(), input_path, output, model) + (f"-n{limit}" if limit else "")
    from rich.markup import escape

    from .backends.registry import resolve_model
    from .redact import mask_secrets

    shown_model = mask_secrets(resolve_model(model, pipe.config.model))
    con.print(escape(f"{pipe.config.name}: {len(records)} records from {input_path} · model {shown_model} · run {rid}"))
    result = run_batch(pipe, records, run_id=rid, output=output, batch_size=batch_size,
                       progress=not no_progress, input_name=str(input_path), resume=not fresh,
                       retry_failed=retry_failed, max_errors=max_errors)
    out = _console()
    if result.skipped:
        con.print(f"resumed: {result.skipped} records were already done")
    if result.changed:
        con.print(f"[yellow]{result.changed} stored results were for another version of the record or the "
                  "pipeline: those records ran again[/]")
    failed = len(result.errors)
    ok = sum(1 for r in result.results if "error" not in r)
    out.print(f"done: {ok} ok, {failed} failed in {result.seconds:.1f} s")
    if result.errors:
        con.print("[red]failed records, by reason:[/]")
        for reason, count in result.failure_reasons[:5]:
            con.print(f"  {count} × {escape(mask_secrets(reason))}")
        con.print(f"  first: record {result.errors[0][0]}; rerun with --retry-failed to redo them")
    if gold is not None:
        step = None if gold.step == pipe.output_step else gold.step
        _print_accuracy(out, map_labels(records, gold_column, mapping), result.results, gold_column, step)
    _print_examples(out, records, result.results, pipe, show)
    if output:
        out.print(f"results written to {output}")
    pipe.close()
    if result.errors:
        raise typer.Exit(3)


def _run_on_ray(pipeline: Path, input: str, *, output: Optional[Path], input_map: Optional[List[str]],
                gold_column: Optional[str], gold_step: Optional[str], mapping: dict[str, str], model: Optional[str],
                limit: Optional[int], batch_size: Optional[int], run_id: Optional[str], fresh: bool,
                retry_failed: bool, max_errors: Optional[int], show: int, encoding: str, store: Optional[Path],
                no_progress: bool, allow_empty: bool, address: Optional[str], workers: Optional[int],
                worker_cpus: Optional[float]) -> None:
    """``run --engine ray``: the records stream from the input to the actors and the results
    to the store and the output file; nothing is collected, so the driver's memory stays flat."""
    from itertools import islice

    from rich.markup import escape

    from .backends.registry import resolve_model
    from .core.batch import run_batch
    from .core.engines.ray_engine import ray_session
    from .core.engines.sources import is_remote, stream_records
    from .core.pipeline import Pipeline
    from .core.records import check_gold, parse_input_map, require_columns
    from .redact import mask_secrets

    pipe = Pipeline.from_yaml(pipeline, model=model, store=store or True, inputs=parse_input_map(input_map))
    con, out = _console(stderr=True), _console()

    def records() -> Any:
        return stream_records(input, encoding=encoding, limit=limit, allow_empty=allow_empty)

    with ray_session(address):
        head = list(islice(records(), 1000))  # columns and gold labels are checked on the first rows
        require_columns(head, pipe.required_inputs | ({gold_column} if gold_column else set()), input)
        gold = None
        if gold_column and head:
            gold = check_gold(head, gold_column, pipe.label_steps(), mapping=mapping, source=input, step=gold_step,
                              prefer=pipe.output_step)
            _print_gold_check(con, gold, pipe.output_step, gold_column)
        if run_id:
            rid = run_id
        elif is_remote(input):
            rid = hashlib.sha256(f"{pipe.config.fingerprint()}|{input}|{output and output.resolve()}|{model}"
                                 .encode()).hexdigest()[:16]
        else:  # as the in-process engine names it: switching engines resumes the same run
            rid = _run_id(pipe.config.fingerprint(), Path(input), output, model)
        rid += f"-n{limit}" if limit else ""
        con.print(escape(f"{pipe.config.name}: records from {input} · model "
                         f"{mask_secrets(resolve_model(model, pipe.config.model))} · run {rid} · engine ray"))
        shown: list[tuple[dict[str, Any], dict[str, Any]]] = []
        score = [0, 0]
        step = None if gold is None or gold.step == pipe.output_step else gold.step

        def on_row(idx: int, record: dict[str, Any], res: dict[str, Any]) -> None:
            if len(shown) < show:
                shown.append((record, res))
            if gold is not None and gold_column and "error" not in res:
                label = res.get("label") if step is None else (res.get("steps") or {}).get(step, {}).get("label")
                if label is not None:
                    score[0] += str(mapping.get(str(record.get(gold_column, "")).strip(),
                                                record.get(gold_column))).strip() == label
                    score[1] += 1

        result = run_batch(pipe, records(), run_id=rid, output=output, batch_size=batch_size,
                           progress=not no_progress, input_name=input, resume=not fresh, retry_failed=retry_failed,
                           max_errors=max_errors, engine="ray", address=address, workers=workers,
                           worker_cpus=worker_cpus, reserve_cpus=1.0 if is_remote(input) else None, collect=False,
                           on_row=on_row)
    if result.skipped:
        con.print(f"resumed: {result.skipped} records were already done")
    if result.changed:
        con.print(f"[yellow]{result.changed} stored results were for another version of the record or the "
                  "pipeline: those records ran again[/]")
    failed = result.errors_total
    out.print(f"done: {result.total - failed} ok, {failed} failed in {result.seconds:.1f} s")
    if failed:
        con.print("[red]failed records, by reason:[/]")
        for reason, count in result.failure_reasons[:5]:
            con.print(f"  {count} × {escape(mask_secrets(reason))}")
        con.print(f"  first: record {result.errors[0][0]}; rerun with --retry-failed to redo them")
    if gold is not None and score[1]:
        where = f" (step {step!r})" if step else ""
        out.print(f"[bold]accuracy[/]{where}: {score[0] / score[1]:.3f} ({score[0]}/{score[1]}) against column "
                  f"{gold_column!r}")
    _print_examples(out, [r for r, _ in shown], [r for _, r in shown], pipe, show)
    if output:
        out.print(f"results written to {output}")
    pipe.close()
    if failed:
        raise typer.Exit(3)


def _print_gold_check(con: Any, gold: Any, output_step: str, column: str) -> None:
    """Say which step the gold column scores (when not the result's) and what will count as wrong."""
    from rich.markup import escape

    if gold.step != output_step:
        con.print(escape(f"scoring step {gold.step!r} against column {column!r} "
                         f"({gold.matched} of {gold.total} gold labels are its labels; --gold-step picks another)"))
    for warning in gold.warnings:
        con.print("[yellow]warning:[/] " + escape(warning))


def _print_accuracy(out: Any, records: list[dict[str, Any]], results: list[dict[str, Any]], gold: str,
                    step: str | None = None) -> None:
    """Accuracy of the result's labels, or of step ``step``'s (``result["steps"][step]``)."""
    def predicted(res: dict[str, Any]) -> Any:
        if step is None:
            return res.get("label")
        return (res.get("steps") or {}).get(step, {}).get("label")

    pairs = [(str(r.get(gold)).strip(), predicted(res)) for r, res in zip(records, results) if "error" not in res]
    pairs = [(g, p) for g, p in pairs if p is not None]
    if not pairs:
        out.print("no label predictions to score")
        return
    correct = sum(g == p for g, p in pairs)
    where = f" (step {step!r})" if step else ""
    out.print(f"[bold]accuracy[/]{where}: {correct / len(pairs):.3f} ({correct}/{len(pairs)}) against column {gold!r}")


def _print_examples(out: Any, records: list[dict[str, Any]], results: list[dict[str, Any]], pipe: Any, n: int) -> None:
    if n <= 0 or not records:
        return
    from rich.table import Table

    fields = sorted(pipe.required_inputs)
    table = Table(title="predictions", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column(", ".join(fields) or "input", overflow="fold", max_width=60)
    table.add_column("output", overflow="fold")
    table.add_column("confidence", justify="right")
    for i, (rec, res) in enumerate(list(zip(records, results))[:n]):
        text = " | ".join(str(rec.get(f, ""))[:120] for f in fields)
        if "error" in res:
            table.add_row(str(i), text, f"[red]{res['error'][:80]}[/]", "")
            continue
        shown = res.get("label") or res.get("text") or json.dumps(res.get("output", res), ensure_ascii=False)[:80]
        conf = f"{res['confidence']:.2f}" if isinstance(res.get("confidence"), float) else ""
        table.add_row(str(i), text, str(shown), conf)
    out.print(table)


@app.command()
def models(
    check: bool = typer.Option(False, "--check", help="probe each endpoint (GET /models) with a short timeout"),
    timeout: float = typer.Option(1.0, "--timeout", min=0.05, help="seconds each probe may take (with --check)"),
) -> None:
    """List the models/backends configured here, and why others are not (--check: which answer)."""
    from rich.markup import escape
    from rich.table import Table

    from .backends.registry import list_models

    rows = list_models(check=check, timeout=timeout)
    table = Table(title="models" + ("" if check else " (configured, not checked: --check probes the endpoints)"))
    for col in ("model", "backend", "configured", *(("reachable",) if check else ()), "detail"):
        table.add_column(col, overflow="fold")
    for row in rows:
        cells = [row["model"], row["backend"], "yes" if row["configured"] else "[red]no[/]"]
        if check:
            reachable = row["reachable"]
            cells.append("–" if reachable is None else "yes" if reachable else "[red]no[/]")
        detail = row["detail"] + (f"; {row['probe']}" if check and row.get("probe") else "")
        table.add_row(*(escape(c) if i != 2 and i != 3 else c for i, c in enumerate(cells)), escape(detail))
    _console().print(table)


@app.command()
def logs(
    limit: int = typer.Option(20, "--limit", "-n", help="how many calls"),
    search: Optional[str] = typer.Option(None, "--search", "-q", help="full-text search in prompts/responses"),
    run_id: Optional[str] = typer.Option(None, "--run", help="only this run"),
    as_json: bool = typer.Option(False, "--json", help="print JSON lines"),
    store: Optional[Path] = typer.Option(None, help="SQLite store (default ./.openautoglm/store.db)"),
) -> None:
    """Show recent model calls from the store."""
    import datetime as dt

    from rich.table import Table

    from .store.sqlite import Store

    with Store(store) as st:
        rows = st.recent_calls(limit=limit, search=search, run_id=run_id)
    if as_json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return
    table = Table(title=f"{len(rows)} call(s)" + (f" matching {search!r}" if search else ""))
    for col in ("time", "step", "kind", "model", "tokens", "ms", "prompt", "response"):
        table.add_column(col, overflow="fold", max_width=48 if col in ("prompt", "response") else None)
    for r in rows:
        prompt = _short(r["prompt"])
        response = f"[red]{r['error']}[/]" if r["error"] else _short(r["response"])
        table.add_row(
            dt.datetime.fromtimestamp(r["ts"]).strftime("%m-%d %H:%M:%S"), r["step"] or "", r["kind"] + (" (cached)" if r["cached"] else ""),
            r["model"] or "", f"{r['prompt_tokens'] or 0}+{r['completion_tokens'] or 0}", f"{r['latency_ms'] or 0:.0f}",
            prompt, response,
        )
    _console().print(table)


def _short(value: Optional[str], width: int = 140) -> str:
    if not value:
        return ""
    try:
        data = json.loads(value)
        if isinstance(data, list) and data and isinstance(data[-1], dict) and "content" in data[-1]:
            value = data[-1]["content"]
    except (ValueError, TypeError):
        pass
    value = str(value).replace("\n", " ⏎ ")
    return value if len(value) <= width else value[: width - 1] + "…"


@app.command()
def runs(limit: int = typer.Option(20, "--limit", "-n"), store: Optional[Path] = typer.Option(None)) -> None:
    """List batch runs and their progress."""
    from rich.table import Table

    from .store.sqlite import Store

    with Store(store) as st:
        rows = st.list_runs(limit)
    table = Table(title="runs")
    for col in ("run", "name", "status", "done", "failed", "total", "input"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["run_id"], r["name"] or "", r["status"], str(r["done"]), str(r["failed"]), str(r["total"]), r["input"] or "")
    _console().print(table)


@app.command()
def version() -> None:
    """Print the version."""
    from . import __version__

    print(__version__)


def _register_subsystem_commands() -> None:
    """Commands whose modules live with their subsystem (each imports it lazily)."""
    from .evaluation.cli import eval_command
    from .optimize.distill_cli import distill_command
    from .optimize.search_cli import optimize_command

    app.command("eval")(eval_command)
    app.command("optimize")(optimize_command)
    app.command("distill")(distill_command)

    # Applications and the server each own a ``cli.py`` with ``register(app)``;
    # those modules import only typer at module level, their subsystem lazily.
    from importlib import import_module

    for name in _APPLICATION_CLIS:
        import_module(f"openautoglm.{name}.cli").register(app)


_APPLICATION_CLIS: tuple[str, ...] = ("sql", "automl", "data", "graph", "serve")


_register_subsystem_commands()


def main() -> None:
    from .errors import OpenAutoGLMError
    from .redact import mask_text

    try:
        app()
    except OpenAutoGLMError as exc:
        print(f"error: {mask_text(str(exc))}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
