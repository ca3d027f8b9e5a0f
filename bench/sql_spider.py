"""Issue 4: text-to-SQL on the shared Spider dev questions, naive prompt vs the full parser.

    .venv/bin/python bench/sql_spider.py --quick                          # 12 questions, a few minutes
    .venv/bin/python bench/sql_spider.py --limit 24 --candidates 3 --attempts 2   # the recorded run
    .venv/bin/python bench/sql_spider.py --model openai:qwen2.5-coder --base-url http://localhost:8000/v1
    .venv/bin/python bench/sql_spider.py --limit 24 --candidates 3 --attempts 2 --grammar both   # issue 18
    .venv/bin/python bench/sql_spider.py --check-grammar     # every dev gold query through its schema grammar

Both systems run in one process on the same questions (spread evenly over the dev set,
wta_1/car_1/flight_2 excluded) and the same model:

* ``naive`` – CREATE TABLE schema + question, one greedy answer, no retrieval, no linking,
  no correction, no voting;
* ``full``  – value/schema linking, 4 examples retrieved from Spider *train* pairs (never dev),
  execution-guided correction (up to 3 attempts) and execution-result voting over
  ``--candidates`` candidates.

``--grammar on`` runs both under a schema grammar (constrained decoding on a backend that
enforces grammars; the full parser binds each candidate to one linked table set, aliases
bound to their tables), ``off`` without it, ``both`` all four side by side.  ``--runs``
picks systems one by one: ``full:on``, ``full:off``, ``full:db`` (the database's grammar,
no table sets: the issue-18 grammar before binding), ``naive:on``...
Besides EX the table counts answers that fail to execute and answers naming a table or
column that is not in the schema (``unknown``; an undefined alias qualifier is counted
apart, ``aliases``).

EX is execution accuracy on the converted dev databases (see docs/sql.md), not the
official test-suite metric.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from openautoglm.sql.compare import unknown_identifiers
from openautoglm.sql.database import Database
from openautoglm.sql.evaluator import (HARDNESS, SpiderEvaluator, SpiderReport, load_spider, make_parser_factory,
                                       render_report)

SPIDER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "spider"


def _cell(row: dict | None) -> str:
    return "-" if row is None else f"{row['ex']:.3f} ({row['n']})"


MODES = {"off": [("naive", False), ("full", False)], "on": [("naive", True), ("full", True)],
         "both": [("naive", False), ("full", False), ("naive", True), ("full", True)]}


def identifier_counts(spider: Path, report: SpiderReport) -> tuple[int, int]:
    """Answers naming a table/column not in the schema, and answers with an undefined alias."""
    schemas: dict[str, object] = {}
    unknown = aliases = 0
    for r in report.results:
        if not r.pred:
            continue
        if r.db_id not in schemas:
            with Database(f"sqlite:///{spider / 'database' / r.db_id / f'{r.db_id}.sqlite'}") as db:
                schemas[r.db_id] = db.schema(sample_values=0)
        found = unknown_identifiers(r.pred, schemas[r.db_id]) or []  # type: ignore[arg-type]
        unknown += any(not f.startswith("alias ") for f in found)
        aliases += any(f.startswith("alias ") for f in found)
    return unknown, aliases


def check_grammar(spider: Path) -> None:
    """Every dev gold query (all 20 databases) through its database's grammar, and through the
    set grammar a parser candidate gets for the query's own tables (in the order the query
    names them; bound aliases, the FROMs of :func:`generation_orders`), as llguidance's
    matcher reads it over the embedded model's tokenizer."""
    import sqlglot
    from sqlglot import exp

    from openautoglm.sql.bound import build_set_grammar, generation_orders
    from openautoglm.sql.grammar import accepts, build_grammar, load_tokenizer

    tokenizer = load_tokenizer()
    dev = json.loads((spider / "dev.json").read_text(encoding="utf-8"))
    per_db: dict[str, list[int]] = {}
    rejected = []
    started = time.perf_counter()
    grammars, schemas = {}, {}
    for item in dev:
        db_id, sql = item["db_id"], item["query"].strip()
        if db_id not in grammars:
            with Database(f"sqlite:///{spider / 'database' / db_id / f'{db_id}.sqlite'}") as db:
                schemas[db_id] = db.schema(sample_values=0)
            grammars[db_id] = build_grammar(schemas[db_id], database=db_id)
        schema = schemas[db_id]
        ok, prefix = accepts(grammars[db_id], sql, tokenizer)
        tables = list(dict.fromkeys(schema.table(t.name).name  # type: ignore[union-attr]
                                    for t in sqlglot.parse_one(sql, read="sqlite").find_all(exp.Table)))
        orders, derived = generation_orders(schema, tables)
        bound_ok, bound_prefix = accepts(build_set_grammar(schema, tables, orders=orders, derived=derived), sql,
                                         tokenizer)
        row = per_db.setdefault(db_id, [0, 0, 0])
        row[0] += ok
        row[1] += bound_ok
        row[2] += 1
        if not ok:
            rejected.append(("database grammar", db_id, sql, prefix))
        if not bound_ok:
            rejected.append(("set grammar", db_id, sql, bound_prefix))
    print(f"{'database':<32}{'database grammar':>18}{'set grammar':>13}{'queries':>9}{'grammar chars':>15}")
    for db_id, (ok, bound_ok, n) in sorted(per_db.items()):
        print(f"{db_id:<32}{ok:>18}{bound_ok:>13}{n:>9}{len(grammars[db_id].text):>15}")
    total = sum(n for *_, n in per_db.values())
    accepted = sum(row[0] for row in per_db.values())
    bound = sum(row[1] for row in per_db.values())
    print(f"\naccepted {accepted}/{total} = {accepted / total:.2%} of Spider dev gold queries by their database's "
          f"grammar, {bound}/{total} = {bound / total:.2%} by their table set's ({time.perf_counter() - started:.0f} s)")
    for kind, db_id, query, prefix in rejected:
        print(f"rejected by the {kind} [{db_id}] {query}\n    admitted up to: {prefix!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spider", type=Path, default=SPIDER)
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--quick", action="store_true", help="12 questions, 2 candidates")
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--attempts", type=int, default=3, help="tries per candidate (execution errors fed back)")
    ap.add_argument("--max-tokens", type=int, default=100, help="longest SQL answer (both systems)")
    ap.add_argument("--model", default=None, help="backend spec (default: the embedded model)")
    ap.add_argument("--base-url", default=None, help="for openai:* models: the endpoint")
    ap.add_argument("--out", type=Path, default=Path("out/sql_bench"))
    ap.add_argument("--grammar", choices=sorted(MODES), default="off",
                    help="generate under the schema grammar: on, off (default), or both side by side")
    ap.add_argument("--check-grammar", action="store_true", help="only run the dev gold queries through the grammar")
    ap.add_argument("--runs", default=None,
                    help="instead of --grammar: systems to run, e.g. full:on,full:off (one process per run "
                         "keeps each within a time budget on a busy machine)")
    ap.add_argument("--log-items", action="store_true", help="print each question's result as a JSON line")
    ap.add_argument("--examples", type=int, default=None, help="retrieved examples per prompt (full parser; "
                    "default: the parser's)")
    ap.add_argument("--shift", type=float, default=0.0,
                    help="take the questions this fraction of a step past the recorded ones (0.5: a disjoint set)")
    args = ap.parse_args()
    if args.check_grammar:
        check_grammar(args.spider)
        return
    limit = 12 if args.quick else args.limit
    if args.quick:
        args.candidates, args.attempts = 2, 2
    items = load_spider(args.spider, limit=limit)
    if args.shift:  # the questions halfway between the recorded ones: a development set apart from them
        every = load_spider(args.spider)
        step = len(every) / limit
        items = [every[int(i * step + step * args.shift) % len(every)] for i in range(limit)]
    from openautoglm.backends.registry import create_backend

    backend = create_backend(args.model, **({"base_url": args.base_url} if args.base_url else {}))
    reports, wall = [], {}
    runs = [(m, "on" if g else "off") for m, g in MODES[args.grammar]] if not args.runs else \
        [(r.split(":")[0], r.split(":")[1]) for r in args.runs.split(",")]
    for mode, kind in runs:
        grammar = kind in ("on", "db")
        label = {"on": f"{mode}+grammar", "db": f"{mode}+dbgrammar", "off": mode}[kind]
        factory = make_parser_factory(mode, backend, args.spider / "train_pairs.jsonl", n_candidates=args.candidates,
                                      max_attempts=args.attempts, max_tokens=args.max_tokens, grammar=grammar,
                                      bind_tables=kind == "on",
                                      **({"n_examples": args.examples} if args.examples is not None else {}))
        started = time.perf_counter()
        reports.append(SpiderEvaluator(args.spider, factory, mode=label, model=args.model or "local").run(
            items, progress=lambda done, total, rep: print(f"\r{rep.mode}: {done}/{total}", end="", flush=True)
            if not args.log_items else print(json.dumps(asdict(rep.results[-1])), flush=True)))
        wall[label] = time.perf_counter() - started
    print(f"\nSpider dev (converted DBs), {len(items)} questions, model {args.model or 'embedded SmolLM2-135M'}, "
          f"{os.cpu_count()} CPUs visible\n")
    header = f"{'system':<14}" + "".join(f"{h:>14}" for h in (*HARDNESS, "all")) + \
        f"{'structure':>10}{'s/question':>12}{'errors':>8}{'unknown':>9}{'aliases':>9}{'wall s':>8}"
    print(header)
    for rep in reports:
        s = rep.summary()
        rows = s["by_hardness"]
        cells = "".join(f"{_cell(rows.get(h)):>14}" for h in (*HARDNESS, "all"))
        unknown, aliases = identifier_counts(args.spider, rep)
        print(f"{rep.mode:<14}{cells}{rows['all']['structure']:>10.3f}{s['seconds_per_question']:>12.2f}"
              f"{rows['all']['errors']:>8}{unknown:>9}{aliases:>9}{wall[rep.mode]:>8.0f}")
    print("\nerrors: answers that failed to execute; unknown: answers naming a table or column not in the schema;"
          " aliases: answers qualifying a column with an alias no FROM defines")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps([r.to_json() for r in reports], indent=1, ensure_ascii=False))
    (args.out / "report.html").write_text(render_report(reports), encoding="utf-8")
    print(f"report: {args.out / 'report.html'}")


if __name__ == "__main__":
    main()
