"""Hand-computed checks of the calibration and classification metrics."""

from __future__ import annotations

import pytest

from openautoglm.evaluation.calibration import (
    brier_score,
    calibration_report,
    expected_calibration_error,
    reliability_bins,
)
from openautoglm.evaluation.metrics import ERROR, classification_metrics


def test_ece_is_zero_when_confidence_matches_accuracy() -> None:
    conf = [0.8] * 10 + [0.3] * 10
    correct = [True] * 8 + [False] * 2 + [True] * 3 + [False] * 7
    assert expected_calibration_error(conf, correct) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("confidence", [1.0, 0.9, 0.55])
def test_ece_of_confident_wrong_predictions_is_their_confidence(confidence: float) -> None:
    assert expected_calibration_error([confidence] * 5, [False] * 5) == pytest.approx(confidence)


def test_ece_weights_bins_by_their_share() -> None:
    # bin (14/15, 1]: acc 0.5, conf 0.95 -> 0.45; bin (8/15, 9/15]: acc 1.0, conf 0.55 -> 0.45; each half
    assert expected_calibration_error([0.95, 0.95, 0.55, 0.55], [True, False, True, True]) == pytest.approx(0.45)


def test_reliability_bins_are_15_right_closed_equal_width_bins() -> None:
    bins = reliability_bins([0.0, 0.2, 0.2001, 1.0], [True, False, True, True])
    assert len(bins) == 15
    assert bins[0]["lo"] == 0.0 and bins[-1]["hi"] == 1.0
    assert [i for i, b in enumerate(bins) if b["count"]] == [0, 2, 3, 14]  # 0.2 closes bin 2
    assert bins[2]["accuracy"] == 0.0 and bins[3]["accuracy"] == 1.0
    assert bins[5]["accuracy"] is None and bins[5]["confidence"] is None


def test_calibration_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        reliability_bins([1.5], [True])
    with pytest.raises(ValueError):
        expected_calibration_error([], [])
    assert calibration_report([], []) is None


def test_brier_score_multiclass_definition() -> None:
    assert brier_score([{"a": 1.0, "b": 0.0}], ["a"]) == 0.0
    assert brier_score([{"a": 0.0, "b": 1.0}], ["a"]) == 2.0
    assert brier_score([{"a": 0.5, "b": 0.5}, {"a": 0.8, "b": 0.2}], ["a", "b"]) == pytest.approx((0.5 + 1.28) / 2)
    # a gold label the model gave no probability: (0.6² + 0.4²) + 1
    assert brier_score([{"a": 0.6, "b": 0.4}], ["c"]) == pytest.approx(1.52)


def test_calibration_report_fields() -> None:
    rep = calibration_report([0.9, 0.6], [True, False], [{"a": 0.9, "b": 0.1}, {"a": 0.4, "b": 0.6}], ["a", "a"])
    assert rep is not None
    assert rep["n"] == 2 and rep["n_bins"] == 15 and len(rep["bins"]) == 15
    assert rep["ece"] == pytest.approx(0.5 * 0.1 + 0.5 * 0.6)
    assert rep["brier"] == pytest.approx((0.02 + 0.72) / 2)
    assert rep["mean_confidence"] == pytest.approx(0.75) and rep["accuracy"] == 0.5


def test_classification_metrics_by_hand() -> None:
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "c", "c"]
    m = classification_metrics(gold, pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: P=1 R=2/3 F1=0.8 · b: P=.5 R=.5 F1=.5 · c: P=.5 R=1 F1=2/3
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["per_class"]["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["confusion_matrix"] == {"rows": ["a", "b", "c"], "columns": ["a", "b", "c"],
                                     "matrix": [[2, 1, 0], [0, 1, 1], [0, 0, 1]]}


def test_failed_predictions_are_misses_with_an_error_column() -> None:
    m = classification_metrics(["a", "b", "b"], ["a", None, "b"], ["a", "b"])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["per_class"]["b"]["recall"] == 0.5 and m["per_class"]["b"]["precision"] == 1.0
    assert m["confusion_matrix"]["columns"] == ["a", "b", ERROR]
    assert m["confusion_matrix"]["matrix"] == [[1, 0, 0], [0, 1, 1]]


def test_macro_f1_skips_absent_classes_and_unknown_labels_are_kept() -> None:
    m = classification_metrics(["a", "b"], ["a", "b"], ["a", "b", "c"])
    assert m["macro_f1"] == 1.0
    assert m["per_class"]["c"]["support"] == 0
    m = classification_metrics(["a", "x"], ["a", "a"], ["a", "b"])
    assert m["labels"] == ["a", "b", "x"]
    assert m["per_class"]["x"]["support"] == 1 and m["per_class"]["x"]["recall"] == 0.0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.0) / 2)  # over a and x, not the absent b


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from openautoglm.errors import OpenAutoGLMError
    from openautoglm.evaluation import evaluate

    monkeypatch.setitem(sys.modules, "sklearn.metrics", None)  # makes the import fail
    with pytest.raises(OpenAutoGLMError, match=r"needs sklearn") as info:
        evaluate("never-read.yaml", [{"text": "a", "label": "b"}])
    assert "pip install 'openautoglm[eval]'" in str(info.value)
