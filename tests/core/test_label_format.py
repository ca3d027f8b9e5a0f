"""A label task that leaves its prompt form open takes the backend's (issue 19 §2): the
embedded model declares ``label_format = "text"``, and the cue comes from the task's preset."""

from __future__ import annotations

from typing import Any, Sequence

from openautoglm import Pipeline, Task
from openautoglm.backends.base import ScoreRequest, ScoreResult
from openautoglm.backends.fake import FakeBackend

NATURAL = "Is the sentiment of this movie review positive or negative?\nReview: {text}"


class TextPreferring(FakeBackend):
    """A fake backend whose model prefers plain-text label prompts; it records what it scored."""

    label_format = "text"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scored: list[ScoreRequest] = []

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        self.scored.extend(requests)
        return super().score_batch(requests)


def _run(task: Task, text: str = "a wonderful film") -> tuple[dict[str, Any], list[ScoreRequest]]:
    backend = TextPreferring()
    result = Pipeline(model=backend, task=task, store=False, cache=False).run(text=text)
    return result, backend.scored


def test_natural_task_uses_the_backends_text_form_and_the_presets_cue() -> None:
    task = Task(name="sst", prompt_template=NATURAL, labels=["positive", "negative"])
    result, scored = _run(task)
    assert scored[0].prompt == NATURAL.format(text="a wonderful film") + "\nSentiment:"
    assert scored[0].continuations == (" positive", " negative")
    assert result["label"] in ("positive", "negative")
    assert task.format == "chat"  # the task itself is unchanged: the adapted copy is the backend's


def test_cue_from_the_preset_else_answer() -> None:
    assert Task(name="sentiment_analysis", prompt_template="判断以下句子的情感倾向：{text}").label_cue() == "情感："
    assert Task(name="news", prompt_template="Which topic is this news text about?\n{text}",
                labels=["sports", "politics"]).label_cue() == "Topic:"
    assert Task(name="spam", prompt_template="Message: {text}", labels=["spam", "ham"]).label_cue() == "Answer:"


def test_what_the_task_sets_wins() -> None:
    chat = Task(name="sst", prompt_template=NATURAL, labels=["positive", "negative"], format="chat")
    assert isinstance(_run(chat)[1][0].prompt, list)  # messages
    cue = Task(name="sst", prompt_template=NATURAL, labels=["positive", "negative"], answer_prefix="Answer:")
    assert _run(cue)[1][0].prompt.endswith("\nAnswer:")
    # an explicit format survives a YAML round trip even when it equals the default
    again = Task.model_validate(chat.to_config())
    assert "format" in again.model_fields_set and isinstance(_run(again)[1][0].prompt, list)


def test_only_direct_label_tasks_follow_the_backend() -> None:
    backend = TextPreferring()
    free = Task(name="summary", prompt_template="Summarize: {text}")
    cot = Task(name="sst", prompt_template=NATURAL, labels=["positive", "negative"], strategy="chain_of_thought")
    assert free.for_backend(backend) is free and cot.for_backend(backend) is cot
    natural = Task(name="sst", prompt_template=NATURAL, labels=["positive", "negative"])
    assert natural.for_backend(backend) is natural.for_backend(backend)  # one copy, reused (fitted heads kept)
    assert natural.for_backend(FakeBackend()) is natural  # no preference: the task's default


def test_calibration_prompts_use_the_same_form() -> None:
    task = Task(name="sst", prompt_template=NATURAL, labels=["positive", "negative"], calibrate=True)
    result, scored = _run(task)
    assert all(isinstance(r.prompt, str) and r.prompt.endswith("\nSentiment:") for r in scored)
    assert "calibration" in result["method"]
