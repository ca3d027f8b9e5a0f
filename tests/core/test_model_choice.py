"""With no model named, a mostly-Chinese task runs on the multilingual embedded model (issue 19 §3)."""

from __future__ import annotations

import pytest

from openautoglm import Pipeline, Task
from openautoglm.backends import gemma3_weights, registry
from openautoglm.backends.registry import DEFAULT_MODEL, MULTILINGUAL_MODEL, resolve_model


@pytest.fixture()
def no_env(monkeypatch):
    monkeypatch.delenv(registry.MODEL_ENV, raising=False)
    monkeypatch.setattr(gemma3_weights, "installed", lambda: True)


def chosen(pipe: Pipeline) -> str:
    seen = []
    pipe._pool.get = lambda spec: seen.append(spec)  # record the spec instead of loading a model
    pipe.backend_for(pipe.config.steps[0])
    return seen[0]


def test_a_chinese_task_with_no_model_named_gets_the_multilingual_model(no_env):
    seed = Task(name="sentiment_analysis", prompt_template="判断以下句子的情感倾向：{text}")
    assert chosen(Pipeline(task=seed, store=False)) == MULTILINGUAL_MODEL
    unnamed = Task(name="t", prompt_template="这条评论说的是什么？{text}", labels=["好", "坏"])
    assert chosen(Pipeline(task=unnamed, store=False)) == MULTILINGUAL_MODEL


def test_english_tasks_and_named_models_are_left_alone(no_env, monkeypatch):
    en = Task(name="sst", prompt_template="Review: {text}", labels=["positive", "negative"])
    assert chosen(Pipeline(task=en, store=False)) == DEFAULT_MODEL
    zh = Task(name="sentiment_analysis", prompt_template="判断以下句子的情感倾向：{text}")
    assert chosen(Pipeline(model="local", task=zh, store=False)) == "local"
    monkeypatch.setenv(registry.MODEL_ENV, "fake")
    assert chosen(Pipeline(task=zh, store=False)) == "fake"


def test_without_the_multilingual_weights_the_default_stays(monkeypatch):
    monkeypatch.setattr(gemma3_weights, "installed", lambda: False)
    monkeypatch.delenv(registry.MODEL_ENV, raising=False)
    assert resolve_model(None, language="zh") == DEFAULT_MODEL
