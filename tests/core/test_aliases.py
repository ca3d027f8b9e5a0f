"""The origin articles' names (issue 19, section 1): AutoGLM / TaskPipeline with
execute(input_text=...), model_path= on them and on SemanticParser; on the fake backend."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import openautoglm
from openautoglm.core.pipeline import Pipeline
from openautoglm.core.task import Task
from openautoglm.errors import ConfigError, OpenAutoGLMError

SEED = Task(name="sentiment_analysis", prompt_template="判断以下句子的情感倾向：{text}")


def test_the_aliases_are_one_pipeline_class_loaded_lazily() -> None:
    assert openautoglm.AutoGLM is openautoglm.TaskPipeline
    assert issubclass(openautoglm.TaskPipeline, Pipeline)
    code = ("import sys, openautoglm; assert 'AutoGLM' in dir(openautoglm); "
            "assert 'openautoglm.core.aliases' not in sys.modules and 'openautoglm.core.pipeline' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_execute_input_text_is_run_with_the_one_input() -> None:
    pipe = openautoglm.TaskPipeline(model_path="fake", task=SEED, store=False)
    assert pipe.config.model == "fake"
    out = pipe.execute(input_text="正面 的评价")
    assert out == pipe.run(text="正面 的评价")
    assert out.label == "正面" and out["preset"] == "sentiment.v1"


def test_a_task_given_by_name_takes_its_preset() -> None:
    zh = openautoglm.AutoGLM(model="fake", task="sentiment_analysis", language="zh", store=False)
    assert zh.config.steps[0].task.labels == ["正面", "负面"]
    en = openautoglm.AutoGLM(model="fake", task="topic.v1", store=False)
    assert en.config.steps[0].task.labels[0] == "politics"
    with pytest.raises(ConfigError, match="'weather' names no preset.*sentiment.v1"):
        openautoglm.TaskPipeline(model="fake", task="weather")


def test_execute_with_several_inputs_names_them() -> None:
    pipe = openautoglm.TaskPipeline(model="fake", task=Task(preset="qa.v1"), store=False)
    with pytest.raises(ConfigError, match="reads context, question"):
        pipe.execute(input_text="what?")
    assert pipe.execute(input_text="Who?", context="Ann wrote it.").text  # the one missing input gets it


def test_model_and_model_path_must_agree() -> None:
    with pytest.raises(ConfigError, match="not both"):
        openautoglm.TaskPipeline(model="fake", model_path="local", task=SEED)


def test_semantic_parser_takes_model_path(tmp_path: Path) -> None:
    pytest.importorskip("sqlglot")
    db = tmp_path / "t.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (a INTEGER)")
    parser = openautoglm.SemanticParser(model_path="fake", db=f"sqlite:///{db}", store=False)
    assert parser.backend.name == "fake"
    parser.close()
    with pytest.raises(OpenAutoGLMError, match="not both"):
        openautoglm.SemanticParser(model="fake", model_path="local", db=f"sqlite:///{db}")
