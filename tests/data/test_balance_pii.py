"""``balance --method paraphrase``: generated rows pass through the same PII redaction as ``clean``
(issue 19: a paraphrase copied a phone number from a PII row into a new row)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from openautoglm.backends.fake import FakeBackend
from openautoglm.cli import app
from openautoglm.core.pipeline import Pipeline
from openautoglm.core.task import Task
from openautoglm.data.balance import balance
from openautoglm.data.io import read_table, write_table
from openautoglm.errors import OpenAutoGLMError

ROWS = [{"text": f"a wonderful film, number {i}", "label": "positive"} for i in range(3)] + [
    {"text": "awful service, call me on 13812345678 or mail ann@example.com", "label": "negative"}]
# what a model that copies its source row answers
COPIED = ["awful service: ring 13812345678", "so bad, write to ann@example.com"]


def copying(responses: list[str] = COPIED) -> Pipeline:
    return Pipeline(model=FakeBackend(responses=responses), store=False,
                    task=Task(name="para", template="Rewrite: {text}", output="text", format="text"))


def paraphrases(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [r["text"] for r in result.records if r.get("_source") == "paraphrase"]


def test_generated_rows_are_redacted_like_clean() -> None:
    result = balance(ROWS, method="paraphrase", pipeline=copying())
    assert paraphrases(result) == ["awful service: ring [CN_MOBILE]", "so bad, write to [EMAIL]"]
    assert result.info["pii_redacted"] == {"cn_mobile": 1, "email": 1}
    originals = [r for r in result.records if r.get("_source") != "paraphrase"]
    assert originals == ROWS  # the input rows are the caller's: `data clean` redacts those


def test_other_modes_and_opting_out() -> None:
    pseudo = paraphrases(balance(ROWS, method="paraphrase", pipeline=copying(), pii="pseudonymize"))
    assert pseudo[0].startswith("awful service: ring [CN_MOBILE_") and "13812345678" not in pseudo[0]
    kept = balance(ROWS, method="paraphrase", pipeline=copying(), pii="none")
    assert "13812345678" in paraphrases(kept)[0] and kept.info["pii_redacted"] == {}
    only_email = paraphrases(balance(ROWS, method="paraphrase", pipeline=copying(), pii_types=["email"]))
    assert "13812345678" in only_email[0] and "[EMAIL]" in only_email[1]
    with pytest.raises(OpenAutoGLMError, match="unknown PII mode"):
        balance(ROWS, method="paraphrase", pipeline=copying(), pii="blur")


def test_the_balance_command_redacts_by_default(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "name: para\nmodel: {model: fake, responses: ['awful service: ring 13812345678']}\n"
        "task: {name: para, template: 'Rewrite: {text}', output: text, format: text}\n", encoding="utf-8")
    write_table(tmp_path / "in.csv", ROWS)
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(app, ["data", "balance", str(tmp_path / "in.csv"), "--method", "paraphrase",
                                      "--pipeline", str(tmp_path / "p.yaml"), "--max-new", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    written = read_table(out)  # the originals, then the new rows
    assert [r["text"] for r in written[len(ROWS):]] == ["awful service: ring [CN_MOBILE]"]
    assert "pii_redacted" in result.stdout
