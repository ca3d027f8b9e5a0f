"""Spider evaluation logic on the real converted dev databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from openautoglm.sql.compare import hardness, same_result, structure_match
from openautoglm.sql.database import QueryResult
from openautoglm.sql.evaluator import SpiderEvaluator, load_spider, render_report


def _r(rows: list[tuple], columns: int = 2) -> QueryResult:
    return QueryResult([f"c{i}" for i in range(columns)], rows)


def test_result_comparison_rules() -> None:
    gold = _r([(1, "a"), (2, "b")])
    assert same_result(gold, _r([(2, "b"), (1, "a")]), ordered=False)       # bag: order free
    assert not same_result(gold, _r([(2, "b"), (1, "a")]), ordered=True)    # ORDER BY: order matters
    assert same_result(gold, _r([("a", 1), ("b", 2)]), ordered=True)        # column order ignored
    assert not same_result(gold, _r([(1, "a")]), ordered=False)             # missing row
    assert not same_result(gold, _r([(1, "a"), (1, "a")]), ordered=False)   # duplicates count
    assert not same_result(_r([(1,)], 1), _r([(1, 1)]), ordered=False)      # extra column
    assert same_result(_r([(2.0,)], 1), _r([(2,)], 1), ordered=False)       # 2.0 == 2


@pytest.mark.parametrize("sql,level", [
    ("SELECT count(*) FROM singer", "easy"),
    ("SELECT name, country, age FROM singer ORDER BY age DESC", "medium"),
    ("SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)", "hard"),
    ("SELECT a FROM t WHERE x = 1 INTERSECT SELECT a FROM t WHERE y = 2 EXCEPT SELECT a FROM u", "extra"),
])
def test_hardness(sql: str, level: str) -> None:
    assert hardness(sql) == level


def test_structure_match_ignores_values_and_aliases() -> None:
    assert structure_match("SELECT T1.name FROM singer AS T1 WHERE T1.age > 30", "SELECT name FROM singer WHERE age > 40")
    assert not structure_match("SELECT name FROM singer WHERE age > 30", "SELECT name FROM singer WHERE age < 30")
    assert not structure_match("SELECT name FROM singer", "SELECT name FROM singer ORDER BY age")


class _GoldParser:
    """Answers each question with a fixed SQL per question (to test the evaluator, not a model)."""

    def __init__(self, url: str, answers: dict[str, str]) -> None:
        from openautoglm.sql.database import Database

        self.db = Database(url)
        self.answers = answers
        self.calls = 0

    def parse(self, question: str) -> Any:
        from openautoglm.sql.parser import ParseResult

        self.calls += 1
        sql = self.answers[question]
        return ParseResult(question, sql, 1.0, [])


def test_evaluator_scores_gold_and_wrong_answers(spider_dir: Path, tmp_path: Path) -> None:
    from openautoglm.store.sqlite import Store

    items = load_spider(spider_dir, limit=6)
    assert len(items) == 6 and all(i.db_id not in ("wta_1", "car_1", "flight_2") for i in items)
    answers = {it.question: it.gold for it in items}
    wrong = items[1]
    answers[wrong.question] = "SELECT 'definitely not the answer'"
    answers[items[2].question] = "SELECT no_such_column FROM no_such_table"
    parsers: list[_GoldParser] = []

    def factory(url: str, db_id: str) -> _GoldParser:
        parsers.append(_GoldParser(url, answers))
        return parsers[-1]

    store = Store(tmp_path / "eval.db")
    report = SpiderEvaluator(spider_dir, factory, store=store).run(items, run_id="t1")
    ex = {r.index: r.ex for r in report.results}
    assert ex[wrong.index] is False and ex[items[2].index] is False
    assert sum(ex.values()) == 4
    assert report.results[2].error  # the SQL error is reported, not raised
    summary = report.summary()
    assert summary["by_hardness"]["all"]["ex"] == pytest.approx(4 / 6)
    assert len(list(store.iter_records("t1", status="done"))) == 6
    # resuming the same run re-scores nothing
    calls_before = sum(p.calls for p in parsers)
    again = SpiderEvaluator(spider_dir, factory, store=store).run(items, run_id="t1")
    assert sum(p.calls for p in parsers) == calls_before
    assert [r.ex for r in again.results] == [r.ex for r in report.results]
    html = render_report([report])
    assert "data:image/png;base64," in html and "EX on converted Spider dev DBs" in html
    assert "http://" not in html and "https://" not in html
    store.close()


def test_every_gold_query_executes(spider_dir: Path) -> None:
    """The converted databases run every kept gold query (a sanity check of the harness)."""
    from openautoglm.sql.database import Database

    items = load_spider(spider_dir, limit=60)
    failures = []
    dbs: dict[str, Database] = {}
    for it in items:
        db = dbs.setdefault(it.db_id, Database(f"sqlite:///{spider_dir / 'database' / it.db_id / (it.db_id + '.sqlite')}"))
        try:
            db.execute(it.gold, max_rows=100_000)
        except Exception as exc:  # noqa: BLE001
            failures.append((it.index, str(exc)))
    assert failures == []
