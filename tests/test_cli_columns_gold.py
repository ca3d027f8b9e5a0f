"""The README tour's column and gold-label friction (issue 19): ``--map``, ``--label-map``,
``--gold-step``, and gold labels checked before the first model call.  Fake backend, tmp store."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from openautoglm.cli import app
from openautoglm.errors import InputDataError

PIPELINE = """\
name: sent
model: fake
task:
  name: sentiment
  template: "Review: {text}"
  labels: [positive, negative]
  format: text
"""

TWO_STEPS = """\
name: triage
model: fake
steps:
  - name: topic
    task: {template: "Text: {text}", labels: [sports, politics], format: text}
  - name: sentiment
    task: {template: "Review: {text}", labels: [positive, negative], format: text}
"""

# SST-2's layout: the text in `sentence`, gold labels 0/1
SST = "sentence\tlabel\na positive film\t1\na negative film\t0\npositive but a zebra\t0\n"
WIDE = {"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "p.yaml").write_text(PIPELINE, encoding="utf-8")
    (tmp_path / "dev.tsv").write_text(SST, encoding="utf-8")
    return tmp_path


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=WIDE)


def calls(store: Path) -> int:
    if not store.exists():
        return 0
    with sqlite3.connect(store) as conn:
        return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


def run(project: Path, *extra: str):  # type: ignore[no-untyped-def]
    return invoke("run", str(project / "p.yaml"), "-i", str(project / "dev.tsv"), "--store",
                  str(project / "s.db"), "--no-progress", *extra)


def evaluate(project: Path, *extra: str):  # type: ignore[no-untyped-def]
    return invoke("eval", str(project / "p.yaml"), "--data", str(project / "dev.tsv"), "--store",
                  str(project / "s.db"), "--no-progress", "-o", str(project / "report"), *extra)


def test_run_maps_a_column_to_the_template_variable(project: Path) -> None:
    result = run(project, "--map", "text=sentence", "-o", str(project / "out.jsonl"))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (project / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["output"]["label"] for r in rows] == ["positive", "negative", "positive"]


def test_without_the_map_the_error_names_it(project: Path) -> None:
    result = run(project)
    assert isinstance(result.exception, InputDataError)
    assert "--map text=sentence" in str(result.exception)


def test_eval_with_map_and_label_map(project: Path) -> None:
    result = evaluate(project, "--map", "text=sentence", "--label-column", "label", "--label-map",
                      "1=positive,0=negative")
    assert result.exit_code == 0, result.output
    metrics = json.loads((project / "report" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["metrics"]["accuracy"] == pytest.approx(2 / 3)


def test_eval_fails_on_unmatched_gold_labels_before_any_model_call(project: Path) -> None:
    result = evaluate(project, "--map", "text=sentence")
    assert isinstance(result.exception, InputDataError)
    assert "--label-map '0=negative,1=positive'" in str(result.exception)
    assert calls(project / "s.db") == 0 and not (project / "report").exists()


def test_run_fails_on_unmatched_gold_labels_before_any_model_call(project: Path) -> None:
    result = run(project, "--map", "text=sentence", "--gold-column", "label")
    assert isinstance(result.exception, InputDataError)
    assert "--label-map '0=negative,1=positive'" in str(result.exception)
    assert calls(project / "s.db") == 0
    ok = run(project, "--map", "text=sentence", "--gold-column", "label", "--label-map", "0=negative,1=positive")
    assert ok.exit_code == 0, ok.output
    assert "accuracy: 0.667 (2/3)" in ok.stdout


def test_run_warns_before_the_run_when_some_gold_labels_are_not_labels(project: Path) -> None:
    (project / "dev.tsv").write_text(SST.replace("\t0\n", "\tnegative\n").replace("\t1\n", "\tneutral\n"),
                                     encoding="utf-8")
    result = run(project, "--map", "text=sentence", "--gold-column", "label")
    assert result.exit_code == 0, result.output
    assert "1 of 3 rows have a gold label that is not one of the task's labels ('neutral')" in " ".join(
        result.stderr.split())


def test_multi_step_run_scores_the_step_whose_labels_match(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(TWO_STEPS, encoding="utf-8")
    (tmp_path / "in.csv").write_text("text,gold\nsports: a goal,sports\npolitics: a vote,politics\n"
                                     "sports: the senate,politics\n", encoding="utf-8")
    args = ["run", str(tmp_path / "p.yaml"), "-i", str(tmp_path / "in.csv"), "--store", str(tmp_path / "s.db"),
            "--no-progress", "--gold-column", "gold"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "accuracy (step 'topic'): 0.667 (2/3)" in result.stdout
    assert "scoring step 'topic'" in result.stderr
    named = invoke(*args, "--gold-step", "sentiment")
    assert isinstance(named.exception, InputDataError) and "step 'sentiment'" in str(named.exception)


def test_eval_scores_the_matching_step_of_a_multi_step_pipeline(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(TWO_STEPS, encoding="utf-8")
    (tmp_path / "in.csv").write_text("text,label\nsports: a goal,sports\npolitics: a vote,politics\n",
                                     encoding="utf-8")
    result = invoke("eval", str(tmp_path / "p.yaml"), "--data", str(tmp_path / "in.csv"), "--store",
                    str(tmp_path / "s.db"), "--no-progress", "--output", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text(encoding="utf-8"))["metrics"]
    assert metrics["accuracy"] == 1.0 and metrics["labels"] == ["sports", "politics"]


def test_optimize_reads_the_mapped_column_and_keeps_the_mapping(tmp_path: Path) -> None:
    from tests.optimize.test_search import blind_task, rows

    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"name": "topic", "model": "fake",
                                                     "task": blind_task().to_config()}), encoding="utf-8")
    for name, seed, n in (("train.jsonl", 1, 30), ("dev.jsonl", 2, 40)):
        data = [{"headline": r["text"], "label": r["label"]} for r in rows(n, seed)]
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    out = tmp_path / "best.yaml"
    result = invoke("optimize", str(tmp_path / "p.yaml"), "--train", str(tmp_path / "train.jsonl"), "--dev",
                    str(tmp_path / "dev.jsonl"), "--map", "text=headline", "--budget", "3000", "--no-retrieval",
                    "-o", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out.with_suffix(".report.json").read_text())["scores"]["best_select"] == 1.0
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["inputs"] == {"text": "headline"}


def test_optimize_honours_a_step_s_own_inputs(tmp_path: Path) -> None:
    from openautoglm.core.pipeline import Pipeline
    from tests.optimize.test_search import blind_task, rows

    step = {"name": "topic", "inputs": {"text": "headline"}, "task": blind_task().to_config()}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"name": "topic", "model": "fake", "steps": [step]}),
                                     encoding="utf-8")
    for name, seed, n in (("train.jsonl", 1, 30), ("dev.jsonl", 2, 40)):
        data = [{"headline": r["text"], "label": r["label"]} for r in rows(n, seed)]
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    out = tmp_path / "best.yaml"
    result = invoke("optimize", str(tmp_path / "p.yaml"), "--train", str(tmp_path / "train.jsonl"), "--dev",
                    str(tmp_path / "dev.jsonl"), "--budget", "3000", "--no-retrieval", "-o", str(out))
    assert result.exit_code == 0, result.output  # it used to fail: "missing variable 'text'"
    best = Pipeline.from_yaml(out, store=False)
    assert best.run(headline="politics news: the senate voted")["label"] == "politics"


def test_distill_checks_dev_labels_first_and_takes_a_label_map(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    (tmp_path / "p.yaml").write_text(PIPELINE, encoding="utf-8")
    texts = [f"a positive film {i}" for i in range(8)] + [f"a negative film {i}" for i in range(8)]
    (tmp_path / "data.csv").write_text("sentence\n" + "\n".join(texts) + "\n", encoding="utf-8")
    (tmp_path / "dev.tsv").write_text(SST, encoding="utf-8")
    args = ["distill", str(tmp_path / "p.yaml"), str(tmp_path / "data.csv"), "--dev", str(tmp_path / "dev.tsv"),
            "--map", "text=sentence", "--embedder", "char-ngram", "--store", str(tmp_path / "s.db"),
            "--no-progress", "-o", str(tmp_path / "student")]
    unmapped = invoke(*args)
    assert isinstance(unmapped.exception, InputDataError)
    assert "--label-map '0=negative,1=positive'" in str(unmapped.exception)
    assert calls(tmp_path / "s.db") == 0
    mapped = invoke(*args, "--label-map", "1=positive,0=negative")
    assert mapped.exit_code == 0, mapped.output
    assert "teacher accuracy 0.667" in " ".join(mapped.stdout.split())
