"""Configs from untrusted hands: callables only from the allow-list, sub-pipelines only inside
their folder, no recursion, no file contents in errors, and bounded template rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from openautoglm.core.config import parse_pipeline_yaml
from openautoglm.core.pipeline import Pipeline
from openautoglm.core.policy import LoadPolicy
from openautoglm.core.prompt import MAX_LOOP_ITERATIONS, MAX_PROMPT_CHARS, Template
from openautoglm.errors import ConfigError, TemplateError

from . import helpers_steps


def _build(text: str, policy: LoadPolicy, base: Path) -> Pipeline:
    return Pipeline.from_config(parse_pipeline_yaml(text, source="p.yaml"), source="p.yaml", policy=policy,
                                base_dir=base, model="fake", store=False)


def test_untrusted_call_is_refused_before_anything_runs(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    text = 'name: p\nsteps:\n  - name: s\n    call: "subprocess:run"\n'
    with pytest.raises(ConfigError) as info:
        _build(text, LoadPolicy.untrusted(tmp_path), tmp_path)
    assert "not allowed" in str(info.value) and "--allow-call subprocess:run" in str(info.value)
    assert not marker.exists()


def test_allow_listed_call_runs(tmp_path: Path) -> None:
    text = 'name: p\nsteps:\n  - name: s\n    call: "tests.core.helpers_steps:shout"\n'
    policy = LoadPolicy.untrusted(tmp_path, ["tests.core.helpers_steps:shout"])
    assert _build(text, policy, tmp_path).run(text="hi") == {"value": "HI"}


def test_python_verifier_is_an_allow_listed_callable_too(tmp_path: Path) -> None:
    text = """\
name: p
task:
  template: "Review: {text}"
  labels: [positive, negative]
  strategy: {name: verify_revise, verifier: "os:system"}
