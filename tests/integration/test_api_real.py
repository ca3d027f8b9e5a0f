"""The public API on the real embedded model."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from openautoglm import Pipeline, Task

pytestmark = pytest.mark.slow


@pytest.fixture()
def store_path(tmp_path):
    return tmp_path / "store.db"


def test_readme_chinese_example(local_backend, store_path):
    task = Task(name="sentiment_analysis", prompt_template="判断以下句子的情感倾向：{text}", labels=["正面", "负面"])
    result = Pipeline(model=local_backend, task=task, store=store_path).run(text="这个产品真是太棒了")
    assert result["label"] in ("正面", "负面")
    assert set(result["scores"]) == {"正面", "负面"}
    assert abs(sum(result["scores"].values()) - 1) < 1e-6
    assert 0.5 <= result["confidence"] <= 1.0 and result["confidence"] == max(result["scores"].values())
    assert result["method"].startswith("logprob")


def test_english_confidence_is_real(local_backend, store_path):
    task = Task(name="sentiment", template="Review: {text}", labels=["positive", "negative"],
                format="text", answer_prefix="Sentiment:")
    pipe = Pipeline(model=local_backend, task=task, store=store_path)
    texts = [
        "an absolute delight , wonderful acting and a great story .",
        "a dull , boring , terrible mess .",
        "it has some good moments , but overall it drags .",
        "one of the best films of the year .",
    ]
    results = pipe.run_batch([{"text": t} for t in texts])
    p_pos = [r["scores"]["positive"] for r in results]
    assert p_pos[0] > p_pos[1] and p_pos[3] > p_pos[1]
    assert len({round(p, 4) for p in p_pos}) == len(p_pos)  # not a constant
    assert results[0]["label"] == "positive" and results[1]["label"] == "negative"
    # every call is traced with tokens and latency
    calls = pipe.store.recent_calls(limit=10)
    assert len(calls) >= 4 and all(c["prompt_tokens"] > 0 for c in calls)


class Person(BaseModel):
    name: str
    age: int


def test_json_extraction_counts_every_attempt(local_backend, store_path):
    task = Task(name="person", template="Extract the person from: {text}", schema=Person, max_retries=2, max_tokens=48)
    pipe = Pipeline(model=local_backend, task=task, store=store_path, cache=False)
    result = pipe.run(text="Alice is 31 years old and lives in Paris.")
    pipe.flush()
    assert 1 <= result["attempts"] <= 3
    assert result["tokens"] > 0
    if result["valid"]:
        Person.model_validate(result["output"])
    else:
        assert result["errors"]
    calls = pipe.store.recent_calls(limit=10)
    attempts = sorted(c["attempt"] for c in calls if c["step"] == "person")
    assert attempts == list(range(result["attempts"]))  # one logged call per attempt
    assert all(c["completion_tokens"] > 0 for c in calls)
