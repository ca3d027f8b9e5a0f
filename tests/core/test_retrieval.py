"""Retrieved demonstrations, the kNN prior and candidate pruning (char n-gram embedder: no model)."""

from __future__ import annotations

import pytest

from openautoglm.backends.fake import FakeBackend
from openautoglm.core.client import ModelClient
from openautoglm.core.retrieval import mix
from openautoglm.core.task import Task

pytest.importorskip("sklearn")

POOL = [{"text": t, "output": lab} for t, lab in [
    ("the pasta was cold and bland", "food"), ("great pizza and fresh bread", "food"),
    ("the soup tasted of nothing", "food"), ("my train was delayed two hours", "travel"),
    ("the flight left late again", "travel"), ("missed the bus to the airport", "travel"),
    ("the hotel bed was hard", "lodging"), ("our room had a lovely view", "lodging"),
    ("the hostel was noisy at night", "lodging"),
]]
LABELS = ["food", "travel", "lodging"]


class Recording(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.score_requests = []

    def score_batch(self, requests):
        self.score_requests += list(requests)
        return super().score_batch(requests)


def task(**retrieval):
    return Task(name="t", template="Text: {text}", labels=LABELS, format="text", answer_prefix="Topic:",
                retrieval={"pool": POOL, "embedder": "char-ngram", **retrieval})


def test_retrieved_demos_are_the_nearest_pool_examples_and_never_the_record_itself():
    t = task(k=2)
    (n,) = t.retriever.query([{"text": "the flight was delayed"}], LABELS)
    assert [d["output"] for d in n.examples] == ["travel", "travel"]
    assert n.knn["travel"] > n.knn["food"] and n.knn["travel"] > n.knn["lodging"]
    assert sum(n.knn.values()) == pytest.approx(1.0)
    (self_query,) = t.retriever.query([{"text": POOL[0]["text"]}], LABELS)
    assert POOL[0] not in self_query.examples


def test_demos_go_into_the_prompt_and_the_knn_prior_mixes_in():
    backend = Recording()
    t = task(k=2, knn_weight=1.0)
    (out,) = t.run_many(ModelClient(backend), [{"text": "the flight was delayed"}], step="s", record_keys=["0"])
    prompt = backend.score_requests[0].prompt
    assert "Topic: travel" in prompt and prompt.endswith("Text: the flight was delayed\nTopic:")
    assert out["label"] == "travel" and "knn(w=1)" in out["method"]
    assert sum(out["scores"].values()) == pytest.approx(1.0)


def test_candidate_pruning_scores_only_the_neighbours_top_labels():
    backend = Recording()
    t = Task(name="t", template="Text: {text}", labels=LABELS + ["other", "misc"], format="text",
             retrieval={"pool": POOL, "embedder": "char-ngram", "k": 0, "candidates": 2})
    (out,) = t.run_many(ModelClient(backend), [{"text": "the hotel room"}], step="s", record_keys=["0"])
    assert len(backend.score_requests[0].continuations) == 2
    assert sum(1 for p in out["scores"].values() if p > 0) <= 2 and "knn-candidates(2)" in out["method"]


def test_mix_is_a_geometric_interpolation():
    assert mix([0.5, 0.5], [0.9, 0.1], 0.0) == [0.5, 0.5]
    assert mix([0.5, 0.5], [0.9, 0.1], 1.0) == pytest.approx([0.9, 0.1])
    half = mix([0.8, 0.2], [0.2, 0.8], 0.5)
    assert half == pytest.approx([0.5, 0.5])


def test_label_bias_shifts_the_distribution_and_round_trips():
    biased = Task(name="t", template="Text: {text}", labels=["food", "travel"], format="text",
                  label_bias={"travel": 3.0})
    (out,) = biased.run_many(ModelClient(FakeBackend()), [{"text": "nothing here"}], step="s", record_keys=["0"])
    assert out["label"] == "travel" and "label-bias" in out["method"]
    assert Task(**biased.to_config()).label_bias == {"travel": 3.0}
    with pytest.raises(ValueError, match="label_bias for unknown labels"):
        Task(name="t", template="{text}", labels=["a", "b"], label_bias={"c": 1.0})
