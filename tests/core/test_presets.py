"""Task presets (core/presets.py): matching rules, language choice, YAML round trip,
the no-labels warning and plug-ins through the entry-point group (issue 19, section 1)."""

from __future__ import annotations

import warnings
from importlib.metadata import EntryPoint
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from openautoglm.backends.fake import FakeBackend
from openautoglm.core.config import validate_pipeline_dict
from openautoglm.core.pipeline import Pipeline
from openautoglm.core.presets import PRESETS, NoLabelsWarning, TaskPreset, get_preset, language_of, preset_names
from openautoglm.core.task import Task

SEED = dict(name="sentiment_analysis", prompt_template="判断以下句子的情感倾向：{text}")

#: a plug-in preset, loaded through a (test-made) entry point
INTENT = TaskPreset("intent.v1", "customer intent",
                    {"en": {"template": "What does the customer want?\n{text}", "labels": ["refund", "question"],
                            "output": "labels"}},
                    names=("intent*",), phrases=(r"\bintent\b",))


def no_warnings(**fields: Any) -> Task:
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoLabelsWarning)
        return Task(**fields)


def test_the_seed_task_takes_the_sentiment_preset_in_chinese() -> None:
    task = no_warnings(**SEED)
    assert (task.preset, task.language, task.output) == ("sentiment.v1", "zh", "labels")
    assert task.labels == ["正面", "负面"]
    assert "sentiment.v1" in (task.description or "") and "sentiment_analysis" in (task.description or "")
    assert task.prompt_template == SEED["prompt_template"]  # the user's template is kept


def test_an_english_template_gets_english_labels() -> None:
    task = no_warnings(name="sentiment", template="Review: {text}")
    assert (task.language, task.labels) == ("en", ["positive", "negative"])


@pytest.mark.parametrize("fields, preset", [
    ({"name": "情感分析", "template": "{text}"}, "sentiment.v1"),
    ({"name": "review_sentiment", "template": "{text}"}, "sentiment.v1"),
    ({"name": "t", "template": "这条评论的褒贬是什么？{text}"}, "sentiment.v1"),
    ({"name": "t", "template": "Is this review positive or negative?\n{text}"}, "sentiment.v1"),
    ({"name": "news_topic", "template": "{text}"}, "topic.v1"),
    ({"name": "t", "template": "这篇新闻的主题是什么？{text}"}, "topic.v1"),
    ({"name": "ner", "template": "{text}"}, "ner.v1"),
    ({"name": "t", "template": "Extract the named entities: {text}"}, "ner.v1"),
])
def test_name_and_template_rules(fields: dict[str, Any], preset: str) -> None:
    assert no_warnings(**fields).preset == preset


@pytest.mark.parametrize("fields", [
    {"name": "sentiment", "template": "{text}", "labels": ["good", "bad"]},   # labels given
    {"name": "sentiment", "template": "{text}", "output": "text"},           # free text asked for
    {"name": "summary", "template": "Summarise: {text}"},                    # text presets only when named
    {"name": "sent", "template": "Write a poem about {topic_word}"},         # variables are not phrases
])
def test_tasks_with_an_output_spec_or_no_match_keep_their_fields(fields: dict[str, Any]) -> None:
    task = no_warnings(**fields)
    assert task.preset is None and task.description is None
    assert task.labels == fields.get("labels")


def test_a_named_preset_fills_only_what_is_missing() -> None:
    own = Task(name="s", template="{text}", preset="sentiment", labels=["好评", "差评"])
    assert (own.preset, own.labels, own.prompt_template) == ("sentiment.v1", ["好评", "差评"], "{text}")
    bare = Task(preset="topic.v1", language="zh")
    assert bare.prompt_template.startswith("判断以下新闻") and bare.labels == ["时政", "体育", "财经", "科技", "娱乐"]
    ner = Task(preset="ner.v1")
    assert ner.output == "json" and ner.schema_["properties"]["entities"]["items"]["properties"]["type"]["enum"] == [
        "PERSON", "ORGANIZATION", "LOCATION", "MISC"]
    qa = Task(preset="qa.v1", language="zh")
    assert qa.output == "text" and qa.input_variables == {"context", "question"}


def test_an_unknown_preset_is_an_error_listing_the_known_ones() -> None:
    with pytest.raises(ValidationError, match="unknown task preset 'sentiment.v9'.*sentiment.v1"):
        Task(template="{text}", preset="sentiment.v9")


def test_a_resolved_task_round_trips_through_yaml() -> None:
    for task in (Task(**SEED), Task(preset="ner.v1"), Task(name="topic", template="Which topic? {text}")):
        config = task.to_config()
        again = Task(**yaml.safe_load(yaml.safe_dump(config, allow_unicode=True)))
        assert again == task and again.to_config() == config


def test_a_pipeline_yaml_step_takes_a_preset() -> None:
    config = validate_pipeline_dict({"name": "p", "task": {"preset": "sentiment.v1", "language": "zh"}},
                                    source="p.yaml")
    assert config.steps[0].task.labels == ["正面", "负面"]


def test_a_judgement_without_labels_warns_with_the_fix() -> None:
    with pytest.warns(NoLabelsWarning, match=r"'判断'.*no labels.*preset='sentiment.v1'.*output='text'"):
        task = Task(name="t", template="判断这句话是否通顺：{text}")
    assert task.output == "text"
    with pytest.warns(NoLabelsWarning, match="'Classify'"):
        Task(template="Classify this email: {text}")
    no_warnings(template="Classify this email: {text}", output="text")  # free text asked for: quiet


def test_language_detection() -> None:
    assert language_of("判断以下句子的情感倾向：{text}") == "zh"
    assert language_of("Review this: {text} 好") == "en"  # more Latin words than CJK characters
    assert language_of("{中文变量}") == "en"  # variables do not count


def test_results_name_the_preset() -> None:
    task = Task(name="sentiment", template="Review: {text}")
    result = Pipeline(model=FakeBackend(), task=task, store=False).run(text="a positive film")
    assert result["preset"] == "sentiment.v1"
    assert result.label == "positive" and abs(sum(result.scores.values()) - 1) < 1e-9


def test_a_plugin_preset_comes_through_the_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint(name="intent.v1", value=f"{__name__}:INTENT", group=PRESETS.group)
    monkeypatch.setattr(PRESETS, "_entry_points", {"intent.v1": ep})
    monkeypatch.setattr(PRESETS, "_items", dict(PRESETS._items))
    assert preset_names()[-1] == "intent.v1" and get_preset("intent") is INTENT
    task = no_warnings(name="intent_detection", template="{text}")
    assert (task.preset, task.labels) == ("intent.v1", ["refund", "question"])
    assert no_warnings(**SEED).preset == "sentiment.v1"  # built-ins first


def test_a_plugin_may_declare_a_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint(name="yesno.v1", value=f"{__name__}:YESNO", group=PRESETS.group)
    monkeypatch.setattr(PRESETS, "_entry_points", {"yesno.v1": ep})
    monkeypatch.setattr(PRESETS, "_items", dict(PRESETS._items))
    assert Task(preset="yesno.v1", template="{q}").labels == ["yes", "no"]


YESNO = {"summary": "yes or no", "variants": {"en": {"labels": ["yes", "no"], "output": "labels",
                                                      "template": "{q}"}}}
