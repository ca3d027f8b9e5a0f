"""Pipelines: multi-step (task → python callable → sub-pipeline), input mapping,
per-record errors and required inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pytest

from openautoglm.backends import registry
from openautoglm.backends.base import Completion, GenerationRequest
from openautoglm.backends.fake import FakeBackend
from openautoglm.core.pipeline import Pipeline, RecordError
from openautoglm.core.task import Task
from openautoglm.errors import ConfigError, TemplateError

from . import helpers_steps

CLASSIFY = {"template": "Review: {text}", "labels": ["positive", "negative"], "format": "text"}

SUB_YAML = """\
name: sub
model: local
task:
  name: explain
  template: "Explain {label}: {text}"
"""

MAIN_YAML = """\
name: main
model: fake
steps:
  - name: classify
    task:
      template: "Review: {text}"
      labels: [positive, negative]
      format: text
  - name: post
    call: tests.core.helpers_steps:summarise
  - name: explain
    pipeline: sub.yaml
    inputs: {label: post.verdict}
"""


class RecordingFake(FakeBackend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prompts: list[Any] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        self.prompts += [r.prompt for r in requests]
        return super().generate(requests)


@pytest.fixture
def no_real_models(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail loudly if anything tries to build a non-fake backend (e.g. load the local model)."""
    built: list[Any] = []
    original = registry.create_backend

    def guarded(spec: Any, **options: Any) -> Any:
        built.append(spec)
        name = spec.get("model") if isinstance(spec, dict) else spec
        if not (isinstance(name, str) and name.startswith("fake")):
            raise AssertionError(f"test tried to create a real backend: {spec!r}")
        return original(spec, **options)

    monkeypatch.setattr(registry, "create_backend", guarded)
    return built


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "sub.yaml").write_text(SUB_YAML, encoding="utf-8")
    (tmp_path / "main.yaml").write_text(MAIN_YAML, encoding="utf-8")
    return tmp_path


def test_multi_step_task_callable_subpipeline_from_yaml(project: Path, no_real_models: list[Any]) -> None:
    helpers_steps.SEEN.clear()
    with Pipeline.from_yaml(project / "main.yaml", store=False) as pipe:
        res = pipe.run(text="a negative film")
    steps = res["steps"]
    assert list(steps) == ["classify", "post", "explain"]
    assert steps["classify"]["label"] == "negative"
    assert steps["post"] == {"words": 3, "verdict": "NEGATIVE"}
    # the sub-pipeline saw the mapped input and the original field; the parent's model overrides its own
    assert steps["explain"]["text"] == "echo: Explain NEGATIVE: a negative film"
    # the final result is the last step's output plus the per-step outputs
    assert res["text"] == steps["explain"]["text"]
    # the callable received the input and the earlier step's output
    assert helpers_steps.SEEN[0]["text"] == "a negative film"
    assert helpers_steps.SEEN[0]["classify"]["label"] == "negative"
    assert no_real_models and all(str(s).startswith("fake") for s in no_real_models)


def test_subpipeline_uses_the_backend_instance_of_the_parent(project: Path, no_real_models: list[Any]) -> None:
    backend = RecordingFake()
    pipe = Pipeline.from_yaml(project / "main.yaml", model=backend, store=False)
    res = pipe.run(text="a positive film")
    assert res["text"] == "echo: Explain POSITIVE: a positive film"
    assert backend.prompts and "Explain POSITIVE" in backend.prompts[-1][-1]["content"]
    assert no_real_models == []  # nothing else was built


def test_step_model_override_and_batch(project: Path, no_real_models: list[Any]) -> None:
    steps: list[dict[str, Any]] = [
        {"name": "classify", "task": CLASSIFY, "model": "fake:one"},
        {"name": "explain", "pipeline": "sub.yaml", "inputs": {"label": "classify.label"}, "model": "fake:two"},
    ]
    pipe = Pipeline(model="fake", steps=steps, source=str(project / "main.yaml"), store=False)
    results, calls, _ = pipe.process([{"text": "positive"}, {"text": "negative"}], ["0", "1"])
    assert [r["steps"]["classify"]["label"] for r in results] == ["positive", "negative"]
    assert [r["text"] for r in results] == ["echo: Explain positive: positive", "echo: Explain negative: negative"]
    by_step = {(c.step, c.model) for c in calls}
    assert by_step == {("classify", "one"), ("explain", "two")}
    assert sorted(c.record_key for c in calls if c.step == "explain") == ["0", "1"]


