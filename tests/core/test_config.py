"""Pipeline YAML: shorthand, multi-step, and errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from openautoglm.core.config import PipelineConfig, load_pipeline_config, parse_pipeline_yaml, validate_pipeline_dict
from openautoglm.errors import ConfigError

SHORTHAND = """\
name: sent
model: fake
task:
  name: sentiment
  template: "Review: {text}"
  labels: [positive, negative]
  verbalizers: {positive: good}
  calibrate: true
"""

MULTI = """\
name: multi
model: fake:m1
batch_size: 8
steps:
  - name: classify
    task:
      template: "Review: {text}"
      labels: [positive, negative]
  - name: post
    call: tests.core.helpers_steps:summarise
  - name: explain
    pipeline: sub.yaml
    inputs: {label: classify.label, body: text}
    model: fake:m2
output: classify
"""


def test_task_shorthand_is_a_one_step_pipeline() -> None:
    cfg = parse_pipeline_yaml(SHORTHAND, source="s.yaml")
    assert cfg.name == "sent" and cfg.model == "fake"
    [step] = cfg.steps
    assert step.name == "sentiment"
    assert step.task is not None
    assert step.task.labels == ["positive", "negative"]
    assert step.task.verbalizers == {"positive": "good"}
    assert step.task.calibrate is True
    assert step.task.output == "labels"


def test_shorthand_without_task_name_uses_default() -> None:
    cfg = parse_pipeline_yaml('task:\n  template: "{x}"\n')
    assert [s.name for s in cfg.steps] == ["task"]
    assert cfg.model is None  # decided at run time: $OPENAUTOGLM_MODEL, else "local" (backends.registry.resolve_model)


def test_multi_step_config() -> None:
    cfg = parse_pipeline_yaml(MULTI, source="m.yaml")
    assert [s.name for s in cfg.steps] == ["classify", "post", "explain"]
    assert cfg.steps[0].task is not None and cfg.steps[0].call is None
    assert cfg.steps[1].call == "tests.core.helpers_steps:summarise"
    assert cfg.steps[2].pipeline == "sub.yaml"
    assert cfg.steps[2].inputs == {"label": "classify.label", "body": "text"}
    assert cfg.steps[2].model == "fake:m2"
    assert cfg.output == "classify" and cfg.batch_size == 8


def test_fingerprint_is_stable_and_sensitive() -> None:
    a = parse_pipeline_yaml(MULTI).fingerprint()
    assert a == parse_pipeline_yaml(MULTI).fingerprint()
    assert a != parse_pipeline_yaml(MULTI.replace("Review:", "Critique:")).fingerprint()


def test_load_from_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(SHORTHAND, encoding="utf-8")
    cfg = load_pipeline_config(path)
    assert isinstance(cfg, PipelineConfig) and cfg.steps[0].name == "sentiment"


def _error(text: str, source: str = "cfg/p.yaml") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_pipeline_yaml(text, source=source)
    return info.value


def test_malformed_yaml_names_file_and_line() -> None:
    text = 'name: x\ntask:\n  template: "Review: {text}\n  labels: [a, b]\n'
    err = _error(text)
    assert err.source == "cfg/p.yaml"
    assert err.line is not None
    msg = str(err)
    assert msg.startswith(f"cfg/p.yaml:{err.line}: malformed YAML")
    assert "line 3" in msg  # where the unclosed quote starts
    assert err.hint and "quot" in err.hint


def test_malformed_yaml_bad_indentation_line() -> None:
    text = "name: x\nsteps:\n  - name: a\n    task:\n      template: x\n     labels: [a, b]\n"
    err = _error(text)
    assert err.line == 6
    assert str(err).startswith("cfg/p.yaml:6: malformed YAML")


def test_unknown_task_field_names_field_and_line() -> None:
    text = 'name: x\nmodel: fake\ntask:\n  template: "{text}"\n  labels: [a, b]\n  lables: [c]\n'
    err = _error(text)
    assert err.line == 6
    assert err.field == "task.lables"
    assert "unknown field 'lables'" in str(err)
    assert str(err).startswith("cfg/p.yaml:6 [task.lables]")


def test_unknown_top_level_field() -> None:
    err = _error('name: x\nmodle: fake\ntask:\n  template: "{text}"\n')
    assert (err.line, err.field) == (2, "modle")
    assert "unknown field 'modle'" in str(err)


def test_unknown_step_field_in_multi_step() -> None:
    text = 'name: x\nsteps:\n  - name: a\n    task:\n      template: "{text}"\n  - name: b\n    call: m:f\n    inputz: {a: b}\n'
    err = _error(text)
    assert (err.line, err.field) == (8, "steps.1.inputz")


@pytest.mark.parametrize(
    "labels, message",
    [("[only]", "at least two labels"), ("[a, a]", "labels must be unique"), ("[]", "labels")],
)
def test_bad_labels(labels: str, message: str) -> None:
    err = _error(f'name: x\ntask:\n  template: "{{text}}"\n  labels: {labels}\n')
    assert message in str(err)
    assert err.line in (3, 4)
    assert err.field is not None and err.field.startswith("task")


def test_bad_labels_in_a_step() -> None:
    err = _error('name: x\nsteps:\n  - name: a\n    task:\n      template: "{text}"\n      labels: [a, a]\n')
    assert (err.line, err.field) == (6, "steps.0.task.labels")


def test_duplicate_step_names() -> None:
    err = _error("name: x\nsteps:\n  - name: a\n    call: m:f\n  - name: a\n    call: m:g\n")
    assert "step names must be unique" in str(err) and "['a']" in str(err)
    assert str(err).startswith("cfg/p.yaml")


@pytest.mark.parametrize("call", ["mymodule.func", "func"])
def test_call_syntax_checked(call: str) -> None:
    err = _error(f"name: x\nsteps:\n  - name: a\n    call: {call}\n")
    assert "package.module:function" in str(err) and call in str(err)
    assert err.field == "steps.0" and err.line == 3


def test_step_needs_exactly_one_kind() -> None:
    assert "got ['call', 'pipeline']" in str(_error("steps:\n  - name: a\n    call: m:f\n    pipeline: p.yaml\n"))
    assert "(got none)" in str(_error("steps:\n  - name: a\n"))


def test_missing_template_has_hint() -> None:
    err = _error("name: x\ntask:\n  labels: [a, b]\n")
    assert "required field 'template' is missing" in str(err)
    assert err.field == "task.template"
    assert err.hint and "template:" in err.hint


def test_invalid_template_is_a_config_error_with_line() -> None:
    err = _error("name: x\ntask:\n  template: 'oops {text'\n")
    assert "cannot parse template" in str(err)
    assert err.line == 3 and err.field == "task"  # the task mapping starts on the template line


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\ntask:\n  template: x\nsteps: []\n", "either `task` or `steps`"),
        ("name: x\ntask:\n  template: x\noutput: nope\n", "names no step"),
        ("name: x\n", "at least one step"),
        ("- a\n- b\n", "mapping at the top level"),
        ("name: x\nbatch_size: 0\ntask:\n  template: x\n", "greater than or equal to 1"),
    ],
)
def test_other_structural_errors(text: str, message: str) -> None:
    assert message in str(_error(text))


def test_validate_dict_without_text_has_no_line() -> None:
    with pytest.raises(ConfigError) as info:
        validate_pipeline_dict({"task": {"template": "x", "bogus": 1}}, source="api")
    assert info.value.line is None
    assert info.value.field == "task.bogus"
    assert str(info.value).startswith("api [task.bogus]")


def test_missing_file_and_bad_encoding(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found") as info:
        load_pipeline_config(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value)
    bad = tmp_path / "gbk.yaml"
    bad.write_bytes("task:\n  template: '评论：{text}'\n".encode("gbk"))
    with pytest.raises(ConfigError, match="not valid UTF-8") as info:
        load_pipeline_config(bad)
    assert "gbk.yaml" in str(info.value)
