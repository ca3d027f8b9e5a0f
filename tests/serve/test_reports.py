"""Run-report arithmetic: percentiles, windows, filters, predictions against gold labels."""

from __future__ import annotations

import pytest

from openautoglm.serve import reports


def test_percentile_interpolates() -> None:
    assert reports.percentile([], 50) is None
    assert reports.percentile([3.0], 99) == 3.0
    assert reports.percentile([1, 2, 3, 4], 50) == 2.5
    assert reports.percentile(list(range(101)), 99) == pytest.approx(99)


def test_timing_weights_records_by_chunk() -> None:
    chunks = [{"ts": 101.0, "n": 8, "seconds": 1.0}, {"ts": 103.0, "n": 2, "seconds": 2.0}]
    t = reports.timing(chunks, started=100.0)
    assert t["records"] == 10 and t["p50_ms"] == 1000 and t["p99_ms"] == pytest.approx(2000)
    assert t["records_per_s"] == pytest.approx(10 / 3)
    assert [s["records_per_s"] for s in t["series"]] == [8.0, 1.0]
    assert sum(w["records"] for w in t["windows"]) == 10
    assert reports.timing([], None)["p50_ms"] is None


def test_predictions_and_filters() -> None:
    inputs = [{"review": "a", "gold": "pos"}, {"review": "b", "gold": "neg"}, {"review": "c", "gold": "neg"}]
    rows = [
        {"idx": 0, "status": "done", "output": {"label": "pos", "confidence": 0.9, "scores": {"pos": 0.9, "neg": 0.1}},
         "error": None},
        {"idx": 1, "status": "done", "output": {"label": "pos", "confidence": 0.55, "scores": {"pos": 0.55, "neg": 0.45}},
         "error": None},
        {"idx": 2, "status": "error", "output": None, "error": "boom"},
    ]
    preds = reports.predictions(inputs, rows, "gold", ["review"])
    assert [p["correct"] for p in preds] == [True, False, False] and preds[2]["error"] == "boom"
    assert [p["idx"] for p in reports.filter_predictions(preds, "wrong")] == [1, 2]
    assert [p["idx"] for p in reports.filter_predictions(preds, "low")] == [1]
    assert [p["idx"] for p in reports.filter_predictions(preds, "errors")] == [2]
    with pytest.raises(ValueError):
        reports.filter_predictions(preds, "bogus")
    q = reports.quality(preds, ["pos", "neg"])
    assert q is not None and q["accuracy"] == pytest.approx(1 / 3) and q["n"] == 3
    assert q["calibration"]["n"] == 2  # the failed record has no confidence
    assert reports.quality(reports.predictions(inputs, rows, None, ["review"]), []) is None
