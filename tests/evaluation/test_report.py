"""The evaluation report rendered from templates shows what the former f-string report
showed, escapes everything that comes from data, and stays one offline file."""

from __future__ import annotations

from pathlib import Path

import pytest

from openautoglm.backends.fake import FakeBackend
from openautoglm.core.html_report import stylesheet
from openautoglm.core.pipeline import Pipeline
from openautoglm.core.task import Task
from openautoglm.evaluation import EvalResult, evaluate
from openautoglm.evaluation.report import render_html

from . import legacy_report
from .report_html import assert_escaped, assert_self_contained, missing_tables, missing_texts, parse

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> EvalResult:
    """Right and wrong answers, a failed record, a gold label the task lacks, a hostile label."""
    task = Task(name="sentiment", template="Review: {text}", labels=["positive", "negative", HOSTILE], format="text")
    data = [{"text": "a positive film", "label": "positive"}, {"text": "a negative film", "label": "negative"},
            {"text": "positive but a <b>zebra</b>", "label": "negative"}, {"label": "negative"},
            {"text": "so-so", "label": "neutral"}, {"text": f"it says {HOSTILE}", "label": HOSTILE}]
    store = tmp_path_factory.mktemp("eval") / "s.db"
    with Pipeline(model=FakeBackend(), task=task, store=store) as pipe:
        return evaluate(pipe, data)


def test_template_report_shows_every_text_table_and_plot_of_the_f_string_report(result: EvalResult) -> None:
    old, new = parse(legacy_report.render_html(result)), parse(render_html(result))
    assert len(old.tables) == 6 and len(old.images) == 3  # the fixture covers every section, cost included
    assert missing_texts(old, new) == {}
    methods = [row for row in new.tables[1] if row[0].startswith("method: ")]  # rows the f-string report lacked
    assert methods == [[f"method: {name}", f"{row['records']} records, accuracy {row['accuracy']:.3f}"]
                       for name, row in result.metrics["methods"].items()] and methods
    new.tables[1] = [row for row in new.tables[1] if row not in methods]
    assert missing_tables(old, new) == []
    assert new.images == old.images  # the same plots, byte for byte, in the same order
    assert len(new.tables) == len(old.tables)


def test_every_number_of_the_metrics_is_in_the_report(result: EvalResult) -> None:
    page = parse(render_html(result))
    cells = {cell for t in page.tables for row in t for cell in row}
    m = result.metrics
    assert f"{m['accuracy']:.3f}" in cells and f"{m['macro_f1']:.3f}" in cells
    assert f"{m['calibration']['ece']:.3f}" in cells and f"{m['calibration']['brier']:.3f}" in cells
    for label, scores in m["per_class"].items():
        assert [label, *(f"{scores[k]:.3f}" for k in ("precision", "recall", "f1")), str(scores["support"])] in \
            page.tables[2]
    matrix = m["confusion_matrix"]
    assert page.tables[3][1:] == [[r, *map(str, row)] for r, row in zip(matrix["rows"], matrix["matrix"])]


def test_labels_and_texts_from_data_are_escaped(result: EvalResult) -> None:
    html = render_html(result)
    assert_escaped(html, HOSTILE)
    assert "&lt;b&gt;zebra&lt;/b&gt;" in html and "<b>zebra" not in html
    assert parse(html).tags["script"] == 1  # only the filter script
    examples = parse(html).tables[-1]
    assert ["5", f"it says {HOSTILE}", HOSTILE, HOSTILE] == examples[6][:4]


def test_report_is_one_offline_file_with_the_shared_stylesheet(result: EvalResult, tmp_path: Path) -> None:
    html = result.to_html(tmp_path / "r.html").read_text(encoding="utf-8")
    assert_self_contained(html)
    assert parse(html).styles[0].strip() == stylesheet().strip()
    rows = html.split('<table id="examples">', 1)[1]
    assert rows.count("<tr class=") == len(result.predictions)
    assert rows.count('data-correct="0"') == sum(not p["correct"] for p in result.predictions)