def test_inputs_mapping_plain_and_dotted() -> None:
    steps = [
        {"name": "classify", "task": {**CLASSIFY, "template": "Review: {text}"}, "inputs": {"text": "review"}},
        {"name": "say", "task": {"template": "Verdict {verdict} for {t}"},
         "inputs": {"verdict": "classify.label", "t": "meta.title"}},
    ]
    pipe = Pipeline(model="fake", steps=steps, store=False)
    res = pipe.run(review="so positive", meta={"title": "Film X"})
    assert res["steps"]["classify"]["label"] == "positive"
    assert res["text"] == "echo: Verdict positive for Film X"
    assert pipe.required_inputs == {"review", "meta"}


def test_inputs_mapping_missing_path_is_a_template_error() -> None:
    steps = [{"name": "say", "task": {"template": "{t}"}, "inputs": {"t": "meta.title"}}]
    pipe = Pipeline(model="fake", steps=steps, store=False)
    with pytest.raises(TemplateError) as info:
        pipe.run(meta={"name": "x"})
    assert "'meta.title'" in str(info.value) and "no 'title'" in str(info.value)


def test_format_template_reads_earlier_step_with_dots() -> None:
    steps = [
        {"name": "classify", "task": CLASSIFY},
        {"name": "say", "task": {"template": "It is {classify.label} ({classify.confidence:.2f})"}},
    ]
    res = Pipeline(model="fake", steps=steps, store=False).run(text="positive")
    assert res["text"].startswith("echo: It is positive (0.")


def test_missing_template_variable_raises_in_run() -> None:
    pipe = Pipeline(model="fake", task=Task(**CLASSIFY), store=False)
    with pytest.raises(TemplateError) as info:
        pipe.run(review="x")
    assert "'text'" in str(info.value) and "review" in str(info.value)


def test_missing_template_variable_is_per_record_in_run_batch() -> None:
    backend = FakeBackend()
    pipe = Pipeline(model=backend, task=Task(**CLASSIFY), store=False)
    out = pipe.run_batch([{"text": "positive"}, {"review": "no text"}, {"text": "negative"}])
    assert [o.get("label") for o in out] == ["positive", None, "negative"]
    assert "missing variable 'text'" in out[1]["error"]
    assert "label" not in out[1]


def test_callable_errors_are_per_record_and_non_dicts_wrapped() -> None:
    steps = [
        {"name": "check", "call": "tests.core.helpers_steps:fail_on_bad"},
        {"name": "loud", "call": "tests.core.helpers_steps:shout"},
    ]
    pipe = Pipeline(model="fake", steps=steps, store=False)
    results, calls, _ = pipe.process([{"text": "ok"}, {"text": "bad"}], ["0", "1"])
    assert results[0]["value"] == "OK"
    assert results[0]["steps"] == {"check": {"ok": True}, "loud": {"value": "OK"}}
    assert isinstance(results[1], RecordError)
    assert "check" in str(results[1]) and "ValueError" in str(results[1]) and "cannot handle" in str(results[1])
    assert calls == []
    with pytest.raises(RecordError):
        pipe.run(text="bad")


@pytest.mark.parametrize(
    "call, message",
    [("tests.core.no_such_module:f", "No module named"), ("tests.core.helpers_steps:nope", "nope")],
)
def test_callable_that_cannot_be_imported(call: str, message: str) -> None:
    # the reference is checked when the pipeline is built, before any record runs
    with pytest.raises(ConfigError) as info:
        Pipeline(model="fake", steps=[{"name": "s", "call": call}], store=False, source="p.yaml")
    assert message in str(info.value) and "steps.s.call" in str(info.value)


