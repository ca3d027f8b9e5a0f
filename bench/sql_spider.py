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

``--grammar on`` runs both under the database's schema grammar (constrained decoding on
a backend that enforces grammars), ``off`` without it, ``both`` all four side by side.
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
    """Every dev gold query (all 20 databases) through its database's grammar, as llguidance's
    matcher reads it over the embedded model's tokenizer."""
    from openautoglm.sql.grammar import accepts, build_grammar, load_tokenizer

    tokenizer = load_tokenizer()
    dev = json.loads((spider / "dev.json").read_text(encoding="utf-8"))
    per_db: dict[str, list[int]] = {}
    rejected = []
    started = time.perf_counter()
    grammars = {}
    for item in dev:
        db_id = item["db_id"]
        if db_id not in grammars:
            with Database(f"sqlite:///{spider / 'database' / db_id / f'{db_id}.sqlite'}") as db:
                grammars[db_id] = build_grammar(db.schema(sample_values=0), database=db_id)
        ok, prefix = accepts(grammars[db_id], item["query"].strip(), tokenizer)
        per_db.setdefault(db_id, [0, 0])[0] += ok
        per_db[db_id][1] += 1
        if not ok:
            rejected.append((db_id, item["query"], prefix))
    print(f"{'database':<32}{'accepted':>10}{'queries':>9}{'grammar chars':>15}")
    for db_id, (ok, n) in sorted(per_db.items()):
        print(f"{db_id:<32}{ok:>10}{n:>9}{len(grammars[db_id].text):>15}")
    total = sum(n for _, n in per_db.values())
    accepted = sum(ok for ok, _ in per_db.values())
    print(f"\naccepted {accepted}/{total} = {accepted / total:.2%} of Spider dev gold queries "
          f"({time.perf_counter() - started:.0f} s)")
    for db_id, query, prefix in rejected:
        print(f"rejected [{db_id}] {query}\n    admitted up to: {prefix!r}")


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
    args = ap.parse_args()
    if args.check_grammar:
        check_grammar(args.spider)
        return
    limit = 12 if args.quick else args.limit
    if args.quick:
        args.candidates, args.attempts = 2, 2
    items = load_spider(args.spider, limit=limit)
    from openautoglm.backends.registry import create_backend

    backend = create_backend(args.model, **({"base_url": args.base_url} if args.base_url else {}))
    reports, wall = [], {}
    runs = MODES[args.grammar] if not args.runs else \
        [(r.split(":")[0], r.split(":")[1] == "on") for r in args.runs.split(",")]
    for mode, grammar in runs:
        label = f"{mode}+grammar" if grammar else mode
        factory = make_parser_factory(mode, backend, args.spider / "train_pairs.jsonl", n_candidates=args.candidates,
                                      max_attempts=args.attempts, max_tokens=args.max_tokens, grammar=grammar)
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
