"""On the real embedded model, a record too large for the model fails alone, before it is
tokenised, and its batch neighbours get the same answers as without it."""

from __future__ import annotations

import pytest

from openautoglm.core.batch import run_batch
from openautoglm.core.pipeline import Pipeline
from openautoglm.core.task import Task

pytestmark = pytest.mark.slow

TASK = dict(name="sentiment", template="Review: {text}", labels=["positive", "negative"], format="text",
            answer_prefix="Sentiment:")


def test_oversized_records_fail_alone(local_backend) -> None:
    over_backend = "word " * (local_backend.max_context * 8)  # > 32 chars per context token: refused untokenised
    over_template = "y" * 1_000_001  # over the prompt cap: refused when rendered
    records = [{"text": "a wonderful, moving film"}, {"text": over_backend}, {"text": "a dull, lifeless film"},
               {"text": over_template}]
    pipe = Pipeline(model=local_backend, task=Task(**TASK), store=False)
    res = run_batch(pipe, records, batch_size=8)
    assert (res.done, res.failed) == (2, 2)
    reasons = dict(res.errors)
    assert "cannot fit" in reasons[1] and "over 1,000,000 characters" in reasons[3]
    alone = [pipe.run(text=r["text"]) for r in (records[0], records[2])]
    assert [res.results[0], res.results[2]] == alone
