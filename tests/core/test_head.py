"""A task's learned label head (TF-IDF features on the fake backend; model features in integration)."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from openautoglm.backends.fake import FakeBackend
from openautoglm.core.client import ModelClient
from openautoglm.core.task import Task
from openautoglm.errors import ConfigError
from openautoglm.optimize.search import CountingBackend

LABELS = ["sports", "politics"]
WORDS = {"sports": ["match", "goal", "team", "coach"], "politics": ["vote", "senate", "law", "minister"]}


def rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lab = LABELS[i % 2]
        # the fake backend scores a label word that occurs in the prompt: these texts never
        # name their label, so label scoring is blind and only a learned head can be right
        out.append({"text": f"the {rng.choice(WORDS[lab])} and the {rng.choice(WORDS[lab])} today", "output": lab})
    return out


def task(**head: object) -> Task:
    return Task(name="topic", template="Text: {text}", labels=LABELS, format="text",
                head={"pool": rows(40, 0), "features": "tfidf", **head})


def run(t: Task, records: list[dict[str, str]], backend: FakeBackend | None = None) -> list[dict]:
    client = ModelClient(backend or FakeBackend(), trace=False)
    return t.run_many(client, [{"text": r["text"]} for r in records], step="s", record_keys=[str(i) for i in
                                                                                          range(len(records))])


def test_a_tfidf_head_learns_what_label_scoring_cannot():
    test = rows(30, 1)
    blind = run(Task(name="topic", template="Text: {text}", labels=LABELS, format="text"), test)
    learned = run(task(), test)
    gold = [r["output"] for r in test]
    assert sum(o["label"] == g for o, g in zip(blind, gold)) <= 20
    assert sum(o["label"] == g for o, g in zip(learned, gold)) == len(test)
    assert learned[0]["method"] == "head(tfidf)"
    assert abs(sum(learned[0]["scores"].values()) - 1) < 1e-6


def test_the_head_alone_makes_no_model_calls_and_a_mixed_head_does():
    backend = FakeBackend()
    run(task(weight=1.0), rows(6, 2), backend)
    assert backend.calls == 0
    mixed = run(task(weight=0.5), rows(6, 2), backend)
    assert backend.calls == 6
    assert mixed[0]["method"].endswith("+head(w=0.5)")


def test_mixing_moves_the_distribution_between_the_model_and_the_head():
    record = [{"text": "the goal and the team today, says the politics desk", "output": "sports"}]
    lm = run(Task(name="topic", template="Text: {text}", labels=LABELS, format="text"), record)[0]["scores"]
    alone = run(task(weight=1.0), record)[0]["scores"]
    half = run(task(weight=0.5), record)[0]["scores"]
    assert lm["politics"] > lm["sports"] and alone["sports"] > alone["politics"]
    assert min(lm["sports"], alone["sports"]) < half["sports"] < max(lm["sports"], alone["sports"])


def test_a_head_survives_a_yaml_round_trip():
    t = task(C=3.0, weight=0.75)
    again = Task(**t.to_config())
    assert again.head is not None and again.head.C == 3.0 and again.head.weight == 0.75
    test = rows(8, 3)
    assert [o["scores"] for o in run(t, test)] == [o["scores"] for o in run(again, test)]


@pytest.mark.parametrize("changes, message", [
    ({"output": "text", "labels": None}, "label task"),
    ({"strategy": "chain_of_thought"}, "direct strategy"),
])
def test_a_head_needs_a_direct_label_task(changes, message):
    config = {**task().to_config(), **changes}
    with pytest.raises(ValidationError, match=message):
        Task(**config)


def test_a_pool_without_task_labels_is_a_clear_error():
    t = Task(name="topic", template="Text: {text}", labels=LABELS, format="text",
             head={"pool": [{"text": "a", "output": "other"}, {"text": "b", "output": "else"}], "features": "tfidf"})
    with pytest.raises(ConfigError, match="head.pool"):
        run(t, rows(2, 4))


def test_model_features_on_a_backend_without_hidden_states_is_a_clear_error():
    t = Task(name="topic", template="Text: {text}", labels=LABELS, format="text", head={"pool": rows(10, 5)})
    with pytest.raises(ConfigError, match="hidden states") as info:
        run(t, rows(2, 6))
    assert "tfidf" in (info.value.hint or "")


class Featurizing(FakeBackend):
    """Fake hidden states: a bag of characters per layer, and a count of texts featurised."""

    can_featurize, num_layers = True, 4

    def __init__(self) -> None:
        super().__init__()
        self.featurised = 0

    def features(self, texts, layers, pooling="mean"):  # type: ignore[no-untyped-def]
        import numpy as np

        self.featurised += len(texts)
        out = np.zeros((len(texts), len(layers), 26), dtype=np.float32)
        for i, text in enumerate(texts):
            for ch in text.lower():
                if "a" <= ch <= "z":
                    out[i, :, ord(ch) - 97] += 1
        return out * (1 + np.arange(len(layers)))[None, :, None]


def test_counting_backend_remembers_features_per_text_and_layer():
    inner = Featurizing()
    counting = CountingBackend(inner)
    first = counting.features(["abc", "xyz"], [1, 2])
    again = counting.features(["xyz", "abc", "abc"], [2, 1])
    assert inner.featurised == 2 and counting.calls == 2
    assert (again[1, 0] == first[0, 1]).all() and (again[0, 1] == first[1, 0]).all()
    counting.features(["abc", "new"], [1, 3])  # "abc" lacks layer 3: both texts are computed
    assert inner.featurised == 4 and counting.calls == 4


def test_a_model_head_uses_the_default_middle_layers():
    backend = Featurizing()
    t = Task(name="topic", template="Text: {text}", labels=LABELS, format="text", head={"pool": rows(40, 0)})
    out = run(t, rows(10, 7), backend)
    assert t.label_head(backend).layers == [2, 3]  # 60 % and 70 % of 4 blocks
    assert out[0]["method"] == "head(layers 2,3)"


def test_a_fitted_head_reads_features_from_the_backend_it_is_asked_with():
    """The optimizer fits heads through its budget-counting wrapper; the chosen task must then
    run on any wrapper of the same model (the fitted head is kept per backend identity)."""
    inner = Featurizing()
    t = Task(name="topic", template="Text: {text}", labels=LABELS, format="text", head={"pool": rows(20, 0)})
    spent = CountingBackend(inner)
    run(t, rows(4, 1), spent)
    spent.limit = spent.calls  # the optimizer's budget is gone
    fresh = CountingBackend(inner)
    out = run(t, rows(4, 2), fresh)
    assert len(out) == 4 and fresh.calls == 4 and spent.calls == spent.limit


def test_a_warm_started_refit_matches_a_fresh_fit_with_the_new_strength():
    np = pytest.importorskip("numpy")
    from openautoglm.core.head import LinearHead

    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    centres = rng.normal(size=(3, 20))
    gold = [labels[i % 3] for i in range(300)]
    x = np.stack([centres[i % 3] + rng.normal(scale=2.0, size=20) for i in range(300)])
    weak = LinearHead(x, gold, labels, C=0.001)
    refit = weak.refit(x, gold, C=1.0)
    fresh = LinearHead(x, gold, labels, C=1.0)
    assert refit.model.C == 1.0 and weak.model.C == 0.001  # the original head is left as it was
    assert np.allclose(refit.proba(x), fresh.proba(x), atol=1e-3)
    assert not np.allclose(weak.proba(x), fresh.proba(x), atol=1e-2)  # the strength really matters here
