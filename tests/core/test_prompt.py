"""Prompt templates: format style vs Jinja2, variables, missing-variable errors."""

from __future__ import annotations

import pytest

from openautoglm.core.prompt import Template
from openautoglm.errors import TemplateError


def test_format_style_renders_and_lists_variables() -> None:
    t = Template("判断以下句子的情感倾向：{text} ({lang})")
    assert not t.is_jinja
    assert t.variables == {"text", "lang"}
    assert t.render({"text": "很好", "lang": "zh", "extra": 1}) == "判断以下句子的情感倾向：很好 (zh)"


def test_format_style_literal_double_braces_json_example() -> None:
    # "{{"/"}}" are the documented literal braces of format style: a JSON example in the
    # prompt must not turn the template into Jinja and leave "{text}" unsubstituted.
    t = Template('请以JSON格式输出：{{"name": "...", "age": 0}}。文本：{text}')
    assert not t.is_jinja
    assert t.variables == {"text"}
    assert t.render({"text": "张三"}) == '请以JSON格式输出：{"name": "...", "age": 0}。文本：张三'


def test_double_braces_alone_mean_jinja() -> None:
    t = Template("Review: {{ text }}")
    assert t.is_jinja
    assert t.render({"text": "ok"}) == "Review: ok"


def test_format_style_escaped_single_brace() -> None:
    t = Template("open {{ then {text}")
    assert not t.is_jinja
    assert t.render({"text": "t"}) == "open { then t"


def test_format_dotted_and_indexed_access_to_step_outputs() -> None:
    t = Template("label={classify.label} conf={classify.confidence:.2f} first={items[0]}")
    assert t.variables == {"classify", "items"}
    out = t.render({"classify": {"label": "positive", "confidence": 0.875}, "items": ["a", "b"]})
    assert out == "label=positive conf=0.88 first=a"


def test_format_dotted_access_missing_field_names_available_fields() -> None:
    t = Template("{classify.nope}")
    with pytest.raises(TemplateError) as info:
        t.render({"classify": {"label": "x", "confidence": 1.0}})
    msg = str(info.value)
    assert "'nope'" in msg and "label" in msg and "confidence" in msg


def test_jinja_template_detected_and_rendered() -> None:
    t = Template("{% for w in words %}[{{ w|upper }}]{% endfor %} {{ classify.label }}")
    assert t.is_jinja
    assert t.variables == {"words", "classify"}
    assert t.render({"words": ["a", "b"], "classify": {"label": "neg"}}) == "[A][B] neg"


def test_missing_variable_names_it_and_lists_record_fields() -> None:
    t = Template("Review: {text} / {title}", where="task 'x' template")
    with pytest.raises(TemplateError) as info:
        t.render({"review": "good", "id": 3})
    msg = str(info.value)
    assert "task 'x' template" in msg
    assert "'text'" in msg and "'title'" in msg
    assert "id, review" in msg  # what the record has, sorted
    assert info.value.hint and "inputs:" in info.value.hint


def test_missing_variable_jinja_is_an_error_not_an_empty_string() -> None:
    t = Template("Review: {{ text }}")
    with pytest.raises(TemplateError, match="'text'"):
        t.render({"other": 1})


def test_missing_variable_empty_record_says_nothing() -> None:
    with pytest.raises(TemplateError, match=r"\(nothing\)"):
        Template("{text}").render({})


def test_jinja_undefined_attribute_raises_template_error() -> None:
    t = Template("{{ step.missing }}")
    with pytest.raises(TemplateError, match="rendering failed"):
        t.render({"step": {"label": "x"}})


def test_unparseable_format_template() -> None:
    with pytest.raises(TemplateError) as info:
        Template("oops {text")
    assert "cannot parse" in str(info.value)
    assert info.value.hint and "{{" in info.value.hint


def test_positional_placeholder_rejected() -> None:
    t = Template("value: {}")
    with pytest.raises(TemplateError, match="positional placeholder"):
        t.variables  # noqa: B018


def test_invalid_jinja_syntax_is_a_template_error() -> None:
    bad = Template("{% if %}{{ x }}", where="task 't' template")
    assert bad.is_jinja
    with pytest.raises(TemplateError, match="task 't' template: invalid Jinja2"):
        bad.variables  # noqa: B018
    with pytest.raises(TemplateError):
        bad.render({"x": 1})


def test_non_string_template_rejected() -> None:
    with pytest.raises(TemplateError, match="expected a string"):
        Template(123)  # type: ignore[arg-type]


def test_jinja_sandbox_blocks_unsafe_attribute_access() -> None:
    t = Template("{{ x.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError):
        t.render({"x": "s"})
