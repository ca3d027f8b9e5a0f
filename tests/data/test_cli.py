from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from openautoglm.data.cli import register
from openautoglm.data.io import read_table, write_table


@pytest.fixture()
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def version() -> None:  # a second command, so "data" stays a group
        pass

    return app


def run(app: typer.Typer, *args: str) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


ROWS = [{"text": "mail a@example.com now", "label": "pos"}, {"text": "mail a@example.com now", "label": "pos"},
        {"text": "手机13812345678", "label": "neg"}, {"text": "a calm and quiet evening by the sea", "label": "neg"}]


def test_group_lists_every_command(app: typer.Typer) -> None:
    out = run(app, "data", "--help").output
    for name in ("profile", "clean", "label-issues", "balance", "active-learn", "drift", "qc", "llm-label"):
        assert name in out


def test_profile_and_clean(app: typer.Typer, tmp_path: Path) -> None:
    src = write_table(tmp_path / "in.csv", ROWS)
    res = run(app, "data", "profile", src, "-l", "label", "-o", tmp_path / "prof", "--no-progress")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "prof" / "profile.json").read_text())["stats"]["exact_duplicates"] == 1
    res = run(app, "data", "clean", src, "-o", tmp_path / "out.jsonl", "--pii", "mask", "--no-progress")
    assert res.exit_code == 0, res.output
    assert [r["text"] for r in read_table(tmp_path / "out.jsonl")] == [
        "mail [EMAIL] now", "手机[CN_MOBILE]", "a calm and quiet evening by the sea"]
    assert (tmp_path / "out.jsonl.audit.jsonl").is_file()


def test_errors_are_clean(app: typer.Typer, tmp_path: Path) -> None:
    res = run(app, "data", "profile", tmp_path / "nope.csv")
    assert res.exit_code != 0 and "input file not found" in str(res.exception)
    src = write_table(tmp_path / "in.csv", ROWS)
    res = run(app, "data", "clean", src, "-o", tmp_path / "o.csv", "-t", "body")
    assert "no column 'body'" in str(res.exception)


def test_balance_and_qc(app: typer.Typer, tmp_path: Path) -> None:
    src = write_table(tmp_path / "in.csv", ROWS + [{"text": "x", "label": "pos"}])
    res = run(app, "data", "balance", src, "-o", tmp_path / "bal.csv", "--method", "undersample")
    assert res.exit_code == 0, res.output
    assert len(read_table(tmp_path / "bal.csv")) == 4
    ann = write_table(tmp_path / "ann.csv", [{"text": "t", "a": "x", "b": "x"}, {"text": "u", "a": "y", "b": "x"},
                                              {"text": "v", "a": "y", "b": "y"}])
    guide = tmp_path / "g.yaml"
    guide.write_text("labels: [x]\nlabel_columns: [a, b]\n", encoding="utf-8")
    res = run(app, "data", "qc", ann, "--annotators", "a,b", "--guideline", guide,
              "--violations", tmp_path / "v.csv", "--fail-on-violation", "--report", tmp_path / "qc.html")
    assert res.exit_code == 1 and "cohen_kappa" in res.output
    assert "allowed_labels" in (tmp_path / "qc.html").read_text(encoding="utf-8")
    assert len(read_table(tmp_path / "v.csv")) == 3


def test_drift_exit_code(app: typer.Typer, tmp_path: Path) -> None:
    ref = write_table(tmp_path / "ref.csv", [{"text": "a", "label": "pos" if i % 2 else "neg"} for i in range(100)])
    same = write_table(tmp_path / "same.csv", [{"text": "a", "label": "neg" if i % 2 else "pos"} for i in range(100)])
    cur = write_table(tmp_path / "cur.csv", [{"text": "a", "label": "pos"} for _ in range(100)])
    ok = run(app, "data", "drift", ref, same, "-l", "label", "--no-embeddings", "--report", tmp_path / "d.json")
    assert ok.exit_code == 0, ok.output
    bad = run(app, "data", "drift", ref, cur, "-l", "label", "--no-embeddings")
    assert bad.exit_code == 1 and "label_psi" in bad.output


FAKE_PIPELINE = """name: fake-sentiment
model: fake
task:
  name: sentiment
  template: "Review: {text}"
  labels: [positive, negative]
  format: text
  answer_prefix: "Sentiment:"
"""


def test_llm_label_and_active_learn_with_a_pipeline(app: typer.Typer, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the pipeline's store goes to ./.openautoglm
    pipe = tmp_path / "p.yaml"
    pipe.write_text(FAKE_PIPELINE, encoding="utf-8")
    rows = [{"text": f"{w} {w} film number {i}"} for i, w in enumerate(["positive", "negative", "so-so"] * 8)]
    src = write_table(tmp_path / "u.csv", rows)
    res = run(app, "data", "llm-label", pipe, "-i", src, "-o", tmp_path / "lab.csv", "--min-confidence", "0.6",
              "--no-progress")
    assert res.exit_code == 0, res.output
    labeled, review = read_table(tmp_path / "lab.csv"), read_table(tmp_path / "lab.review.csv")
    assert len(labeled) + len(review) == 24 and len(labeled) == 16
    assert all(r["llm_label"] == r["text"].split()[0] for r in labeled)
    res = run(app, "data", "active-learn", src, "--pipeline", pipe, "--rounds", "2", "--batch", "4",
              "--embedder", "char-ngram", "-o", tmp_path / "al")
    assert res.exit_code == 0, res.output
    assert len(read_table(tmp_path / "al" / "labeled.jsonl")) == 10 + 2 * 4  # a random seed round, then 2 rounds


def test_registers_on_the_main_app_and_imports_lightly() -> None:
    import subprocess
    import sys

    code = ("import sys; from openautoglm.data.cli import register; import typer; app = typer.Typer();"
            "register(app); print(sorted(m for m in ('numpy','torch','sklearn','pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    from openautoglm.cli import app as main_app  # the name "data" is free on the main app (or ours already)

    taken = {c.name for c in main_app.registered_commands} | {g.name for g in main_app.registered_groups}
    assert "data" not in taken or any(g.typer_instance is not None and g.name == "data"
                                      for g in main_app.registered_groups)
