"""The label head the ``sentiment.v1`` preset ships for the embedded gemma-3-270m (issue 19 §3):
its data file, when a task takes it, and that another model refuses it (label scores instead).
The real model's accuracy with it: ``tests/integration/test_zh_sentiment_head.py``."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from openautoglm.backends.fake import FakeBackend
from openautoglm.core.client import ModelClient
from openautoglm.core.head import SHIPPED_DIR, HeadNotApplicable, ShippedHead, load_shipped
from openautoglm.core.task import Task

NAME = "sentiment.v1.zh.gemma3-270m"
SEED = dict(name="sentiment_analysis", prompt_template="判断以下句子的情感倾向：{text}")
TEXTS = ["房间很干净，服务也好", "太差了，再也不来了", "还行吧"]


def run(t: Task, backend, texts=TEXTS) -> list[dict]:  # type: ignore[no-untyped-def]
    client = ModelClient(backend, trace=False)
    return t.run_many(client, [{"text": x} for x in texts], step="s", record_keys=[str(i) for i in range(len(texts))])


class Gemma(FakeBackend):
    """Looks like local:gemma3-270m to a shipped head: random hidden states of the right width."""

    can_featurize, num_layers, name, label_format = True, 18, "local", "text"

    def __init__(self) -> None:
        super().__init__()
        self.files = SimpleNamespace(label=load_shipped(NAME)["model_label"])
        self.seen: list[str] = []

    def features(self, texts, layers, pooling="mean"):  # type: ignore[no-untyped-def]
        import numpy as np

        self.seen += list(texts)
        width = load_shipped(NAME)["shape"][1] // len(layers)
        rng = np.random.default_rng(len(self.seen))
        return rng.normal(size=(len(texts), len(layers), width)).astype(np.float32)


def test_the_data_file_is_small_and_says_what_it_was_fitted_on():
    path = SHIPPED_DIR / f"{NAME}.json"
    assert path.stat().st_size < 16_000
    raw = json.loads(path.read_text(encoding="utf-8"))
    fit = raw["fit"]
    assert fit["dataset"] == "ChnSentiCorp" and fit["split"] == "train" and fit["file"].endswith("train.tsv")
    assert fit["rows"] >= 1000 and set(fit["per_label"].values()) == {fit["rows"] // 2}
    assert isinstance(fit["seed"], int) and fit["row_ids_sha256"] and fit["script"] == "scripts/fit_preset_heads.py"
    data = load_shipped(NAME)
    assert data["model"] == "local:gemma3-270m" and data["preset"] == "sentiment.v1"
    assert sorted(data["labels"]) == sorted(data["classes"]) == ["正面", "负面"]
    assert data["features"] == "model" and data["pooling"] in ("mean", "last") and data["layers"]
    assert len(data["coef"]) == 1 and len(data["coef"][0]) == data["shape"][1] and len(data["intercept"]) == 1
    # it ships as package data
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    assert '"openautoglm.core" = ["templates/*", "heads/*.json"]' in text


def test_the_seed_task_takes_the_shipped_head_and_says_so():
    task = Task(**SEED)
    assert task.labels == ["正面", "负面"]
    assert task.head is not None and task.head.shipped == NAME and task.head.pool is None
    assert f"the shipped label head {NAME}" in (task.description or "")
    assert "ChnSentiCorp train" in (task.description or "")
    again = Task.model_validate(task.to_config())  # round-trips
    assert again.head == task.head


@pytest.mark.parametrize("changes", [
    {"labels": ["好", "坏"]},  # the user's own labels
    {"head": None},  # opted out
    {"prompt_template": "这条评论是褒是贬：{text}"},  # not the template it was fitted with
    {"strategy": "chain_of_thought"},
    {"prompt_template": "What is the sentiment of this text?\n{text}"},  # English
])
def test_a_task_that_differs_from_the_fitted_one_takes_no_head(changes):
    assert Task(**{**SEED, **changes}).head is None


def test_on_its_model_the_head_answers_alone_and_the_method_names_it():
    backend = Gemma()
    task = Task(**SEED)
    out = run(task, backend)
    assert backend.calls == 0  # no label scoring: the head alone
    assert backend.seen[0].endswith("\n情感：")  # features of the record with the preset's answer cue
    method = out[0]["method"]
    assert method.startswith(f"head({NAME}, layers ") and "fitted on ChnSentiCorp train" in method
    assert all(o["label"] in ("正面", "负面") and abs(sum(o["scores"].values()) - 1) < 1e-6 for o in out)


def test_another_model_refuses_the_head_and_label_scores_answer_instead():
    backend = FakeBackend()
    with pytest.raises(HeadNotApplicable, match="fitted for local:gemma3-270m"):
        ShippedHead(Task(**SEED).head, ["正面", "负面"], backend)
    out = run(Task(**SEED), backend)
    assert backend.calls == len(TEXTS)  # scored
    assert all(o["method"].endswith(f"+head-skipped({NAME}: fitted for local:gemma3-270m, not fake:fake)")
               for o in out), out[0]["method"]
    smol = Gemma()
    smol.files = SimpleNamespace(label="SmolLM2-135M-Instruct (Q4_1, embedded)")
    assert "+head-skipped(" in run(Task(**SEED), smol)[0]["method"]


def test_the_head_computes_a_logistic_regression_of_the_features():
    np = pytest.importorskip("numpy")
    head = ShippedHead(Task(**SEED).head, ["正面", "负面"], Gemma())
    x = np.random.default_rng(0).normal(size=(4, len(head.coef[0])))
    z = x @ np.asarray(load_shipped(NAME)["coef"][0]) + load_shipped(NAME)["intercept"][0]
    p_second = 1 / (1 + np.exp(-z))  # sklearn's binary: the probability of classes[1]
    second = head.classes[1]
    got = [row[head.labels.index(second)] for row in head.proba(x)]
    assert np.allclose(got, (p_second + 1e-3) / (1 + 2e-3), atol=1e-6)


def test_a_head_needs_a_pool_or_a_shipped_name_and_a_shipped_one_brings_its_settings():
    with pytest.raises(ValidationError, match="either `pool`"):
        Task(**SEED, labels=["正面", "负面"], head={"weight": 1})
    with pytest.raises(ValidationError, match="brings its own layers"):
        Task(**SEED, labels=["正面", "负面"], head={"shipped": NAME, "layers": [3]})
    with pytest.raises(ValidationError, match="no shipped head 'nope'"):
        Task(**SEED, labels=["正面", "负面"], head={"shipped": "nope"})
