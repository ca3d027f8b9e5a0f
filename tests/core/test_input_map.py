"""A pipeline's top-level ``inputs:``: record fields renamed for every step, before the first runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from openautoglm.core.config import parse_pipeline_yaml
from openautoglm.core.pipeline import Pipeline
from openautoglm.core.records import parse_input_map, require_columns
from openautoglm.errors import ConfigError, InputDataError, TemplateError

MAPPED = """\
name: sent
model: fake
inputs: {text: sentence}
task:
  name: sentiment
  template: "Review: {text}"
  labels: [positive, negative]
  format: text
"""


def mapped(tmp_path: Path, text: str = MAPPED) -> Pipeline:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return Pipeline.from_yaml(path, store=False)


def test_top_level_inputs_feed_the_template_from_another_column(tmp_path: Path) -> None:
    pipe = mapped(tmp_path)
    assert pipe.required_inputs == {"sentence"}
    assert pipe.run(sentence="a negative film")["label"] == "negative"
    assert pipe.run(sentence="a positive film")["label"] == "positive"


def test_a_record_without_the_mapped_column_fails_alone(tmp_path: Path) -> None:
    pipe = mapped(tmp_path)
    results, _, _ = pipe.process([{"sentence": "a negative film"}, {"review": "a negative film"}], ["0", "1"])
    assert results[0]["label"] == "negative"
    assert isinstance(results[1], TemplateError)
    assert "'sentence'" in str(results[1]) and "review" in str(results[1])


def test_a_record_that_already_has_the_variable_keeps_it(tmp_path: Path) -> None:
    assert mapped(tmp_path).run(text="a negative film")["label"] == "negative"


STEP_MAPPED = """\
name: sent
model: fake
inputs: {review: sentence}
steps:
  - name: sentiment
    inputs: {text: review}
    task:
      template: "Review: {text}"
      labels: [positive, negative]
      format: text
"""


def test_the_mapping_runs_before_step_inputs(tmp_path: Path) -> None:
    pipe = mapped(tmp_path, STEP_MAPPED)
    assert pipe.required_inputs == {"sentence"}
    assert pipe.run(sentence="a negative film")["label"] == "negative"
    assert pipe.step_context("sentiment", {"sentence": "x"})["text"] == "x"


def test_caller_mapping_adds_to_the_yaml_and_is_written_back(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(MAPPED.replace("inputs: {text: sentence}\n", ""), encoding="utf-8")
    pipe = Pipeline.from_yaml(path, store=False, inputs={"text": "body"})
    assert pipe.required_inputs == {"body"}
    assert pipe.to_config()["inputs"] == {"text": "body"}
    again = Pipeline.from_config(pipe.to_config(), store=False)
    assert again.required_inputs == {"body"}


def test_the_mapping_changes_the_fingerprint_and_an_empty_one_does_not(tmp_path: Path) -> None:
    plain = parse_pipeline_yaml(MAPPED.replace("inputs: {text: sentence}\n", ""))
    assert plain.fingerprint() == parse_pipeline_yaml(MAPPED.replace("inputs: {text: sentence}", "inputs: {}")
                                                      ).fingerprint()
    assert parse_pipeline_yaml(MAPPED).fingerprint() != plain.fingerprint()


def test_a_top_level_mapping_cannot_read_a_step_output() -> None:
    with pytest.raises(ConfigError, match="runs before any step"):
        parse_pipeline_yaml(MAPPED.replace("{text: sentence}", "{text: sentiment.label}"))
    with pytest.raises(ConfigError, match="variable name"):
        parse_pipeline_yaml(MAPPED.replace("{text: sentence}", "{'two words': sentence}"))


def test_parse_input_map_takes_repeats_and_comma_lists() -> None:
    assert parse_input_map(["text=sentence", "a=b, c = d"]) == {"text": "sentence", "a": "b", "c": "d"}
    assert parse_input_map(None) == {}
    for bad in (["text"], ["=sentence"], ["text="], ["not a name=x"]):
        with pytest.raises(ConfigError, match="text=sentence"):
            parse_input_map(bad)


def test_a_missing_column_hint_names_the_map_to_pass() -> None:
    with pytest.raises(InputDataError) as info:
        require_columns([{"sentence": "x", "label": "1"}], {"text", "label"}, "dev.tsv")
    assert "--map text=sentence" in str(info.value) and "inputs: {text: sentence}" in str(info.value)
