"""Gold labels checked against a task's labels before any model call, with a suggested --label-map."""

from __future__ import annotations

import pytest

from openautoglm.core.records import check_gold, label_map_hint, suggest_label_map
from openautoglm.errors import InputDataError

SENTIMENT = ["positive", "negative"]


@pytest.mark.parametrize(("values", "labels", "expected"), [
    (["0", "1"], SENTIMENT, "0=negative,1=positive"),
    (["1", "0"], ["正面", "负面"], "0=负面,1=正面"),
    (["Positive", "NEGATIVE"], SENTIMENT, "NEGATIVE=negative,Positive=positive"),
    (["pos", "neg"], SENTIMENT, "neg=negative,pos=positive"),
    (["true", "false"], ["yes", "no"], "false=no,true=yes"),
    (["positive", "0"], SENTIMENT, "0=negative"),  # values already labels need no entry
])
def test_suggestions_where_the_mapping_is_clear(values: list[str], labels: list[str], expected: str) -> None:
    assert suggest_label_map(values, labels) == expected


@pytest.mark.parametrize(("values", "labels"), [
    (["0", "1", "2"], SENTIMENT),  # three values for two labels
    (["0", "1"], ["sports", "politics"]),  # no positive/negative label to pair with
    (["a"], ["apple", "avocado"]),  # too short to be a prefix of one label
])
def test_no_suggestion_where_it_would_be_a_guess(values: list[str], labels: list[str]) -> None:
    assert suggest_label_map(values, labels) is None
    assert "--label-map '" in label_map_hint(values, labels) and ", ".join(labels) in label_map_hint(values, labels)


def rows(*gold: str) -> list[dict[str, str]]:
    return [{"text": f"row {i}", "label": g} for i, g in enumerate(gold)]


def test_no_matching_gold_label_fails_with_the_map_to_pass() -> None:
    with pytest.raises(InputDataError) as info:
        check_gold(rows("1", "0", "1"), "label", {"sentiment": SENTIMENT}, mapping={}, source="dev.tsv")
    text = str(info.value)
    assert "dev.tsv" in text and "'1'" in text and "--label-map '0=negative,1=positive'" in text


def test_a_map_that_fixes_it_passes_and_partial_matches_warn() -> None:
    ok = check_gold(rows("1", "0"), "label", {"s": SENTIMENT}, mapping={"1": "positive", "0": "negative"},
                    source="d")
    assert (ok.step, ok.matched, ok.total, ok.warnings) == ("s", 2, 2, [])
    partial = check_gold(rows("positive", "neutral", "negative"), "label", {"s": SENTIMENT}, mapping={}, source="d")
    assert partial.matched == 2 and len(partial.warnings) == 1 and "'neutral'" in partial.warnings[0]


def test_the_step_whose_labels_match_is_chosen_unless_one_is_named() -> None:
    steps = {"topic": ["sports", "politics"], "sentiment": SENTIMENT}
    gold = rows("sports", "politics", "sports")
    assert check_gold(gold, "label", steps, mapping={}, source="d", prefer="sentiment").step == "topic"
    with pytest.raises(InputDataError, match="step 'sentiment'"):
        check_gold(gold, "label", steps, mapping={}, source="d", step="sentiment")
    with pytest.raises(InputDataError, match="label steps: topic, sentiment"):
        check_gold(gold, "label", steps, mapping={}, source="d", step="route")
    tie = {"a": SENTIMENT, "b": SENTIMENT}
    assert check_gold(rows("positive"), "label", tie, mapping={}, source="d", prefer="a").step == "a"
    assert check_gold(rows("positive"), "label", tie, mapping={}, source="d", prefer="b").step == "b"


def test_a_pipeline_without_label_steps_cannot_be_scored() -> None:
    with pytest.raises(InputDataError, match="no step of the pipeline predicts labels"):
        check_gold(rows("x"), "label", {}, mapping={}, source="d")
