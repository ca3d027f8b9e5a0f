"""Reasoning strategies on the deterministic fake backend (framework logic only).

The fake backend scores a label higher the more of its words occur in the prompt, so
a reasoning text that mentions a label steers the constrained answer towards it.
"""

from __future__ import annotations

import pytest
import yaml

from openautoglm import Pipeline, Task
from openautoglm.backends.fake import FakeBackend
from openautoglm.core.client import ModelClient
from openautoglm.errors import ConfigError
from openautoglm.core.strategy import StrategySpec

LABELS = ["positive", "negative"]


def run(task: Task, backend: FakeBackend, text: str = "great fun"):
    client = ModelClient(backend)
    (out,) = task.run_many(client, [{"text": text}], step="s", record_keys=["r0"])
    return out, client.calls


@pytest.mark.parametrize("fmt", ["text", "chat"])
def test_chain_of_thought_answers_under_the_spec_with_the_reasoning_in_context(fmt):
    task = Task(name="s", template="Review: {text}", labels=LABELS, format=fmt, strategy="chain_of_thought",
                list_labels=False)
    out, calls = run(task, FakeBackend(responses=["this sounds negative to me"]))
    assert out["label"] == "negative" and out["reasoning"] == "this sounds negative to me"
    assert abs(sum(out["scores"].values()) - 1) < 1e-9 and out["method"].startswith("chain-of-thought")
    kinds = [(c.kind, c.step) for c in calls]
    assert kinds == [("generate", "s:reasoning"), ("score", "s")]
    assert "step by step" in str(calls[0].prompt)
    # without reasoning the same record goes the other way: the reasoning really is used
    direct, _ = run(Task(name="s", template="Review: {text} positive", labels=LABELS, format=fmt), FakeBackend())
    assert direct["label"] == "positive"


def test_self_consistency_majority_vote_and_agreement():
    task = Task(name="s", template="Review: {text}", labels=LABELS, format="text",
                strategy={"name": "self_consistency", "n": 3})
    backend = FakeBackend(responses=["clearly positive", "clearly negative", "positive again"])
    out, calls = run(task, backend)
    assert out["label"] == "positive"
    assert out["confidence"] == pytest.approx(2 / 3) and out["agreement"] == pytest.approx(2 / 3)
    assert out["scores"] == {"positive": pytest.approx(2 / 3), "negative": pytest.approx(1 / 3)}
    assert out["votes"] == {"positive": 2, "negative": 1} and len(out["reasonings"]) == 3
    gen = [c for c in calls if c.kind == "generate"]
    assert len(gen) == 1 and gen[0].params["n"] == 3 and gen[0].params["temperature"] == 0.7


def test_self_consistency_votes_on_json_answers():
    task = Task(name="p", template="Extract: {text}", schema={"type": "object", "properties": {"age": {"type": "integer"}},
                                                             "required": ["age"]},
                strategy={"name": "self_consistency", "n": 3}, max_retries=0)
    # generation alternates: reasoning x3 (one request, n=3), then 3 answers
    backend = FakeBackend(responses=["r1", "r2", "r3", '{"age": 3}', '{"age": 4}', '{"age": 3}'])
    out, _ = run(task, backend)
    assert out["output"] == {"age": 3} and out["agreement"] == pytest.approx(2 / 3)


def test_verify_revise_backtracks_with_feedback_and_traces_every_attempt():
    def reject_positive(output, record):
        return "the text is sarcastic" if output["label"] == "positive" else True

    task = Task(name="s", template="Review: {text} positive", labels=LABELS, format="text",
                strategy={"name": "verify_revise", "verifier": reject_positive})
    out, calls = run(task, FakeBackend())
    assert out["label"] == "negative" and out["verified"] is True and out["attempts"] == 2
    assert out["failed_attempts"] == [{"attempt": 0, "answer": "positive", "ok": False,
                                       "feedback": "the text is sarcastic"}]
    assert out["scores"]["positive"] == 0.0 and out["confidence"] == 1.0  # the rejected label is out
    scores = [c for c in calls if c.kind == "score"]
    assert [c.attempt for c in scores] == [0, 1]
    assert "sarcastic" not in str(scores[0].prompt) and "sarcastic" in str(scores[1].prompt)
    verdicts = [c for c in calls if c.kind == "verify"]
    assert [(v.attempt, v.response["ok"]) for v in verdicts] == [(0, False), (1, True)]
    assert out["tokens"] == sum(c.prompt_tokens + c.completion_tokens for c in calls)


def test_verifier_errors_never_reach_the_prompt():
    def broken(output, record):
        raise RuntimeError("secret-internal-detail at /srv/app.py line 12")

    task = Task(name="s", template="Review: {text}", labels=LABELS, format="text",
                strategy={"name": "verify_revise", "verifier": broken, "max_attempts": 5})
    out, calls = run(task, FakeBackend())
    assert out["verified"] is False
    assert out["attempts"] == 2  # both labels tried and rejected: nothing left to backtrack to
    prompts = " ".join(str(c.prompt) for c in calls if c.kind != "verify")
    assert "secret-internal-detail" not in prompts and "Traceback" not in prompts
    assert "could not verify" in prompts
    assert any("secret-internal-detail" in (c.error or "") for c in calls if c.kind == "verify")


def test_llm_judge_verifier_scores_yes_no():
    task = Task(name="s", template="Review: {text}", labels=LABELS, format="text",
                strategy={"name": "verify_revise", "max_attempts": 3,
                          "verifier": {"type": "llm", "prompt": "{input} Proposed: {answer}.", "threshold": 0.6}})
    out, calls = run(task, FakeBackend())
    assert out["verified"] is False and out["attempts"] == 2
    assert all(0 <= a["score"] < 0.6 for a in out["failed_attempts"])
    judged = [c for c in calls if c.kind == "score" and c.step == "s:verify"]
    assert len(judged) == 2 and "Proposed: positive" in str(judged[0].prompt)


def test_schema_verifier_reasks_json():
    task = Task(name="p", template="Extract: {text}", max_retries=0,
                schema={"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]},
                strategy={"name": "verify_revise", "verifier": "schema"})
    out, calls = run(task, FakeBackend(responses=["no json here", '{"age": 7}']))
    assert out["output"] == {"age": 7} and out["verified"] and out["attempts"] == 2
    gens = [c for c in calls if c.kind == "generate"]
    assert [c.attempt for c in gens] == [0, 1] and "rejected" in str(gens[1].prompt)


def test_strategy_from_yaml_with_an_import_path_verifier(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({
        "name": "p", "model": "fake",
        "task": {"template": "Review: {text} positive", "labels": LABELS, "format": "text",
                 "strategy": {"name": "verify_revise", "verifier": {"type": "python",
                                                                     "call": "tests.reasoning.verifiers:reject_positive"}}},
    }))
    pipe = Pipeline.from_yaml(path, store=False)
    assert pipe.run(text="great")["label"] == "negative"
    again = Task(**pipe.config.steps[0].task.to_config())
    assert again.strategy == pipe.config.steps[0].task.strategy


def test_bad_strategy_configs_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: p\ntask:\n  template: 'x {text}'\n  labels: [a, b]\n  strategy: tree_of_thought\n")
    with pytest.raises(ConfigError, match="unknown strategy 'tree_of_thought'"):
        Pipeline.from_yaml(bad)
    with pytest.raises(ValueError, match="needs a `verifier`"):
        StrategySpec.model_validate("verify_revise")
    with pytest.raises(ValueError, match="lambda"):
        StrategySpec.model_validate({"name": "verify_revise", "verifier": lambda o, r: True}).to_config()
