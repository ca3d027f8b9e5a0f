"""The text-to-SQL evaluation report rendered from the shared templates shows what the former
f-string page showed, escapes questions, SQL and errors, and stays one offline file."""

from __future__ import annotations

import pytest

from openautoglm.core.html_report import stylesheet
from openautoglm.sql.evaluator import ItemResult, SpiderReport, render_report

from ..evaluation.report_html import assert_escaped, assert_self_contained, missing_tables, missing_texts, parse
from . import legacy_report

HOSTILE = "<script>alert(1)</script>"


def _item(i: int, hardness: str, ex: bool, **kw: object) -> ItemResult:
    base = dict(index=i, db_id="concert_singer", hardness=hardness, question=f"How many singers are there? ({i})",
                gold="SELECT count(*) FROM singer", pred="SELECT count(*) FROM singer" if ex else "SELECT 1",
                ex=ex, structure=ex, confidence=0.9, error=None, seconds=0.25 + i / 100)
    return ItemResult(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def reports() -> list[SpiderReport]:
    """Two modes; every hardness level; right and wrong answers, an error, hostile texts."""
    full = SpiderReport("full", "local", [
        _item(0, "easy", True), _item(1, "medium", False, error="no such column: x < y"),
        _item(2, "hard", True, question=f"Which singer is {HOSTILE}?"),
        _item(3, "extra", False, pred=f"SELECT '{HOSTILE}'", db_id=HOSTILE)])
    naive = SpiderReport(f"naive {HOSTILE}", f"model {HOSTILE}", [
        _item(0, "easy", False, gold="SELECT name FROM singer WHERE age > 30 & 1", error=HOSTILE),
        _item(1, "medium", True)])
    return [full, naive]


def test_template_report_shows_every_text_table_and_plot_of_the_f_string_report(reports: list[SpiderReport]) -> None:
    old, new = parse(legacy_report.render_report(reports)), parse(render_report(reports))
    assert len(old.tables) == 4 and len(old.images) == 1
    assert missing_texts(old, new) == {}
    assert missing_tables(old, new) == []
    assert new.images == old.images  # the same bar chart, byte for byte


def test_numbers_by_hardness_are_in_the_report(reports: list[SpiderReport]) -> None:
    page = parse(render_report(reports))
    by_hardness = page.tables[0]
    assert by_hardness[0] == ["hardness", "n", "EX", "structure match", "errors"]
    assert by_hardness[1:] == [["easy", "1", "1.000", "1.000", "0"], ["medium", "1", "0.000", "0.000", "1"],
                               ["hard", "1", "1.000", "1.000", "0"], ["extra", "1", "0.000", "0.000", "0"],
                               ["all", "4", "0.500", "0.500", "1"]]
    seconds = reports[0].summary()["seconds_per_question"]
    assert f"full · model local · {seconds:.2f} s/question" in page.blocks


def test_questions_sql_and_errors_are_escaped(reports: list[SpiderReport]) -> None:
    html = render_report(reports)
    assert_escaped(html, HOSTILE)
    assert "&amp; 1" in html and "x &lt; y" in html
    assert parse(html).tags["script"] == 0
    assert html.count('<tr class="wrong">') == sum(not r.ex for rep in reports for r in rep.results)


def test_report_is_one_offline_page_with_the_shared_stylesheet(reports: list[SpiderReport]) -> None:
    html = render_report(reports)
    assert_self_contained(html)
    assert parse(html).styles[0].strip() == stylesheet().strip()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
