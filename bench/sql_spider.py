"""Issue 4: text-to-SQL on the shared Spider dev questions, naive prompt vs the full parser.

    .venv/bin/python bench/sql_spider.py --quick                          # 12 questions, a few minutes
    .venv/bin/python bench/sql_spider.py --limit 24 --candidates 3 --attempts 2   # the recorded run
    .venv/bin/python bench/sql_spider.py --model openai:qwen2.5-coder --base-url http://localhost:8000/v1

Both systems run in one process on the same questions (spread evenly over the dev set,
wta_1/car_1/flight_2 excluded) and the same model:

* ``naive`` – CREATE TABLE schema + question, one greedy answer, no retrieval, no linking,
  no correction, no voting;
* ``full``  – value/schema linking, 4 examples retrieved from Spider *train* pairs (never dev),
  execution-guided correction (up to 3 attempts) and execution-result voting over
  ``--candidates`` candidates.

EX is execution accuracy on the converted dev databases (see docs/sql.md), not the
official test-suite metric.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from openautoglm.sql.evaluator import HARDNESS, SpiderEvaluator, load_spider, make_parser_factory, render_report

SPIDER = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "spider"


def _cell(row: dict | None) -> str:
    return "-" if row is None else f"{row['ex']:.3f} ({row['n']})"


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
    args = ap.parse_args()
    limit = 12 if args.quick else args.limit
    if args.quick:
        args.candidates, args.attempts = 2, 2
    items = load_spider(args.spider, limit=limit)
    from openautoglm.backends.registry import create_backend

    backend = create_backend(args.model, **({"base_url": args.base_url} if args.base_url else {}))
    reports, wall = [], {}
    for mode in ("naive", "full"):
        factory = make_parser_factory(mode, backend, args.spider / "train_pairs.jsonl", n_candidates=args.candidates,
                                      max_attempts=args.attempts, max_tokens=args.max_tokens)
        started = time.perf_counter()
        reports.append(SpiderEvaluator(args.spider, factory, mode=mode, model=args.model or "local").run(
            items, progress=lambda done, total, rep: print(f"\r{rep.mode}: {done}/{total}", end="", flush=True)))
        wall[mode] = time.perf_counter() - started
    print(f"\nSpider dev (converted DBs), {len(items)} questions, model {args.model or 'embedded SmolLM2-135M'}, "
          f"{os.cpu_count()} CPUs visible\n")
    header = f"{'system':<8}" + "".join(f"{h:>14}" for h in (*HARDNESS, "all")) + f"{'s/question':>12}{'errors':>8}"
    print(header)
    for rep in reports:
        s = rep.summary()
        rows = s["by_hardness"]
        cells = "".join(f"{_cell(rows.get(h)):>14}" for h in (*HARDNESS, "all"))
        print(f"{rep.mode:<8}{cells}{s['seconds_per_question']:>12.2f}{rows['all']['errors']:>8}")
    naive, full = (r.summary()["by_hardness"]["all"]["ex"] for r in reports)
    print(f"\nfull/naive EX: {full:.3f} vs {naive:.3f}; structure match "
          f"{reports[1].summary()['by_hardness']['all']['structure']:.3f} vs "
          f"{reports[0].summary()['by_hardness']['all']['structure']:.3f}; wall {wall['full']:.0f} s vs {wall['naive']:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps([r.to_json() for r in reports], indent=1, ensure_ascii=False))
    (args.out / "report.html").write_text(render_report(reports), encoding="utf-8")
    print(f"report: {args.out / 'report.html'}")


if __name__ == "__main__":
    main()
