from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openautoglm.data.label_issues import cma_filter, find_label_issues, out_of_fold_probabilities
from openautoglm.data.io import read_table
from openautoglm.errors import InputDataError, OpenAutoGLMError


def _blobs(n: int = 600, k: int = 3, noise: float = 0.1, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(k, 8))
    y = rng.integers(0, k, n)
    X = centers[y] + rng.normal(0, 1.0, size=(n, 8))
    noisy = y.copy()
    flipped = rng.choice(n, int(noise * n), replace=False)
    noisy[flipped] = (y[flipped] + rng.integers(1, k, len(flipped))) % k
    return X, [f"c{v}" for v in noisy], set(int(i) for i in flipped)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["cl", "cma", "cl+cma", "cl|cma"])
def test_flags_injected_flips(method: str) -> None:
    X, labels, flipped = _blobs()
    result = find_label_issues(labels=labels, features=X, method=method)
    flagged = set(result.indices)
    tp = len(flagged & flipped)
    assert tp / len(flipped) >= 0.7
    assert tp / max(1, len(flagged)) >= 0.6  # base rate is 0.1
    qualities = [r["label_quality"] for r in result.issues]
    assert qualities == sorted(qualities)
    assert all(r["given_label"] != r["suggested_label"] or method != "cl" for r in result.issues[:10])


def test_out_of_fold_probabilities_are_distributions() -> None:
    X, labels, _ = _blobs(200)
    y = np.array([int(v[1]) for v in labels])
    probs = out_of_fold_probabilities(X, y, folds=4)
    assert probs.shape == (200, 3)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == y).mean() > 0.6


def test_cma_filter_mask() -> None:
    X, labels, flipped = _blobs(300, k=2)
    mask = cma_filter(X, labels, epochs=5)
    assert mask.dtype == bool and len(flipped & set(np.flatnonzero(mask).tolist())) >= 0.6 * len(flipped)


def test_given_probabilities_and_errors(tmp_path: Path) -> None:
    labels = ["a", "a", "b", "b", "a", "b"] * 10
    probs = np.array([[0.9, 0.1] if lab == "a" else [0.2, 0.8] for lab in labels])
    probs[3] = [0.97, 0.03]  # row 3 says "b", the model is sure it is "a"
    result = find_label_issues(labels=labels, probabilities=probs, texts=[f"t{i}" for i in range(60)], method="cl")
    assert result.indices == [3] and result.issues[0]["suggested_label"] == "a"
    path = result.save(tmp_path / "issues.csv")
    assert read_table(path)[0]["review"] == ""
    html = result.to_html()
    assert "data:image/png;base64," in html and "<td>t3</td>" in html
    with pytest.raises(InputDataError, match="at least two classes"):
        find_label_issues(labels=["a"] * 5, probabilities=np.ones((5, 1)))
    with pytest.raises(InputDataError, match="needs texts or features"):
        find_label_issues(labels=labels, probabilities=probs)
    with pytest.raises(OpenAutoGLMError, match="unknown method"):
        find_label_issues(labels=labels, probabilities=probs, method="magic")


@pytest.mark.slow
def test_real_text_with_minilm(shared_data: Path) -> None:
    rows = read_table(shared_data / "sst2" / "train.tsv", limit=600)
    rows = [r for r in rows if len(r["sentence"].split()) >= 6][:300]
    rng = np.random.default_rng(0)
    flipped = set(rng.choice(len(rows), 30, replace=False).tolist())
    records = [{"text": r["sentence"], "label": (("0" if r["label"] == "1" else "1") if i in flipped else r["label"])}
               for i, r in enumerate(rows)]
    result = find_label_issues(records=records, embedder="minilm", method="cl")
    flagged = set(result.indices)
    assert result.info["probabilities"].startswith("5-fold")
    assert len(flagged & flipped) >= 12  # recall >= 40 %
    # 300 rows make a weak model (many honest rows flagged too): ask for 1.5x the 10 % base rate
    assert len(flagged & flipped) / max(1, len(flagged)) >= 0.15


def test_probabilities_from_a_pipeline() -> None:
    from openautoglm.backends.fake import FakeBackend
    from openautoglm.core.pipeline import Pipeline
    from openautoglm.core.task import Task

    # the fake backend scores a label by its words in the prompt: the text decides the label
    task = Task(name="s", template="Review: {text}", labels=["positive", "negative"], format="text", answer_prefix="Sentiment:")
    pipe = Pipeline(model=FakeBackend(), task=task, store=False)
    records = [{"text": "positive positive good", "label": "positive"} for _ in range(6)]
    records += [{"text": "negative negative bad", "label": "negative"} for _ in range(6)]
    records[2]["label"] = "negative"  # wrong
    result = find_label_issues(records=records, pipeline=pipe, method="cl")
    assert result.info["probabilities"] == "pipeline"
    assert 2 in result.indices and result.issues[0]["suggested_label"] == "positive"
    with pytest.raises(InputDataError, match="do not cover"):
        find_label_issues(records=[{"text": "x", "label": "neutral"}, {"text": "y", "label": "positive"}], pipeline=pipe,
                          method="cl")
