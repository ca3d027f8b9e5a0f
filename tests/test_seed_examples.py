"""The origin articles' snippets, as adapted in the README's "From the articles" section,
run as written (issue 19, sections 1 and 5).

Each snippet runs on the embedded model (``slow``) and, with ``"local"`` swapped for the
rule-following fake backend, in the fast suite.  The assertions are about the shape and
honesty of the results (a label among the preset's labels, a distribution summing to 1,
how it was measured, which preset supplied the labels), never accuracy: the embedded
model's Chinese is weak, and that is measured elsewhere.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

from openautoglm.core.presets import NoLabelsWarning, get_preset

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = README.read_text(encoding="utf-8").split("\n## From the articles\n", 1)[1].split("\n## ", 1)[0]
BLOCKS = re.findall(r"```python\n(.*?)```", SECTION, re.S)
ZH_SENTIMENT = get_preset("sentiment.v1").labels("zh")


def run_block(index: int, model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run the section's block ``index`` in ``tmp_path`` with ``model`` for ``"local"``; its namespace."""
    monkeypatch.chdir(tmp_path)
    source = BLOCKS[index].replace('"local"', f'"{model}"')
    namespace: dict[str, Any] = {"__name__": f"readme_articles_{index}"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoLabelsWarning)  # the seed task must not fall back to free text
        exec(compile(source, f"README.md#from-the-articles[{index}]", "exec"), namespace)  # noqa: S102
    return namespace


def assert_honest_label(result: Any, labels: list[str], preset: str) -> None:
    assert result["label"] in labels
    assert set(result["scores"]) == set(labels)
    assert math.isclose(sum(result["scores"].values()), 1.0, abs_tol=1e-6)
    assert all(0.0 <= p <= 1.0 for p in result["scores"].values())
    assert result["confidence"] == max(result["scores"].values()) == result["scores"][result["label"]]
    assert isinstance(result["method"], str) and result["method"]
    assert result["preset"] == preset


def test_the_section_has_the_three_snippets() -> None:
    assert len(BLOCKS) == 3
    assert 'prompt_template="判断以下句子的情感倾向：{text}")' in BLOCKS[0] and "labels" not in BLOCKS[0].split("\n")[2]
    assert "model_path=" in BLOCKS[1] and "execute(input_text=" in BLOCKS[2]


def check_sentiment(ns: dict[str, Any]) -> None:
    task = ns["task"]
    assert (task.preset, task.language, task.labels) == ("sentiment.v1", "zh", ZH_SENTIMENT)
    assert "sentiment.v1" in task.description
    assert_honest_label(ns["result"], ZH_SENTIMENT, "sentiment.v1")


def check_sql(ns: dict[str, Any], model: str) -> None:
    parser, result = ns["parser"], ns["result"]
    assert parser.backend.name == model
    assert 0.0 <= result.confidence <= 1.0
    assert result.candidates, "no candidate was generated"
    if result.ok:  # an answer is an executed SELECT with rows
        assert result.sql.upper().startswith(("SELECT", "WITH")) and isinstance(result.rows, list)
    else:  # or an error that says why, never a silent empty answer
        assert isinstance(result.error, str) and result.error


def check_aliases(ns: dict[str, Any]) -> None:
    pipeline, bot = ns["pipeline"], ns["bot"]
    assert ns["AutoGLM"] is ns["TaskPipeline"]
    for pipe, text in ((pipeline, "这个产品真是太棒了"), (bot, "质量很差，不推荐")):
        out = pipe.execute(input_text=text)
        assert_honest_label(out, ZH_SENTIMENT, "sentiment.v1")
        assert out == pipe.run(text=text)  # execute(input_text=...) is run(text=...)


def test_snippets_on_the_fake_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_sentiment(run_block(0, "fake", tmp_path, monkeypatch))
    check_aliases(run_block(2, "fake", tmp_path, monkeypatch))


def test_text_to_sql_snippet_on_the_fake_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sqlglot")
    check_sql(run_block(1, "fake", tmp_path, monkeypatch), "fake")


@pytest.mark.slow
def test_sentiment_snippet_on_the_embedded_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ns = run_block(0, "local", tmp_path, monkeypatch)
    check_sentiment(ns)
    assert "vote" not in ns["result"]["method"]  # the local backend scores every label: no sampling


@pytest.mark.slow
def test_text_to_sql_snippet_on_the_embedded_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sqlglot")
    check_sql(run_block(1, "local", tmp_path, monkeypatch), "local")


@pytest.mark.slow
def test_alias_snippet_on_the_embedded_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check_aliases(run_block(2, "local", tmp_path, monkeypatch))
