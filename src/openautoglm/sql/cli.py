"""``openautoglm sql ask | chat | eval``."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

sql_app = typer.Typer(help="Text-to-SQL: ask a database questions in natural language.", no_args_is_help=True)

_DB = typer.Option(..., "--db", help="sqlite:///file.db, postgresql://user@host/db or duckdb:///file.duckdb")
_MODEL = typer.Option(None, "--model", "-m", help="backend (default: $OPENAUTOGLM_MODEL or the embedded model)")
_EXAMPLES = typer.Option(None, "--examples", help="question/SQL pairs (.jsonl with question, query) to retrieve from")


def register(app: typer.Typer) -> None:
    app.add_typer(sql_app, name="sql")


def _parser(db: str, model: Optional[str], examples: Optional[Path], candidates: int, timeout: float,
            store: Optional[Path], attempts: int = 3, max_tokens: int = 160):  # type: ignore[no-untyped-def]
    from .parser import SemanticParser

    return SemanticParser(model, db, examples=examples, n_candidates=candidates, timeout_s=timeout,
                          store=store or True, max_attempts=attempts, max_tokens=max_tokens)


@contextmanager
def _database_errors(db: str) -> Iterator[None]:
    """A database that cannot be reached (or fails outside a query) is one line, not a traceback:
    the driver's error becomes a :class:`~openautoglm.sql.database.DatabaseError`."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        raise _one_line(db, exc, "cannot reach the database") from None
    except DBAPIError as exc:
        raise _one_line(db, exc, "database error on") from None


