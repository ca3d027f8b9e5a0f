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


# -- failures, concurrency, secrets ------------------------------------------------------

SLOW_PIPELINE = """\
name: slow
model: {model: fake, delay_s: 0.01}
steps:
  - name: echo
    task: {template: "Say: {text}", max_tokens: 4}
"""


def test_two_identical_runs_started_together_do_the_work_once(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(SLOW_PIPELINE, encoding="utf-8")
    (tmp_path / "in.csv").write_text("text\n" + "".join(f"record {i}\n" for i in range(150)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    args = [str(ENTRY), "run", "p.yaml", "-i", "in.csv", "-o", str(out), "--store", "store.db", "--no-progress"]
    env = {**os.environ, **WIDE}
    procs = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stdout.read()) for p in procs]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in results)
    # either the second was refused while the first ran, or it started after and found all done
    assert codes in ([0, 0], [0, 2]), results
    if codes == [0, 2]:
        assert any("is already running" in text for code, text in results if code == 2)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["idx"] for r in rows] == list(range(150))  # each record once, in order
    import sqlite3

    with sqlite3.connect(tmp_path / "store.db") as conn:
        per_record = dict(conn.execute("SELECT record_key, COUNT(*) FROM calls GROUP BY record_key").fetchall())
    assert len(per_record) == 150 and set(per_record.values()) == {1}  # the model was asked once per record


def test_failed_records_are_reported_by_reason_and_retried_on_request(project: Path) -> None:
    (project / "in.csv").write_text("text\nfine\nbad\nalso fine\n", encoding="utf-8")
    (project / "p.yaml").write_text(
        "name: p\nmodel: fake\nsteps:\n  - name: check\n    call: tests.core.helpers_steps:fail_on_bad\n",
        encoding="utf-8")
    env = {**os.environ, **WIDE, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [str(ENTRY), *run_args(project, "-o", str(project / "o.jsonl"))]
    result = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert "done: 2 ok, 1 failed" in result.stdout
    assert "1 × step 'check'" in result.stderr and "cannot handle 'bad'" in result.stderr
    assert "--retry-failed" in result.stderr
    rows = [json.loads(line) for line in (project / "o.jsonl").read_text().splitlines()]
    assert [("error" in r) for r in rows] == [False, True, False]
    again = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 3 and "resumed: 3 records were already done" in again.stderr
    retried = subprocess.run([*args, "--retry-failed"], cwd=project, env=env, capture_output=True, text=True,
                             timeout=60)
    assert retried.returncode == 3 and "resumed: 2 records were already done" in retried.stderr


def test_the_banner_masks_secrets(project: Path) -> None:
    secret = "sk-live-SECRET-abcdef123456"
    (project / "p.yaml").write_text(PIPELINE.replace("model: local", f"model: {{model: fake, api_key: {secret}}}"),
                                    encoding="utf-8")
    result = cli("run", str(project / "p.yaml"), "-i", str(project / "in.csv"), "--store",
                 str(project / "store.db"), "--no-progress", cwd=project)
    assert secret not in result.stdout + result.stderr
    assert "'api_key': '***'" in result.stderr.replace("\n", "")


def test_an_input_without_records_is_an_error_unless_allowed(project: Path) -> None:
    (project / "in.csv").write_text("text\n", encoding="utf-8")
    refused = cli(*run_args(project), cwd=project)
    assert refused.returncode == 2 and "no data rows" in refused.stderr and "--allow-empty" in refused.stderr
    allowed = cli(*run_args(project, "--allow-empty", "-o", str(project / "o.jsonl")), cwd=project)
    assert allowed.returncode == 0 and "done: 0 ok, 0 failed" in allowed.stdout
    assert (project / "o.jsonl").read_text() == ""
