from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from openautoglm.backends.fake import FakeBackend
from openautoglm.core.pipeline import Pipeline
from openautoglm.core.task import Task
from openautoglm.data.active import active_learning, file_oracle, informativeness, query
from openautoglm.data.balance import balance, class_weights
from openautoglm.data.io import write_table
from openautoglm.data.llm_label import llm_label
from openautoglm.errors import InputDataError, OpenAutoGLMError

POS = ["great", "wonderful", "excellent", "lovely", "superb", "delightful"]
NEG = ["awful", "terrible", "boring", "dreadful", "poor", "horrible"]


def _reviews(n_pos: int, n_neg: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label, words, n in (("positive", POS, n_pos), ("negative", NEG, n_neg)):
        for _ in range(n):
            rows.append({"text": f"the film was {rng.choice(words)} and {rng.choice(words)} with {rng.randint(0, 999)} extras",
                         "label": label})
    rng.shuffle(rows)
    return rows


# -- balance -----------------------------------------------------------------------------
def test_class_weights() -> None:
    assert class_weights(["a", "a", "a", "b"]) == {"a": pytest.approx(4 / 6), "b": 2.0}


@pytest.mark.parametrize("method, size", [("oversample", 40), ("undersample", 10)])
def test_random_resampling(method: str, size: int) -> None:
    rows = _reviews(40, 10)
    result = balance(rows, method=method)
    assert result.before == {"positive": 40, "negative": 10}
    assert result.after == {"positive": size, "negative": size}
    assert Counter(r["label"] for r in result.records) == result.after
    assert all(r in rows for r in result.records)


@pytest.mark.slow
def test_smote_on_char_ngram_embeddings() -> None:
    rows = _reviews(60, 12)
    result = balance(rows, method="smote", embedder="char-ngram")
    assert result.features is not None and result.features.shape[0] == 120
    assert Counter(result.labels) == {"positive": 60, "negative": 60}
    with pytest.raises(OpenAutoGLMError, match="unknown balance method"):
        balance(rows, method="magic")


def test_paraphrase_dedups_against_originals() -> None:
    rows = _reviews(6, 2)
    neg = [r["text"] for r in rows if r["label"] == "negative"]
    # the fake model returns: an original (rejected), a new sentence, the same again (rejected), another new one
    responses = [neg[0], "a dull, tiresome movie", "A dull,  tiresome movie", "i walked out after an hour"]
    pipe = Pipeline(model=FakeBackend(responses=responses),
                    task=Task(name="para", template="Rewrite: {text}", output="text", format="text"), store=False)
    result = balance(rows, method="paraphrase", pipeline=pipe)
    new = [r for r in result.records if r.get("_source") == "paraphrase"]
    assert [r["text"] for r in new] == ["a dull, tiresome movie", "i walked out after an hour"]
    assert all(r["label"] == "negative" for r in new)
    assert result.info["requested"] == 4 and result.info["rejected"] == {"exact_duplicate": 2}
    assert result.after == {"positive": 6, "negative": 4}


# -- active learning ---------------------------------------------------------------------
def test_query_strategies() -> None:
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3], [0.5, 0.5]])
    for strategy in ("uncertainty", "margin", "entropy"):
        assert query(probs, 2, strategy) == [3, 1]
    assert informativeness(np.array([[0.5, 0.3, 0.2]]), "margin")[0] == pytest.approx(-0.2)
    assert sorted(query(probs, 4, "random")) == [0, 1, 2, 3]
    with pytest.raises(OpenAutoGLMError):
        query(probs, 1, "greedy")


@pytest.mark.slow
def test_active_loop_with_human_file(tmp_path: Path) -> None:
    pool_rows = _reviews(60, 60, seed=1)
    pool = [{"id": str(i), "text": r["text"]} for i, r in enumerate(pool_rows)]
    answers = write_table(tmp_path / "answers.csv", [{"id": str(i), "label": r["label"]} for i, r in enumerate(pool_rows)])
    test = _reviews(30, 30, seed=2)
    result = active_learning(pool, oracle=file_oracle(answers, id_column="id"), strategy="margin", batch=10, rounds=3,
                             test=test, embedder="char-ngram", seed_size=10)
    assert [p["labeled"] for p in result.curve] == [10, 20, 30, 40]
    assert result.curve[-1]["accuracy"] >= 0.8
    assert len(result.labeled) == 40 and len({r["id"] for r in result.labeled}) == 40


def test_active_without_oracle_returns_rows_to_label() -> None:
    result = active_learning([{"text": f"row {i}"} for i in range(30)], oracle=None, embedder="char-ngram", seed_size=5)
    assert len(result.queried) == 5 and result.labeled == []
    with pytest.raises(InputDataError, match="no column"):
        active_learning([{"sentence": "x"}], embedder="char-ngram")


# -- LLM labelling -----------------------------------------------------------------------
def test_llm_label_routes_by_confidence() -> None:
    task = Task(name="sentiment", template="Review: {text}", labels=["positive", "negative"], format="text",
                answer_prefix="Sentiment:")
    pipe = Pipeline(model=FakeBackend(), task=task, store=False)
    rows = [{"text": "positive positive positive"}, {"text": "negative negative negative"}, {"text": "a film"}]
    result = llm_label(rows, pipe, min_confidence=0.6)
    assert [r["llm_label"] for r in result.accepted] == ["positive", "negative"]
    assert len(result.review) == 1 and "second_label" in result.review[0]
    assert all(0 <= float(r["confidence"]) <= 1 for r in result.accepted + result.review)
    with pytest.raises(InputDataError):
        llm_label(rows, pipe, min_confidence=1.5)


@pytest.mark.slow
def test_llm_label_with_the_embedded_model(tmp_path: Path, store_dir: Path) -> None:
    yaml_path = Path(__file__).resolve().parents[2] / "examples" / "sentiment" / "pipeline.yaml"
    rows = [{"text": "a gorgeous, moving and funny film"}, {"text": "a dull, tiresome mess"},
            {"text": "the plot is fine"}]
    result = llm_label(rows, yaml_path, min_confidence=0.0)
    assert len(result.accepted) == 3
    confidences = [float(r["confidence"]) for r in result.accepted]
    assert all(0.5 <= c <= 1.0 for c in confidences) and len(set(confidences)) > 1  # a real distribution
    assert result.accepted[0]["llm_label"] == "positive"
    paths = llm_label(rows, yaml_path, min_confidence=0.99).save(tmp_path / "l.csv")
    assert paths["review"].name == "l.review.csv"


@pytest.mark.slow
def test_paraphrase_with_the_embedded_model(store_dir: Path) -> None:
    rows = _reviews(4, 1)
    result = balance(rows, method="paraphrase", max_new=2)
    assert result.info["requested"] == 2
    new = [r for r in result.records if r.get("_source") == "paraphrase"]
    assert len(new) + sum(result.info["rejected"].values()) == 2
    originals = {r["text"] for r in rows}
    assert all(r["text"] not in originals and r["text"].strip() and r["label"] == "negative" for r in new)
