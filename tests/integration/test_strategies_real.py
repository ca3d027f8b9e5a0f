"""Reasoning strategies on the real embedded model."""

from __future__ import annotations

import pytest

from openautoglm import Pipeline, Task

pytestmark = pytest.mark.slow

ROWS = [("an absolute delight , wonderful acting and a great story .", "positive"),
        ("a dull , lifeless and boring mess .", "negative"),
        ("one of the best films of the year .", "positive"),
        ("the plot is a tedious , predictable waste of time .", "negative")]


def sst_task(**kw):
    return Task(name="sst2", template="Review: {text}", labels=["positive", "negative"], format="text",
                answer_prefix="Sentiment:", **kw)


def test_chain_of_thought_and_self_consistency_on_the_real_model(local_backend, tmp_path):
    records = [{"text": t} for t, _ in ROWS]
    cot = Pipeline(model=local_backend, task=sst_task(strategy={"name": "chain_of_thought", "max_reasoning_tokens": 32}),
                   store=False).run_batch(records)
    for out in cot:
        assert out["reasoning"] and abs(sum(out["scores"].values()) - 1) < 1e-6
    sc = Pipeline(model=local_backend,
                  task=sst_task(strategy={"name": "self_consistency", "n": 4, "max_reasoning_tokens": 24}),
                  store=False).run_batch(records)
    for out in sc:
        assert sum(out["votes"].values()) == 4 and len(set(out["reasonings"])) > 1  # sampled, not copies
        assert out["confidence"] == out["agreement"] == max(out["scores"].values())


def test_verify_revise_with_an_execution_style_checker_fixes_answers(local_backend, tmp_path):
    """A checker that knows the truth (as SQL execution or unit tests do) drives backtracking."""
    gold = {t: g for t, g in ROWS}

    def checker(output, record):
        return True if output["label"] == gold[record["text"]] else "that contradicts the reference"

    pipe = Pipeline(model=local_backend, task=sst_task(strategy={"name": "verify_revise", "verifier": checker}),
                    store=tmp_path / "s.db")
    outs = pipe.run_batch([{"text": t} for t, _ in ROWS], run_id="vr")
    assert [o["label"] for o in outs] == [g for _, g in ROWS]
    assert all(o["verified"] for o in outs)
    assert all(o["attempts"] == 1 + len(o.get("failed_attempts", [])) for o in outs)
    pipe.flush()
    calls = pipe.store.recent_calls(limit=100, run_id="vr")
    verdicts = [c for c in calls if c["kind"] == "verify"]
    assert len(verdicts) == sum(o["attempts"] for o in outs)
    pipe.close()
