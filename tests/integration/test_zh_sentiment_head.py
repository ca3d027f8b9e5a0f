"""The seed's one-line Chinese sentiment task on unseen ChnSentiCorp rows (issue 19 §3).

No model named, no labels given: the task picks the embedded multilingual gemma-3-270m,
the ``sentiment.v1`` preset supplies 正面/负面 and its shipped label head, which was fitted
on ChnSentiCorp *train* rows only (``scripts/fit_preset_heads.py``).  These are the first 24
``dev.tsv`` rows whose text is not in ``train.tsv``; ``bench/zh_sentiment_head.py`` measures 300 (see BENCHMARKS.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from openautoglm import Pipeline, Task

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "chnsenticorp"
ROWS = 24


def _read(name: str) -> list[tuple[str, str]]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    ti, li = header.index("text_a"), header.index("label")
    return [(cols[ti].strip(), "正面" if cols[li].strip() == "1" else "负面")
            for cols in (line.split("\t") for line in lines[1:])]


def _rows() -> list[tuple[str, str]]:
    """The first ROWS dev rows whose text is nowhere in train.tsv (ChnSentiCorp repeats some)."""
    if not (DATA / "dev.tsv").is_file():
        pytest.skip("../shared/data/chnsenticorp is not here")
    train = {text for text, _ in _read("train.tsv")}
    return [row for row in _read("dev.tsv") if row[0] not in train][:ROWS]


def test_the_seed_one_liner_reads_chinese_sentiment_through_the_shipped_head() -> None:
    from openautoglm.backends.gemma3_weights import installed

    if not installed():
        pytest.skip("gemma-3-270m is not installed (the [local] extra)")
    rows = _rows()
    task = Task(name="sentiment_analysis", prompt_template="判断以下句子的情感倾向：{text}")
    results = Pipeline(task=task, store=False, cache=False).run_batch([{"text": text} for text, _ in rows])
    assert all(r["method"].startswith("head(sentiment.v1.zh.gemma3-270m, ") for r in results), results[0]["method"]
    predicted = [r["label"] for r in results]
    accuracy = sum(p == gold for p, (_, gold) in zip(predicted, rows)) / len(rows)
    majority = max(sum(g == lab for _, g in rows) for lab in ("正面", "负面")) / len(rows)
    assert 0.2 < predicted.count("正面") / len(rows) < 0.8, "one label for (almost) every row"
    assert accuracy >= 0.75 > majority, f"accuracy {accuracy:.2f} (majority {majority:.2f})"
