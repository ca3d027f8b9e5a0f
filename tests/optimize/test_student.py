"""``student:<dir>``: a distilled student as a backend (fake teacher, char-n-gram embedder)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("numpy")
pytest.importorskip("sklearn")
pytest.importorskip("joblib")

from openautoglm import Pipeline, Task  # noqa: E402
from openautoglm.backends.base import GenerationRequest, ScoreRequest  # noqa: E402
from openautoglm.backends.registry import create_backend, list_models  # noqa: E402
from openautoglm.optimize.student import StudentBackend  # noqa: E402
from openautoglm.errors import BackendError, OpenAutoGLMError, UnknownModelError  # noqa: E402
from openautoglm.optimize.distill import Student, distill  # noqa: E402

TASK = Task(name="sent", template="Review: {text}", labels=["positive", "negative"], format="text",
            answer_prefix="Sentiment:")
WORDS = {"positive": ["lovely", "warm", "great story", "charming"], "negative": ["dull", "tedious", "cold", "a mess"]}
PROBES = ["positive, lovely and warm", "negative: dull and tedious", "an unrelated sentence about trains"]


def _records() -> list[dict[str, str]]:
    rows = []
    for label, words in WORDS.items():
        rows += [{"text": f"{label} and {words[i % 4]} ({i})"} for i in range(12)]
    return rows


def _distill(tmp_path: Path, name: str = "student", **kwargs) -> Path:
    with Pipeline(model="fake", task=TASK, store=tmp_path / "teacher.db") as pipe:
        distill(pipe, _records(), embedder="char-ngram", out_dir=tmp_path / name, **kwargs)
    return tmp_path / name


@pytest.fixture
def student_dir(tmp_path: Path) -> Path:
    return _distill(tmp_path)


def _check_same(result: dict, expected: dict) -> None:
    """Same distribution, up to float32 embedding noise (a batch of 3 vs 1 row rounds differently)."""
    assert result["label"] == expected["label"]
    assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-9)
    for label, p in expected["scores"].items():
        assert result["scores"][label] == pytest.approx(p, rel=1e-5, abs=1e-7)
    assert result["confidence"] == pytest.approx(expected["confidence"], rel=1e-5, abs=1e-7)


def test_pipeline_on_the_student_gives_the_students_distribution(student_dir: Path, tmp_path: Path) -> None:
    student = Student.load(student_dir)
    with Pipeline(model=f"student:{student_dir}", task=TASK, store=tmp_path / "s.db") as pipe:
        results = pipe.run_batch([{"text": t} for t in PROBES])
        single = pipe.run(text=PROBES[0])
    for text, result in zip(PROBES, results):
        _check_same(result, student.classify({"text": text}))
    _check_same(single, student.classify({"text": PROBES[0]}))
    assert results[0]["label"] == "positive" and results[1]["label"] == "negative"
    assert results[0]["method"].startswith("student")  # not "logprob": the confidence is the student's


@pytest.mark.parametrize("task", [
    # chat format: "Answer with one of: ..." is appended to the user message
    Task(name="sent", template="Review: {text}", labels=["positive", "negative"]),
    # a different text task with a system line and few-shot examples before the record
    Task(name="sent", template="Review: {text}", labels=["positive", "negative"], format="text",
         system="Classify movie reviews.", answer_prefix="Label:", list_labels=True,
         examples=[{"text": "dull", "output": "negative"}, {"text": "lovely", "output": "positive"}]),
], ids=["chat", "text-few-shot"])
def test_prompts_of_other_task_shapes_are_inverted(student_dir: Path, task: Task) -> None:
    student = Student.load(student_dir)
    backend = StudentBackend(student_dir)
    for text in PROBES:
        prompt = task.build_prompt({"text": text})
        assert backend.prompt_text(prompt) == f"Review: {text}"
    with Pipeline(model=backend, task=task, store=False) as pipe:
        _check_same(pipe.run(text=PROBES[1]), student.classify({"text": PROBES[1]}))


def test_score_batch_returns_log_probabilities_of_labels(student_dir: Path) -> None:
    backend = create_backend(f"student:{student_dir}")
    assert isinstance(backend, StudentBackend) and backend.can_score and backend.deterministic
    prompt = TASK.build_prompt({"text": PROBES[0]})
    [res] = backend.score_batch([ScoreRequest(prompt, (" positive", " negative"))])
    assert res.lengths == [1, 1]
    assert sum(math.exp(lp) for lp in res.logprobs) == pytest.approx(1.0)
    expected = Student.load(student_dir).classify({"text": PROBES[0]})["scores"]
    assert math.exp(res.logprobs[0]) == pytest.approx(expected["positive"])
    assert backend.score(prompt, ["negative"]) == [pytest.approx(res.logprobs[1])]


def test_unknown_continuation_is_a_clear_error(student_dir: Path) -> None:
    backend = StudentBackend(student_dir)
    with pytest.raises(BackendError, match="no label 'neutral'") as info:
        backend.score_batch([ScoreRequest("Review: x\nSentiment:", (" positive", " neutral"))])
    assert "negative, positive" in str(info.value)
    other = Task(name="t", template="Review: {text}", labels=["positive", "neutral"], format="text")
    with Pipeline(model=backend, task=other, store=False) as pipe, pytest.raises(BackendError, match="neutral"):
        pipe.run(text="hello")


def test_generate_returns_the_most_probable_label(student_dir: Path) -> None:
    backend = StudentBackend(student_dir)
    comps = backend.generate([GenerationRequest(TASK.build_prompt({"text": t}), n=2) for t in PROBES[:2]])
    assert [c.texts for c in comps] == [["positive", "positive"], ["negative", "negative"]]


def test_verbalizers_map_continuations_to_labels(tmp_path: Path) -> None:
    task = Task(name="sent", template="Review: {text}", labels=["pos", "neg"], verbalizers={"pos": "positive",
                "neg": "negative"}, format="text", answer_prefix="Sentiment:")
    with Pipeline(model="fake", task=task, store=False) as pipe:
        distill(pipe, _records(), embedder="char-ngram", out_dir=tmp_path / "v")
    student = Student.load(tmp_path / "v")
    with Pipeline(model=f"student:{tmp_path / 'v'}", task=task, store=False) as pipe:
        result = pipe.run(text=PROBES[1])
    _check_same(result, student.classify({"text": PROBES[1]}))
    assert result["label"] == "neg"


def test_text_field_student_gets_the_field_back_from_the_prompt(tmp_path: Path) -> None:
    path = _distill(tmp_path, "tf", text_field="text")
    student = Student.load(path)
    assert student.template == "{text}"
    backend = StudentBackend(path)
    assert backend.prompt_text(TASK.build_prompt({"text": PROBES[0]})) == PROBES[0]
    with Pipeline(model=backend, task=TASK, store=False) as pipe:
        _check_same(pipe.run(text=PROBES[0]), student.classify({"text": PROBES[0]}))


def test_identity_follows_the_saved_files(tmp_path: Path) -> None:
    first = _distill(tmp_path)
    ident = StudentBackend(first).identity()
    assert ident.startswith("student:") and Student.load(first).fingerprint_ in ident
    with Pipeline(model="fake", task=TASK, store=False) as pipe:  # retrain on other data, same directory
        distill(pipe, _records()[:20] + _records()[-20:], embedder="char-ngram", out_dir=first)
    assert StudentBackend(first).identity() != ident


def test_bad_specs_are_clear(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match="needs the student's directory"):
        create_backend("student:")
    with pytest.raises(OpenAutoGLMError, match="not a saved student"):
        create_backend(f"student:{tmp_path / 'missing'}")
    rows = {r["model"]: r for r in list_models(env={})}
    assert rows["student:<dir>"]["available"] is True


def test_the_student_reads_the_records_fields_not_the_prompt(student_dir: Path) -> None:
    # a task worded unlike the one the student was distilled from: no prompt inversion can
    # recover the text, but the pipeline sends the record's fields with each request
    student = Student.load(student_dir)
    reworded = Task(name="sent", template="Tell me how this viewer felt, in one word -- {text} -- thanks!",
                    labels=["positive", "negative"], format="text", answer_prefix="Feeling:")
    backend = StudentBackend(student_dir)
    assert backend.prompt_text(reworded.build_prompt({"text": PROBES[0]})) != f"Review: {PROBES[0]}"
    with Pipeline(model=backend, task=reworded, store=False) as pipe:
        for text in PROBES:
            _check_same(pipe.run(text=text), student.classify({"text": text}))
