"""``openautoglm.evaluate`` end to end on the deterministic fake backend (store and outputs in
tmp_path), the ``eval`` command, and one slow run on the real embedded model."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from openautoglm.backends.fake import FakeBackend
from openautoglm.core.pipeline import Pipeline
from openautoglm.core.task import Task
from openautoglm.errors import ConfigError, InputDataError
from openautoglm.evaluation import EvalResult, evaluate
from openautoglm.evaluation.cli import eval_command
from openautoglm.evaluation.report import render_html
from openautoglm.store.sqlite import Store

ROOT = Path(__file__).resolve().parents[2]

PIPELINE = """\
name: sent
model: local
task:
  name: sentiment
  template: "Review: {text}"
  labels: [positive, negative]
  format: text
"""

# the fake backend picks the label whose word occurs in the text; the zebra row is wrong
CSV = ("text,gold\na positive film,positive\na negative film,negative\npositive but a <b>zebra</b>,negative\n"
       "negative again,negative\n")
TASK = dict(name="sentiment", template="Review: {text}", labels=["positive", "negative"], format="text")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "p.yaml").write_text(PIPELINE, encoding="utf-8")
    (tmp_path / "in.csv").write_text(CSV, encoding="utf-8")
    return tmp_path


def run_eval(project: Path, **kw: Any) -> EvalResult:
    return evaluate(project / "p.yaml", project / "in.csv", label_column="gold", model="fake",
                    store=project / "s.db", **kw)


def test_evaluate_yaml_on_csv_writes_metrics_predictions_and_report(project: Path) -> None:
    result = run_eval(project, out=project / "out")
    m = result.metrics
    assert m["n"] == 4 and m["n_errors"] == 0
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["labels"] == ["positive", "negative"]
    assert m["per_class"]["negative"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["confusion_matrix"]["matrix"] == [[1, 0], [1, 2]]
    cal = m["calibration"]
    assert cal["n"] == 4 and 0.0 <= cal["ece"] <= 1.0 and 0.0 <= cal["brier"] <= 2.0
    assert sum(b["count"] for b in cal["bins"]) == 4
    # cost comes from the store: one score call per record, all traced under the run id
    assert m["cost"]["model_calls"] == 4 and m["cost"]["cached_calls"] == 0
    assert m["cost"]["prompt_tokens"] > 0 and m["cost"]["examples_run"] == 4
    assert m["cost"]["examples_per_s"] > 0
    with Store(project / "s.db") as st:
        assert st.call_counts(result.run_id) == {"0": 1, "1": 1, "2": 1, "3": 1}
        assert st.get_run(result.run_id)["done"] == 4
    assert result.run_id.startswith("eval-") and result.model == "fake"

    saved = json.loads((project / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert saved["metrics"]["accuracy"] == pytest.approx(0.75) and saved["run_id"] == result.run_id
    rows = [json.loads(x) for x in (project / "out" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["predicted"] for r in rows] == ["positive", "negative", "positive", "negative"]
    assert [r["correct"] for r in rows] == [True, True, False, True]
    assert rows[2]["gold"] == "negative" and 0.5 < rows[2]["confidence"] <= 1.0 and rows[2]["calls"] == 1
    assert (project / "out" / "report.html").exists()


def test_rerunning_the_same_evaluation_resumes_from_the_store(project: Path) -> None:
    first = run_eval(project)
    again = run_eval(project)
    assert again.run_id == first.run_id
    assert again.metrics["cost"]["examples_resumed"] == 4 and again.metrics["cost"]["examples_run"] == 0
    assert again.metrics["cost"]["model_calls"] == 4  # no new calls
    assert again.metrics["accuracy"] == first.metrics["accuracy"]
    assert run_eval(project, limit=2).run_id != first.run_id


def test_report_is_self_contained_with_one_row_per_example(project: Path) -> None:
    result = run_eval(project)
    page = result.to_html(project / "r.html").read_text(encoding="utf-8")
    body = page.split('<table id="examples">', 1)[1]
    assert body.count("<tr class=") == 4
    assert 'data-correct="0"' in body and "a negative film" in body
    assert "&lt;b&gt;zebra&lt;/b&gt;" in page and "<b>zebra" not in page  # inputs are escaped
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3  # confusion matrix, reliability diagram, confidence histogram
    assert all(base64.b64decode(img).startswith(b"\x89PNG") for img in images)
    assert "http://" not in page and "https://" not in page
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert 'id="wrong-only"' in page and 'id="conf-below"' in page and "function applyFilter" in page


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's script")
def test_report_filter_script_hides_rows() -> None:
    from openautoglm.evaluation.report import SCRIPT

    harness = SCRIPT + """
    function row(c, conf){return {dataset:{correct:c, conf:conf}, style:{display:''}};}
    var rows=[row('1','0.9'), row('0','0.6'), row('0',''), row('1','0.3')];
    var els={'wrong-only':{checked:false}, 'conf-below':{value:''}, 'shown':{textContent:''}};
    var document={getElementById:function(i){return els[i];}, querySelectorAll:function(){return rows;}};
    function vis(){return rows.map(function(r){return r.style.display===''?1:0;}).join('')+':'+els.shown.textContent;}
    var out=[]; applyFilter(); out.push(vis());
    els['wrong-only'].checked=true; applyFilter(); out.push(vis());
    els['conf-below'].value='0.7'; applyFilter(); out.push(vis());
    els['wrong-only'].checked=false; applyFilter(); out.push(vis());
    console.log(out.join(' '));
    """
    done = subprocess.run(["node", "-e", harness], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["1111:4", "0110:2", "0100:1", "0101:2"]


def test_failed_records_count_as_wrong_and_do_not_stop_the_evaluation(tmp_path: Path) -> None:
    data = [{"text": "a positive film", "label": "positive"},
            {"label": "negative"},  # no text: its template cannot be rendered
            {"text": "negative stuff", "label": "negative"}]
    with Pipeline(model=FakeBackend(), task=Task(**TASK), store=tmp_path / "s.db") as pipe:
        result = evaluate(pipe, data, out=tmp_path / "out")
    m = result.metrics
    assert m["n"] == 3 and m["n_errors"] == 1
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["errors"][0]["idx"] == 1 and "text" in m["errors"][0]["error"]
    bad = result.predictions[1]
    assert bad["predicted"] is None and bad["correct"] is False and bad["confidence"] is None
    assert m["confusion_matrix"]["columns"] == ["positive", "negative", "(error)"]
    assert m["confusion_matrix"]["matrix"][1] == [0, 1, 1]
    assert m["calibration"]["n"] == 2
    assert m["cost"]["model_calls"] == 2
    assert "error: " in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_text_output_uses_the_union_of_gold_and_predicted_labels(tmp_path: Path) -> None:
    task = Task(name="say", template="Review: {text}", format="text")
    data = [{"text": "x", "label": "yes"}, {"text": "y", "label": "no"}, {"text": "z", "label": "no"}]
    with Pipeline(model=FakeBackend(responses=["yes", " maybe "]), task=task, store=tmp_path / "s.db") as pipe:
        result = evaluate(pipe, data, out=tmp_path / "out")
    assert [p["predicted"] for p in result.predictions] == ["yes", "maybe", "yes"]
    assert result.metrics["labels"] == ["maybe", "no", "yes"]
    assert result.metrics["accuracy"] == pytest.approx(1 / 3)
    assert result.metrics["calibration"] is None
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 1  # only the confusion matrix without confidences


def test_missing_label_column_is_a_clear_input_error(project: Path) -> None:
    with pytest.raises(InputDataError, match=r"in\.csv: missing column 'label'; it has: gold, text"):
        evaluate(project / "p.yaml", project / "in.csv", model="fake", store=project / "s.db")


def test_empty_gold_label_is_rejected_before_any_call(tmp_path: Path) -> None:
    with Pipeline(model=FakeBackend(), task=Task(**TASK), store=tmp_path / "s.db") as pipe:
        with pytest.raises(InputDataError, match="record 1 has no gold label"):
            evaluate(pipe, [{"text": "a", "label": "positive"}, {"text": "b", "label": " "}])
        assert pipe.store.list_runs() == []


def test_model_override_needs_a_yaml_path(tmp_path: Path) -> None:
    with Pipeline(model=FakeBackend(), task=Task(**TASK), store=False) as pipe:
        with pytest.raises(ConfigError, match="model= and store="):
            evaluate(pipe, [{"text": "a", "label": "positive"}], model="fake")


def test_without_a_store_cost_is_unknown_but_metrics_work(tmp_path: Path) -> None:
    with Pipeline(model=FakeBackend(), task=Task(**TASK), store=False) as pipe:
        result = evaluate(pipe, [{"text": "positive", "label": "positive"}])
    assert result.metrics["accuracy"] == 1.0
    assert result.metrics["cost"]["model_calls"] is None
    assert any("not traced" in w for w in result.metrics["warnings"])


def test_eval_command(project: Path) -> None:
    app = typer.Typer()
    app.command("eval")(eval_command)
    app.callback()(lambda: None)
    out = project / "report"
    args = ["eval", str(project / "p.yaml"), "--data", str(project / "in.csv"), "--label-column", "gold",
            "--model", "fake", "--store", str(project / "s.db"), "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert re.search(r"accuracy\s*│\s*0\.750", result.stdout)
    assert "model calls" in result.stdout and f"report: {out / 'report.html'}" in result.stdout
    assert {p.name for p in out.iterdir()} == {"metrics.json", "predictions.jsonl", "report.html"}
    missing = CliRunner().invoke(app, args[:4] + args[6:])  # default --label-column label
    assert isinstance(missing.exception, InputDataError)


def test_openautoglm_evaluate_is_the_function_even_after_importing_submodules() -> None:
    code = ("import types, openautoglm\n"
            "assert isinstance(openautoglm.evaluate, types.FunctionType), openautoglm.evaluate\n"
            "assert openautoglm.evaluate.__name__ == 'evaluate'\n")
    late = ("import sys, openautoglm.evaluation.cli, openautoglm\nassert callable(openautoglm.evaluate)\n"
            "assert 'openautoglm.core.pipeline' not in sys.modules  # registering the command stays cheap\n")
    for snippet in (code, late):
        subprocess.run([sys.executable, "-c", snippet], check=True, timeout=60)


@pytest.mark.slow
def test_real_embedded_model_on_sst2_rows(tmp_path: Path) -> None:
    example = ROOT / "examples" / "sentiment"
    result = evaluate(example / "pipeline.yaml", example / "reviews.csv", limit=40,
                      store=tmp_path / "s.db", out=tmp_path / "out")
    m = result.metrics
    assert m["n"] == 40 and m["n_errors"] == 0
    assert m["accuracy"] > 0.6
    assert 0.0 <= m["calibration"]["ece"] <= 1.0
    assert m["cost"]["model_calls"] >= 40
    assert (tmp_path / "out" / "report.html").stat().st_size > 10_000


def test_label_map_renames_numeric_gold_labels(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(PIPELINE, encoding="utf-8")
    (tmp_path / "num.csv").write_text("text,gold\na positive film,1\na negative film,0\npositive again,0\n",
                                      encoding="utf-8")
    plain = evaluate(tmp_path / "p.yaml", tmp_path / "num.csv", label_column="gold", model="fake",
                     store=tmp_path / "s.db")
    assert plain.metrics["accuracy"] == 0.0  # "1" never equals "positive"
    mapped = evaluate(tmp_path / "p.yaml", tmp_path / "num.csv", label_column="gold", model="fake",
                      store=tmp_path / "s.db", label_map={"1": "positive", "0": "negative"})
    assert mapped.metrics["accuracy"] == pytest.approx(2 / 3)


def test_parse_label_map_errors_name_the_fix() -> None:
    from openautoglm.core.records import parse_label_map

    assert parse_label_map("1=positive, 0=negative") == {"1": "positive", "0": "negative"}
    with pytest.raises(ConfigError, match="1=positive"):
        parse_label_map("1:positive")


class Estimating(FakeBackend):
    """Scores as an endpoint's top-k estimate does (``exact`` false): a record whose text says
    ``unlisted`` gets one floor value for every label, as when no label was listed."""

    def score_batch(self, requests: Any) -> Any:
        from openautoglm.backends.fake import prompt_text

        out = super().score_batch(requests)
        for req, res in zip(requests, out):
            res.exact = False
            if "unlisted" in prompt_text(req.prompt):
                res.logprobs = [-9.0] * len(res.logprobs)
        return out


def test_the_report_counts_records_per_confidence_method(tmp_path: Path) -> None:
    data = [{"text": "a positive film", "gold": "positive"}, {"text": "a negative film", "gold": "negative"},
            {"text": "unlisted but negative", "gold": "negative"}, {"text": "unlisted, positive", "gold": "negative"}]
    with Pipeline(model=Estimating(), task=Task(**TASK), store=tmp_path / "s.db") as pipe:
        result = evaluate(pipe, data, label_column="gold")
    methods = result.metrics["methods"]
    assert set(methods) == {"logprob-first-token-estimate", "guided-choice-first-token-estimate"}
    assert methods["logprob-first-token-estimate"] == {"records": 2, "correct": 2, "fallbacks": 0,
                                                       "unparsed_votes": 0, "accuracy": 1.0}
    assert methods["guided-choice-first-token-estimate"]["records"] == 2
    assert methods["guided-choice-first-token-estimate"]["fallbacks"] == 2
    assert methods["guided-choice-first-token-estimate"]["accuracy"] == 0.5  # the last row's gold disagrees
    assert all(len(set(p["scores"].values())) > 1 for p in result.predictions)  # none uniform
    assert result.metrics["cost"]["model_calls"] == 6  # a score call per record, and a guided answer per fallback
    html = render_html(result)
    assert "method: guided-choice-first-token-estimate" in html and "2 records, accuracy 0.500" in html

    # a backend that cannot constrain its answers: those records fail, counted apart, never uniform
    with Pipeline(model=Estimating(constraints=()), task=Task(**TASK), store=tmp_path / "t.db") as pipe:
        failed = evaluate(pipe, data, label_column="gold")
    assert failed.metrics["methods"]["(failed)"]["records"] == 2
    assert "cannot constrain an answer to the labels" in failed.metrics["errors"][0]["error"]


def test_methods_are_empty_for_outputs_without_one() -> None:
    from openautoglm.evaluation import methods_report

    assert methods_report([{"output": {"text": "x"}, "correct": True, "error": None}]) == {}