def test_output_selects_a_step() -> None:
    steps = [{"name": "classify", "task": CLASSIFY}, {"name": "loud", "call": "tests.core.helpers_steps:shout"}]
    res = Pipeline(model="fake", steps=steps, output="classify", store=False).run(text="positive")
    assert res["label"] == "positive"
    assert res["steps"]["loud"] == {"value": "POSITIVE"}


def test_required_inputs() -> None:
    steps = [
        {"name": "classify", "task": CLASSIFY},
        {"name": "post", "call": "tests.core.helpers_steps:summarise"},
        {"name": "say", "task": {"template": "{classify.label} {post.words} {lang} {x}"}, "inputs": {"x": "meta.id"}},
    ]
    pipe = Pipeline(model="fake", steps=steps, store=False)
    assert pipe.required_inputs == {"text", "lang", "meta"}
    assert Pipeline(model="fake", task=Task(**CLASSIFY), store=False).required_inputs == {"text"}


def test_pipeline_needs_task_or_steps() -> None:
    with pytest.raises(ConfigError):
        Pipeline(model="fake", store=False)
    with pytest.raises(ConfigError):
        Pipeline(model="fake", task=Task(**CLASSIFY), steps=[{"name": "a", "call": "m:f"}], store=False)


def test_to_config_round_trip() -> None:
    steps = [{"name": "classify", "task": CLASSIFY}, {"name": "post", "call": "tests.core.helpers_steps:summarise"}]
    pipe = Pipeline(model="fake", steps=steps, name="rt", store=False)
    again = Pipeline.from_config(pipe.to_config(), store=False)
    assert again.config.fingerprint() == pipe.config.fingerprint()
    assert again.run(text="positive")["steps"]["classify"]["label"] == "positive"


def test_backend_pool_shares_backends_between_steps() -> None:
    steps = [{"name": "a", "task": CLASSIFY}, {"name": "b", "task": {**CLASSIFY, "template": "Again: {text}"}}]
    pipe = Pipeline(model="fake", steps=steps, store=False)
    b1, b2 = (pipe.backend_for(s) for s in pipe.config.steps)
    assert b1 is b2 and isinstance(b1, FakeBackend)


def test_model_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Most specific first: step, task, pipeline (argument or YAML), $OPENAUTOGLM_MODEL, 'local'."""
    from openautoglm.backends.registry import resolve_model

    monkeypatch.delenv("OPENAUTOGLM_MODEL", raising=False)
    assert resolve_model(None, None) == "local"
    monkeypatch.setenv("OPENAUTOGLM_MODEL", "fake")
    assert resolve_model(None, "") == "fake"
    # the environment applies to a pipeline that names no model (it was ignored by Pipeline(task=...))
    pipe = Pipeline(task=Task(**CLASSIFY), store=False)
    assert pipe.backend_for(pipe.config.steps[0]).name == "fake"
    yaml_pipe = Pipeline.from_config({"task": CLASSIFY}, store=False)
    assert yaml_pipe.backend_for(yaml_pipe.config.steps[0]).name == "fake"
    # a named model beats the environment; a step's beats the pipeline's; a task's beats the pipeline's
    assert resolve_model("step-model", "task-model", "pipeline-model") == "step-model"
    assert resolve_model(None, "task-model", "pipeline-model") == "task-model"
    assert resolve_model(None, None, "pipeline-model") == "pipeline-model"
    steps = [{"name": "a", "task": CLASSIFY}, {"name": "b", "task": {**CLASSIFY, "model": "fake:from-task"}},
             {"name": "c", "task": CLASSIFY, "model": "fake:from-step"}]
    multi = Pipeline(model="fake:from-pipeline", steps=steps, store=False)
    assert [multi.backend_for(s).model for s in multi.config.steps] == ["from-pipeline", "from-task", "from-step"]


def test_required_inputs_include_what_a_sub_pipeline_reads(tmp_path: Path) -> None:
    (tmp_path / "inner.yaml").write_text("name: inner\ntask:\n  template: 'Explain {label}: {body}'\n")
    steps = [{"name": "only", "pipeline": "inner.yaml", "inputs": {"label": "tag"}}]
    pipe = Pipeline(model="fake", steps=steps, store=False, source=str(tmp_path / "outer.yaml"))
    assert pipe.required_inputs == {"body", "tag"}