def _one_line(db: str, exc: Exception, what: str) -> Exception:
    from .database import DatabaseError

    lines = [line.strip() for line in str(getattr(exc, "orig", None) or exc).splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    hint = lines[1] if len(lines) > 1 and lines[1].endswith("?") else None
    return DatabaseError(f"{what} {_safe_url(db)}: {reason}",
                         hint=hint or "check the --db URL, and that the server is running and accepts connections")


def _safe_url(db: str) -> str:
    """The URL with its password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(db).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy parses: show the scheme only
        return db.split("://", 1)[0] + "://…"


def _show(result, as_json: bool, max_rows: int) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    if as_json:
        print(json.dumps(result.to_dict(max_rows=max_rows), ensure_ascii=False, default=str))
        return
    con = Console(highlight=False)
    con.print(f"[bold]SQL[/] ({result.confidence:.0%} of candidates agree): {result.sql}")
    if result.error:
        con.print(f"[red]error:[/] {result.error}")
        return
    used = result.explanation
    if used.get("tables"):
        con.print(f"uses tables {', '.join(used['tables'])}; columns {', '.join(used.get('columns', []))}")
    if used.get("values"):
        con.print("matched values: " + "; ".join(used["values"]))
    table = Table(*result.columns)
    for row in (result.rows or [])[:max_rows]:
        table.add_row(*(str(v) for v in row))
    con.print(table)
    if result.truncated or len(result.rows or []) > max_rows:
        con.print(f"[dim](first {max_rows} rows shown)[/]")


@sql_app.command("ask")
def ask(
    question: str = typer.Argument(..., help="the question, in any language the model reads"),
    db: str = _DB,
    model: Optional[str] = _MODEL,
    examples: Optional[Path] = _EXAMPLES,
    candidates: int = typer.Option(4, help="candidates generated and voted on"),
    attempts: int = typer.Option(3, help="tries per candidate (execution errors are fed back)"),
    max_tokens: int = typer.Option(160, help="longest SQL the model may write, in tokens"),
    timeout: float = typer.Option(10.0, help="seconds before a query is interrupted"),
    max_rows: int = typer.Option(20, help="rows to print"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    store: Optional[Path] = typer.Option(None, help="SQLite store for the trace (default ./.openautoglm/store.db)"),
) -> None:
    """Answer one question with one read-only SELECT."""
    with _database_errors(db):
        parser = _parser(db, model, examples, candidates, timeout, store, attempts, max_tokens)
        try:
            _show(parser.parse(question), as_json, max_rows)
        finally:
            parser.close()


@sql_app.command("chat")
def chat(
    db: str = _DB,
    model: Optional[str] = _MODEL,
    examples: Optional[Path] = _EXAMPLES,
    candidates: int = typer.Option(4),
    timeout: float = typer.Option(10.0),
    max_rows: int = typer.Option(20),
    store: Optional[Path] = typer.Option(None),
) -> None:
    """Interactive questions; follow-ups ("and only those in 2023?") see earlier turns. Empty line quits."""
    with _database_errors(db):
        parser = _parser(db, model, examples, candidates, timeout, store)
        session = parser.conversation()
        try:
            while True:
                try:
                    question = input("? ").strip()
                except EOFError:
                    break
                if not question or question in ("exit", "quit"):
                    break
                _show(session.ask(question), False, max_rows)
        finally:
            parser.close()


@sql_app.command("eval")
def evaluate(
    spider: Path = typer.Option(..., "--spider", help="folder with dev.json and database/<db>/<db>.sqlite"),
    limit: Optional[int] = typer.Option(None, help="evaluate N questions spread over the dev set"),
    mode: str = typer.Option("full", help="full (retrieval+linking+correction+voting), naive, or both"),
    model: Optional[str] = _MODEL,
    examples: Optional[Path] = typer.Option(None, help="example pool (default: <spider>/train_pairs.jsonl)"),
    candidates: int = typer.Option(4),
    attempts: int = typer.Option(3, help="tries per candidate (full mode)"),
    max_tokens: int = typer.Option(160, help="longest SQL the model may write, in tokens"),
    timeout: float = typer.Option(10.0, help="per-query time limit (gold and predicted)"),
    out: Path = typer.Option(Path("runs/sql-eval"), "--output", "-o", "--out",
                             help="folder for report.json and report.html"),
    store: Optional[Path] = typer.Option(None, help="SQLite store (per-question results; resumable)"),
) -> None:
    """Execution accuracy on Spider-style dev questions, by hardness, with an HTML report."""
    from rich.console import Console

    from ..store.sqlite import Store
    from .evaluator import SpiderEvaluator, load_spider, make_parser_factory, render_report

    modes = ["naive", "full"] if mode == "both" else [mode]
    items = load_spider(spider, limit=limit)
    pool = examples or (spider / "train_pairs.jsonl")
    con = Console(stderr=True, highlight=False)
    reports = []
    with Store(store) as st:
        for m in modes:
            factory = make_parser_factory(m, model, pool if pool.is_file() else None, n_candidates=candidates,
                                          timeout_s=timeout, store=st, max_attempts=attempts, max_tokens=max_tokens)
            evaluator = SpiderEvaluator(spider, factory, mode=m, model=model or "local", timeout_s=timeout, store=st)
            run_id = f"sql-eval-{m}-{model or 'local'}-{len(items)}-c{candidates}"

            def progress(done: int, total: int, rep) -> None:  # type: ignore[no-untyped-def]
                ex = sum(r.ex for r in rep.results) / len(rep.results)
                con.print(f"\r{m}: {done}/{total} EX {ex:.3f}", end="")

            reports.append(evaluator.run(items, run_id=run_id, progress=progress))
            con.print()
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps([r.to_json() for r in reports], indent=1, ensure_ascii=False))
    (out / "report.html").write_text(render_report(reports), encoding="utf-8")
    for rep in reports:
        s = rep.summary()
        cells = "  ".join(f"{lv} {row['ex']:.3f} (n={row['n']})" for lv, row in s["by_hardness"].items())
        print(f"{rep.mode}: {cells}  · {s['seconds_per_question']:.2f} s/question")
    print(f"report: {out / 'report.html'}")
