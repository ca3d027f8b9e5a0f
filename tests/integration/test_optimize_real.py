"""The optimizer on the real embedded model (small SST-2 slices)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from openautoglm.core.client import ModelClient
from openautoglm.core.task import Task

pytestmark = pytest.mark.slow
SST2 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sst2" / "train.tsv"


def sst2_rows(n: int, skip: int) -> list[dict[str, str]]:
    if not SST2.exists():
        pytest.skip("../shared/data/sst2 is not here")
    lines = SST2.read_text(encoding="utf-8").splitlines()[1:]
    random.Random(7).shuffle(lines)
    rows = [ln.split("\t") for ln in lines if len(ln.split()) > 6][skip:skip + n]
    return [{"text": s.strip(), "label": "positive" if y.strip() == "1" else "negative"} for s, y in rows]


def test_optimizer_on_the_real_model_keeps_its_promises(local_backend):
    pytest.importorskip("sentence_transformers")
    from openautoglm.optimize.search import Optimizer

    task = Task(name="sst2", template="Review: {text}", labels=["positive", "negative"], format="text",
                answer_prefix="Sentiment:")
    opt = Optimizer(local_backend, task, sst2_rows(200, 0), sst2_rows(60, 200), budget=700, rewrites=1,
                    first_slice=24, max_demos=4)
    result = opt.optimize()
    assert result.calls <= 700 + 2 * len(opt.holdout)
    assert {"base", "prompt", "demos"} <= {t.stage for t in result.trials}
    assert result.scores["best_select"] >= result.scores["base_select"]
    assert any(t.task.retrieval is not None for t in result.trials)  # retrieval candidates really ran
    # the chosen task is plain data: it survives a round trip and answers like before
    again = Task(**result.task.to_config())
    client = ModelClient(local_backend, trace=False)
    record = {"text": opt.holdout[0]["text"]}
    a = result.task.run_many(client, [record], step="s", record_keys=["0"])[0]
    b = again.run_many(client, [record], step="s", record_keys=["0"])[0]
    assert a["label"] == b["label"] and a["confidence"] == b["confidence"]  # scores are batch/cache-invariant
