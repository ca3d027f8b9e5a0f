"""The ``openautoglm`` command line, on the fake backend and a store in tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openautoglm.cli import app

PIPELINE = """\
name: sent
model: local
task:
  name: sentiment
  template: "Review: {text}"
  labels: [positive, negative]
  format: text
"""

CSV = "text,gold\na positive film,positive\na negative film,negative\npositive but a zebra,negative\n"

ENTRY = Path(sys.executable).parent / "openautoglm"
WIDE = {"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "p.yaml").write_text(PIPELINE, encoding="utf-8")
    (tmp_path / "in.csv").write_text(CSV, encoding="utf-8")
    return tmp_path


def invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env={**WIDE, **(env or {})}, catch_exceptions=False)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **WIDE}
    return subprocess.run([str(ENTRY), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def run_args(project: Path, *extra: str) -> list[str]:
    return ["run", str(project / "p.yaml"), "-i", str(project / "in.csv"), "--model", "fake",
            "--store", str(project / "store.db"), "--no-progress", *extra]


def test_run_writes_output_and_prints_accuracy(project: Path) -> None:
    out = project / "out.jsonl"
    result = invoke(*run_args(project, "-o", str(out), "--gold-column", "gold"))
    assert result.exit_code == 0, result.output
    assert "accuracy: 0.667 (2/3) against column 'gold'" in result.stdout
    assert "done: 3 ok, 0 failed" in result.stdout
    assert f"results written to {out}" in result.stdout
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["idx"] for r in rows] == [0, 1, 2]
    assert [r["output"]["label"] for r in rows] == ["positive", "negative", "positive"]
    assert rows[0]["input"] == {"text": "a positive film", "gold": "positive"}
    assert "zebra" in result.stdout  # the predictions table


def test_rerunning_the_same_command_resumes(project: Path) -> None:
    args = run_args(project, "-o", str(project / "out.jsonl"))
    assert invoke(*args).exit_code == 0
    again = invoke(*args)
    assert again.exit_code == 0
    assert "resumed: 3 records were already done" in again.stderr
    lines = (project / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3


def test_limit_and_runs_command(project: Path) -> None:
    assert invoke(*run_args(project, "--limit", "2", "--run-id", "myrun")).exit_code == 0
    result = invoke("runs", "--store", str(project / "store.db"))
    assert result.exit_code == 0
    assert "myrun" in result.stdout and "done" in result.stdout


def test_logs_search_finds_a_call(project: Path) -> None:
    assert invoke(*run_args(project)).exit_code == 0
    result = invoke("logs", "-q", "zebra", "--store", str(project / "store.db"), "--json")
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 1
    assert "zebra" in rows[0]["prompt"] and rows[0]["step"] == "sentiment"
    table = invoke("logs", "-q", "zebra", "--store", str(project / "store.db"))
    assert "1 call(s) matching 'zebra'" in table.stdout
    assert "zebra" in table.stdout
    none = invoke("logs", "-q", "OR \"", "--store", str(project / "store.db"), "--json")
    assert none.exit_code == 0 and none.stdout.strip() == ""


def test_models_lists_local_presets_and_why_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZHIPUAI_API_KEY", raising=False)
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test")
    result = invoke("models")
    assert result.exit_code == 0
    out = result.stdout
    assert "local" in out and "fake" in out
    for preset in ("zhipu:glm-4-flash", "qwen:qwen-plus", "deepseek:deepseek-chat", "ollama"):
        assert preset in out
    zhipu_line = next(line for line in out.splitlines() if "zhipu:glm-4-flash" in line)
    assert "no" in zhipu_line and "set ZHIPUAI_API_KEY" in zhipu_line
    deepseek_line = next(line for line in out.splitlines() if "deepseek:deepseek-chat" in line)
    assert "yes" in deepseek_line and "ZHIPUAI" not in deepseek_line


def test_version() -> None:
    from openautoglm import __version__

    assert invoke("version").stdout.strip() == __version__


def test_bad_yaml_exits_2_naming_the_file(project: Path) -> None:
    bad = project / "broken.yaml"
    bad.write_text('task:\n  template: "Review: {text}\n  labels: [a, b]\n', encoding="utf-8")
    proc = cli("run", str(bad), "-i", "in.csv", "--model", "fake", "--store", "s.db", cwd=project)
    assert proc.returncode == 2
    assert "broken.yaml:" in proc.stderr and "malformed YAML" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_model_exits_2_with_known_prefixes(project: Path) -> None:
    proc = cli("run", "p.yaml", "-i", "in.csv", "--model", "nope:x", "--store", "s.db", "--no-progress", cwd=project)
    assert proc.returncode == 2
    assert "unknown model 'nope:x'" in proc.stderr
    assert "hint:" in proc.stderr
    for prefix in ("local", "openai", "fake", "zhipu"):
        assert prefix in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_column_exits_2_listing_columns(project: Path) -> None:
    (project / "other.csv").write_text("review,gold\nx,positive\n", encoding="utf-8")
    proc = cli("run", "p.yaml", "-i", "other.csv", "--model", "fake", "--store", "s.db", cwd=project)
    assert proc.returncode == 2
    assert "missing column 'text'" in proc.stderr and "gold, review" in proc.stderr


def test_import_is_light() -> None:
    code = (
        "import sys, openautoglm\n"
        "from openautoglm import Task, Pipeline, Store, create_backend\n"
        "import openautoglm.cli\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
        "print(repr(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