"""
    with pytest.raises(ConfigError) as info:
        _build(text, LoadPolicy.untrusted(tmp_path), tmp_path)
    assert "'os:system' is not allowed" in str(info.value)


def test_trusted_policy_still_imports_any_callable() -> None:
    steps = [{"name": "s", "call": "tests.core.helpers_steps:shout"}]
    assert Pipeline(model="fake", steps=steps, store=False).run(text="a") == {"value": "A"}
    assert helpers_steps.shout  # the module the step names


@pytest.mark.parametrize("ref", ["../../../../etc/passwd", "/etc/passwd", "../secret.yaml", "sub/../../secret.yaml"])
def test_subpipeline_outside_the_folder_is_refused_without_its_content(tmp_path: Path, ref: str) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (tmp_path / "secret.yaml").write_text("TOPSECRET: value\n")
    text = f'name: p\nsteps:\n  - name: s\n    pipeline: "{ref}"\n'
    with pytest.raises(ConfigError) as info:
        _build(text, LoadPolicy.untrusted(folder), folder)
    message = str(info.value)
    assert "outside the pipelines folder" in message
    assert "TOPSECRET" not in message and "root:" not in message


def test_subpipeline_symlink_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (tmp_path / "secret.yaml").write_text("name: s\ntask:\n  template: 'SECRET {text}'\n")
    (folder / "link.yaml").symlink_to(tmp_path / "secret.yaml")
    with pytest.raises(ConfigError, match="outside the pipelines folder"):
        _build('name: p\nsteps:\n  - name: s\n    pipeline: link.yaml\n', LoadPolicy.untrusted(folder), folder)


def test_subpipeline_inside_the_folder_runs(tmp_path: Path) -> None:
    (tmp_path / "inner.yaml").write_text("name: inner\nsteps:\n  - name: up\n    call: tests.core.helpers_steps:shout\n")
    policy = LoadPolicy.untrusted(tmp_path, ["tests.core.helpers_steps:shout"])
    out = _build('name: p\nsteps:\n  - name: s\n    pipeline: inner.yaml\n', policy, tmp_path).run(text="ok")
    assert out == {"value": "OK"}


def test_self_referencing_subpipeline_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: a\nsteps:\n  - name: s\n    pipeline: b.yaml\n")
    (tmp_path / "b.yaml").write_text("name: b\nsteps:\n  - name: s\n    pipeline: a.yaml\n")
    with pytest.raises(ConfigError) as info:
        Pipeline.from_yaml(tmp_path / "a.yaml", model="fake", store=False)
    assert "cycle: a.yaml -> b.yaml -> a.yaml" in str(info.value)


def test_yaml_duplicate_keys_are_an_error() -> None:
    text = "name: p\ntask:\n  template: 'Review: {text}'\n  labels: [a, b]\n  labels: [c, d]\n"
    with pytest.raises(ConfigError) as info:
        parse_pipeline_yaml(text, source="dup.yaml")
    assert "duplicate key 'labels' (first given on line 4)" in str(info.value)
    assert "dup.yaml:5" in str(info.value)


@pytest.mark.parametrize("value", ["1e23", "1.0e+23", "-5", "0"])
def test_absurd_max_tokens_is_an_error(value: str) -> None:
    text = f"name: p\ntask:\n  template: '{{text}}'\n  max_tokens: {value}\n"
    with pytest.raises(ConfigError) as info:
        parse_pipeline_yaml(text, source="p.yaml")
    assert "max_tokens" in str(info.value) and "p.yaml:4" in str(info.value)


# -- template rendering ------------------------------------------------------------------


def test_format_template_cannot_read_attributes_of_objects() -> None:
    for source in ("{text.__class__}", "{text.__init__.__globals__}", "{meta.__class__.__mro__}"):
        with pytest.raises(TemplateError):
            Template(source).render({"text": "x", "meta": {"a": 1}})


def test_format_template_reads_record_fields() -> None:
    assert Template("{step.label} {items[1]} {n:>4}").render({"step": {"label": "pos"}, "items": ["a", "b"], "n": 7}) \
        == "pos b    7"


def test_format_template_width_is_capped() -> None:
    with pytest.raises(TemplateError, match="wider than"):
        Template("{text:>999999999}").render({"text": "x"})


def test_oversized_prompt_fails_alone() -> None:
    template = Template("Review: {text}")
    with pytest.raises(TemplateError, match="over"):
        template.render({"text": "x" * (MAX_PROMPT_CHARS + 1)})
    assert template.render({"text": "fine"}) == "Review: fine"


def test_nested_jinja_loops_stop_at_the_iteration_budget() -> None:
    # the reported 193-byte request ran 20 s; loops are now metered
    source = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}{{ text }}"
    with pytest.raises(TemplateError) as info:
        Template(source).render({"text": "x"})
    assert f"{MAX_LOOP_ITERATIONS:,} iterations" in str(info.value) or "took over" in str(info.value)


def test_jinja_string_repetition_is_capped() -> None:
    with pytest.raises(TemplateError, match="over"):
        Template("{{ 'x' * 100000000 }}{{ text }}").render({"text": "y"})
    with pytest.raises(TemplateError, match="over"):
        Template("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"
                 "{{ ns.s }}{{ text }}").render({"text": "y"})


def test_jinja_recursion_is_a_template_error() -> None:
    source = "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}{{ text }}"
    with pytest.raises(TemplateError):
        Template(source).render({"text": "y"})


def test_jinja_sandbox_still_blocks_attribute_escapes() -> None:
    with pytest.raises(TemplateError):
        Template("{{ text.__class__.__mro__[1].__subclasses__() }}").render({"text": "y"})


def test_jinja_loops_still_work() -> None:
    source = "{% for ex in examples %}{{ ex.q }}={{ ex.a }};{% endfor %}{{ text }}"
    out = Template(source).render({"examples": [{"q": 1, "a": 2}, {"q": 3, "a": 4}], "text": "?"})
    assert out == "1=2;3=4;?"
