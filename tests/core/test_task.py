"""Task logic on the deterministic FakeBackend: label distributions, calibration,
vote share, verbalizers, few-shot prompts and JSON extraction with re-asking."""

from __future__ import annotations

import math
from typing import Any, Sequence

import pytest
from pydantic import BaseModel, ValidationError

from openautoglm.backends.base import Completion, Constraint, GenerationRequest, ScoreRequest, ScoreResult
from openautoglm.backends.fake import FakeBackend
from openautoglm.core.client import ModelClient
from openautoglm.core.labels import calibrate, distribution_from_logprobs, match_label, softmax
from openautoglm.core.pipeline import Pipeline
from openautoglm.core.outputs import NEUTRAL_INPUTS, content_free_inputs
from openautoglm.core.task import CONTENT_FREE_INPUTS, Task


class RecordingFake(FakeBackend):
    """FakeBackend that remembers every request and completion it saw."""

    def __init__(self, *args: Any, json_schema: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.supports_json_schema = json_schema
        self.gen_requests: list[GenerationRequest] = []
        self.gen_batches: list[int] = []
        self.completions: list[Completion] = []
        self.score_requests: list[ScoreRequest] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        self.gen_requests += list(requests)
        self.gen_batches.append(len(requests))
        out = super().generate(requests)
        self.completions += out
        return out

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        self.score_requests += list(requests)
        return super().score_batch(requests)


def run_one(backend: Any, task: Task, **record: Any) -> dict[str, Any]:
    return Pipeline(model=backend, task=task, store=False).run(record)


def sentiment(**kw: Any) -> Task:
    base: dict[str, Any] = dict(name="sentiment", template="Review: {text}", labels=["positive", "negative"],
                                format="text")
    base.update(kw)
    return Task(**base)


# -- distributions from scores --------------------------------------------------------


def test_label_distribution_sums_to_one_and_follows_the_evidence() -> None:
    res = run_one(FakeBackend(), sentiment(), text="a positive film")
    assert res["label"] == "positive"
    assert res["method"] == "logprob"
    assert set(res["scores"]) == {"positive", "negative"}
    assert math.isclose(sum(res["scores"].values()), 1.0, rel_tol=1e-9)
    # fake: -2 per word + 1.5 per word present in the prompt
    expected = softmax([-0.5, -2.0])
    assert res["scores"]["positive"] == pytest.approx(expected[0])
    assert res["confidence"] == pytest.approx(expected[0])


def test_confidence_is_not_a_constant() -> None:
    task = sentiment()
    a = run_one(FakeBackend(), task, text="a positive film")
    b = run_one(FakeBackend(), task, text="a negative film")
    c = run_one(FakeBackend(), task, text="a film")
    assert a["label"] == "positive" and b["label"] == "negative"
    assert c["scores"]["positive"] == pytest.approx(0.5)
    assert a["confidence"] != c["confidence"]


def test_length_normalisation_when_labels_differ_in_token_length() -> None:
    task = sentiment(labels=["good", "very bad"])
    res = run_one(FakeBackend(), task, text="very bad film")
    assert res["method"] == "logprob-length-normalised"
    # raw: good -2, "very bad" -4+3 = -1 (2 tokens) -> normalised -0.5
    assert res["scores"]["very bad"] == pytest.approx(softmax([-2.0, -0.5])[1])
    assert res["scores"]["very bad"] != pytest.approx(softmax([-2.0, -1.0])[1])
    assert sum(res["scores"].values()) == pytest.approx(1.0)


def test_distribution_from_logprobs_unit() -> None:
    probs, norm = distribution_from_logprobs([-1.0, -1.0], [1, 1])
    assert not norm and probs == pytest.approx([0.5, 0.5])
    probs, norm = distribution_from_logprobs([-2.0, -2.0], [1, 2])
    assert norm and probs[1] > probs[0]
    assert calibrate([0.8, 0.2], [0.8, 0.2]) == pytest.approx([0.5, 0.5])
    assert sum(calibrate([0.6, 0.3, 0.1], [0.2, 0.5, 0.3])) == pytest.approx(1.0)


def test_contextual_calibration_changes_the_distribution() -> None:
    # the template itself mentions "positive", so the content-free input favours it too
    kw = dict(template="Is this review positive? {text}")
    plain = run_one(FakeBackend(), sentiment(**kw), text="a boring film")
    assert plain["method"] == "logprob"
    assert plain["scores"]["positive"] == pytest.approx(softmax([-0.5, -2.0])[0])

    backend = RecordingFake()
    task = sentiment(calibrate=True, **kw)
    client = ModelClient(backend)
    [cal] = task.run_many(client, [{"text": "a boring film"}], step="s", record_keys=["0"])
    assert cal["method"] == "logprob+contextual-calibration"
    assert cal["scores"]["positive"] == pytest.approx(0.5)  # the bias is divided out
    assert cal["scores"]["positive"] != pytest.approx(plain["scores"]["positive"])
    assert sum(cal["scores"].values()) == pytest.approx(1.0)
    # one scoring request per content-free input, traced under their own step name
    cf_prompts = [r.prompt for r in backend.score_requests[1:]]
    neutral = content_free_inputs(task)  # English: neutral sentences (issue 19)
    assert neutral == NEUTRAL_INPUTS["en"] and len(cf_prompts) == len(neutral)
    assert any(neutral[0] in p for p in cf_prompts)
    steps = [c.step for c in client.calls]
    assert steps.count("s") == 1 and steps.count("s:calibration") == len(neutral)
    zh = Task(name="s", template="判断情感：{text}", labels=["正面", "负面"], calibrate=True)
    assert content_free_inputs(zh) == CONTENT_FREE_INPUTS  # not measured in Chinese: Zhao et al.'s inputs


def test_calibration_can_flip_a_biased_prediction() -> None:
    # prompt mentions "positive" twice via the template; evidence for "negative" in the input
    task = sentiment(template="positive? {text}", calibrate=True)
    res = run_one(FakeBackend(), task, text="negative")
    assert res["method"].endswith("+contextual-calibration")
    # both words present -> equal raw scores; the content-free prompt favours "positive",
    # so calibration must move mass to "negative"
    assert res["scores"]["negative"] > 0.5
    assert res["label"] == "negative"


def test_first_token_estimate_is_flagged_in_method() -> None:
    class Estimating(FakeBackend):
        def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
            out = super().score_batch(requests)
            for r in out:
                r.exact = False
            return out

    res = run_one(Estimating(), sentiment(), text="positive")
    assert res["method"] == "logprob-first-token-estimate"


class Unlisted(FakeBackend):
    """Scores as a top-k estimate that lists no label: every label the same floor value."""

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        return [ScoreResult([-9.0] * len(r.continuations), [1] * len(r.continuations), exact=False)
                for r in requests]


def test_an_estimate_that_measured_nothing_is_never_returned_as_a_distribution() -> None:
    res = run_one(Unlisted(), sentiment(), text="a negative film")  # the fake enforces choice, with logprobs
    assert res["method"] == "guided-choice-first-token-estimate" and res["fallback"]
    assert res["label"] == "negative" and res["scores"]["negative"] > res["scores"]["positive"]
    with pytest.raises(Exception, match="cannot constrain an answer to the labels"):
        run_one(Unlisted(constraints=()), sentiment(), text="a negative film")


def test_equal_exact_scores_are_a_measurement() -> None:
    class Tied(FakeBackend):
        def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
            return [ScoreResult([-1.0, -1.0], [1, 1]) for _ in requests]

    res = run_one(Tied(), sentiment(), text="x")  # exact scores that happen to tie: kept
    assert res["method"] == "logprob" and res["scores"] == {"positive": 0.5, "negative": 0.5}


def test_calibration_by_an_unmeasured_content_free_input_is_skipped_and_said() -> None:
    res = run_one(Unlisted(), sentiment(calibrate=True), text="a negative film")
    assert res["method"] == "guided-choice-first-token-estimate"  # the record itself fell back: no calibration

    class ContentFreeUnlisted(FakeBackend):
        def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
            out = super().score_batch(requests)
            for req, r in zip(requests, out):
                r.exact = False
                if any(n in str(req.prompt) for n in ("N/A", "[MASK]", "Review: \n", *NEUTRAL_INPUTS["en"])):
                    r.logprobs = [-9.0] * len(r.logprobs)
            return out

    res = run_one(ContentFreeUnlisted(), sentiment(calibrate=True), text="a negative film")
    assert res["method"] == "logprob-first-token-estimate+calibration-skipped(content-free-unmeasured)"


# -- vote share ---------------------------------------------------------------------


def test_vote_share_when_backend_cannot_score() -> None:
    backend = RecordingFake(responses=["positive", "Positive.", "negative", "no idea", "positive"], can_score=False)
    res = run_one(backend, sentiment(), text="whatever")
    assert res["method"] == "vote-share(n=5)+unconstrained"  # scripted answers: the fake enforces nothing
    assert res["label"] == "positive"
    assert res["scores"] == pytest.approx({"positive": 0.75, "negative": 0.25})
    assert res["unparsed_votes"] == 1
    assert sum(res["scores"].values()) == pytest.approx(1.0)
    [req] = backend.gen_requests
    assert req.n == 5 and req.temperature >= 0.7
    assert not backend.score_requests


def test_vote_share_all_unparsed_fails_instead_of_a_uniform_guess() -> None:
    backend = FakeBackend(responses=["hmm", "maybe"], can_score=False)
    with pytest.raises(Exception) as info:
        run_one(backend, sentiment(n_votes=4), text="x")
    error = str(info.value)
    assert "none of the 4 sampled answers names a label" in error and "no distribution was measured" in error
    assert "score_mode='echo'" in error  # the hint names the fixes


def test_vote_share_constrained_to_the_labels_when_the_backend_enforces_choice() -> None:
    backend = RecordingFake(can_score=False)  # the rule-following fake enforces choice
    res = run_one(backend, sentiment(n_votes=6), text="a negative and dull film")
    assert res["method"] == "vote-share(n=6)+guided-choice"
    assert res["unparsed_votes"] == 0
    [req] = backend.gen_requests
    assert req.constraint == Constraint.choice(["positive", "negative"]) and req.n == 6
    assert res["label"] == "negative" and sum(res["scores"].values()) == pytest.approx(1.0)


def test_vote_share_with_verbalizers() -> None:
    task = sentiment(labels=["pos", "neg"], verbalizers={"pos": "great", "neg": "awful"}, n_votes=3)
    backend = FakeBackend(responses=["Great!", "awful", "great"], can_score=False)
    res = run_one(backend, task, text="x")
    assert res["label"] == "pos"
    assert res["scores"] == pytest.approx({"pos": 2 / 3, "neg": 1 / 3})
    assert res["unparsed_votes"] == 0


def test_match_label_rules() -> None:
    labels = ["positive", "negative", "very negative"]
    assert match_label("POSITIVE", labels) == "positive"
    assert match_label("negative, because ...", labels) == "negative"
    assert match_label("I'd say very negative", labels) == "very negative"
    assert match_label("both positive and negative", labels) is None
    assert match_label("", labels) is None
    # the longest prefix wins
    assert match_label("negative sentiment", ["neg", "negative"]) == "negative"
    assert match_label("正面情感", ["正面", "负面"]) == "正面"


# -- verbalizers and prompt building ---------------------------------------------------


def test_verbalizers_are_scored_but_labels_are_returned() -> None:
    task = sentiment(labels=["pos", "neg"], verbalizers={"pos": "great", "neg": "terrible"})
    backend = RecordingFake()
    res = run_one(backend, task, text="a terrible film")
    assert res["label"] == "neg"
    assert set(res["scores"]) == {"pos", "neg"}
    assert backend.score_requests[0].continuations == (" great", " terrible")  # text format: leading space


def test_chat_format_continuations_and_label_listing() -> None:
    task = Task(template="Review: {text}", labels=["pos", "neg"], verbalizers={"pos": "great"})
    backend = RecordingFake()
    run_one(backend, task, text="fine")
    req = backend.score_requests[0]
    assert req.continuations == ("great", "neg")
    assert isinstance(req.prompt, list)
    assert req.prompt[-1]["content"] == "Review: fine\nAnswer with one of: great, neg."
    unlisted = Task(template="Review: {text}", labels=["pos", "neg"], list_labels=False)
    assert unlisted.build_prompt({"text": "fine"}) == [{"role": "user", "content": "Review: fine"}]


def test_verbalizer_for_unknown_label_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown labels"):
        sentiment(verbalizers={"neutral": "meh"})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(labels=["only"]), "at least two labels"),
        (dict(labels=["a", "a"]), "unique"),
        (dict(labels=None, output="labels"), "labels"),
        (dict(labels=None, output="json"), "schema"),
        (dict(bogus=1), "bogus"),
    ],
)
def test_task_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        sentiment(**kwargs)


def test_output_kind_inferred() -> None:
    assert sentiment().output == "labels"
    assert Task(template="x {t}", schema={"type": "object"}).output == "json"
    assert Task(template="x {t}").output == "text"
    assert Task(template="x {t}").input_variables == {"t"}


EXAMPLES = [{"text": "loved it", "label": "pos"}, {"text": "hated it", "label": "neg"}]


def test_few_shot_examples_chat_format() -> None:
    task = Task(template="Review: {text}", labels=["pos", "neg"], verbalizers={"pos": "good", "neg": "bad"},
                system="You label reviews.", examples=EXAMPLES)
    msgs = task.build_prompt({"text": "meh"})
    suffix = "\nAnswer with one of: good, bad."
    assert msgs == [
        {"role": "system", "content": "You label reviews."},
        {"role": "user", "content": "Review: loved it" + suffix},
        {"role": "assistant", "content": "good"},
        {"role": "user", "content": "Review: hated it" + suffix},
        {"role": "assistant", "content": "bad"},
        {"role": "user", "content": "Review: meh" + suffix},
    ]


def test_few_shot_examples_text_format() -> None:
    task = sentiment(labels=["pos", "neg"], system="Label reviews.", examples=EXAMPLES)
    assert task.build_prompt({"text": "meh"}) == (
        "Label reviews.\n\n"
        "Review: loved it\nAnswer: pos\n\n"
        "Review: hated it\nAnswer: neg\n\n"
        "Review: meh\nAnswer:"
    )
    bare = sentiment(answer_prefix="", examples=EXAMPLES[:1], labels=["pos", "neg"])
    assert bare.build_prompt({"text": "meh"}) == "Review: loved it pos\n\nReview: meh"


def test_few_shot_json_example_output_is_serialised() -> None:
    task = Task(template="Text: {text}", schema={"type": "object"},
                examples=[{"text": "Ann, 31", "output": {"name": "Ann", "age": 31}}])
    msgs = task.build_prompt({"text": "Bob"})
    assert msgs[1] == {"role": "assistant", "content": '{"name": "Ann", "age": 31}'}
    assert "JSON schema" in msgs[0]["content"]


def test_few_shot_example_without_output_is_an_error() -> None:
    task = sentiment(examples=[{"text": "no answer here"}])
    from openautoglm.errors import OpenAutoGLMError

    with pytest.raises(OpenAutoGLMError, match="lacks an 'output'"):
        task.build_prompt({"text": "x"})


def test_text_output() -> None:
    backend = RecordingFake()
    res = run_one(backend, Task(template="Summarise: {text}", max_tokens=50), text="a b c")
    assert res["text"] == "echo: Summarise: a b c"
    assert res["tokens"] == 4 + 5  # prompt + completion, as for JSON attempts
    assert backend.gen_requests[0].max_tokens == 50


def test_to_config_round_trip() -> None:
    task = sentiment(verbalizers={"positive": "good"}, calibrate=True)
    cfg = task.to_config()
    assert cfg["template"] == "Review: {text}"
    assert "prompt_template" not in cfg
    again = Task(**cfg)
    assert again == task


# -- JSON extraction ---------------------------------------------------------------------


class Person(BaseModel):
    name: str
    age: int


DICT_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def extractor(schema: Any, **kw: Any) -> Task:
    return Task(name="extract", template="Extract the person: {text}", schema=schema, **kw)


def _tokens(comps: list[Completion]) -> int:
    return sum(c.prompt_tokens + c.completion_tokens for c in comps)


@pytest.mark.parametrize("schema", [Person, DICT_SCHEMA], ids=["pydantic", "dict"])
def test_json_valid_first_try(schema: Any) -> None:
    backend = RecordingFake(responses=['Sure:\n```json\n{"name": "Ann", "age": 31}\n```'])
    res = run_one(backend, extractor(schema), text="Ann is 31")
    assert res["valid"] is True
    assert res["output"] == {"name": "Ann", "age": 31}
    assert res["attempts"] == 1
    assert "failed_attempts" not in res
    assert res["tokens"] == _tokens(backend.completions) > 0
    assert len(backend.gen_requests) == 1
    assert backend.gen_requests[0].json_schema is None  # fake does not support constrained decoding
    assert "JSON schema" in backend.gen_requests[0].prompt[-1]["content"]


@pytest.mark.parametrize("schema", [Person, DICT_SCHEMA], ids=["pydantic", "dict"])
def test_json_reask_after_invalid_json(schema: Any) -> None:
    backend = RecordingFake(responses=["I cannot find {a person", '{"name": "Ann", "age": 31}'])
    res = run_one(backend, extractor(schema), text="Ann is 31")
    assert res["valid"] is True
    assert res["output"] == {"name": "Ann", "age": 31}
    assert res["attempts"] == 2
    assert len(backend.completions) == 2
    assert res["tokens"] == _tokens(backend.completions)
    assert res["tokens"] > _tokens(backend.completions[1:])
    [failed] = res["failed_attempts"]
    assert failed["attempt"] == 0
    assert "no valid JSON" in failed["errors"][0]
    reask = backend.gen_requests[1].prompt
    assert reask[-2] == {"role": "assistant", "content": "I cannot find {a person"}
    assert "no valid JSON object" in reask[-1]["content"]
    assert "Traceback" not in reask[-1]["content"]


@pytest.mark.parametrize(
    "schema, expected_error",
    [(Person, "age: Input should be a valid integer"), (DICT_SCHEMA, "(root).age: expected integer, got str")],
    ids=["pydantic", "dict"],
)
def test_json_reask_after_schema_violation(schema: Any, expected_error: str) -> None:
    bad = '{"name": "Ann", "age": "thirty-one"}'
    backend = RecordingFake(responses=[bad, '{"name": "Ann", "age": 31}'])
    res = run_one(backend, extractor(schema), text="Ann is 31")
    assert res["valid"] is True and res["attempts"] == 2
    assert res["tokens"] == _tokens(backend.completions)
    assert any(expected_error in e for e in res["failed_attempts"][0]["errors"])
    feedback = backend.gen_requests[1].prompt[-1]["content"]
    assert expected_error in feedback
    assert "Reply with only the corrected JSON object" in feedback
    for leak in ("Traceback", 'File "', "pydantic_core", "ValidationError", "https://errors.pydantic.dev"):
        assert leak not in feedback


def test_json_reask_in_text_format_appends_to_the_prompt() -> None:
    backend = RecordingFake(responses=['{"name": "Ann"}', '{"name": "Ann", "age": 31}'])
    res = run_one(backend, extractor(DICT_SCHEMA, format="text"), text="Ann")
    assert res["attempts"] == 2
    second = backend.gen_requests[1].prompt
    assert isinstance(second, str)
    assert second.startswith(backend.gen_requests[0].prompt + ' {"name": "Ann"}')
    assert "(root).age: required field missing" in second


@pytest.mark.parametrize("schema", [Person, DICT_SCHEMA], ids=["pydantic", "dict"])
def test_json_exhausting_retries_gives_invalid(schema: Any) -> None:
    backend = RecordingFake(responses=['{"name": 5}'])
    res = run_one(backend, extractor(schema, max_retries=2), text="?")
    assert res["valid"] is False
    assert res["output"] is None
    assert res["attempts"] == 3
    assert len(backend.gen_requests) == 3
    assert res["errors"]
    assert [f["attempt"] for f in res["failed_attempts"]] == [0, 1, 2]
    assert res["tokens"] == _tokens(backend.completions)


def test_json_max_retries_zero_means_one_attempt() -> None:
    backend = RecordingFake(responses=["nope"])
    res = run_one(backend, extractor(Person, max_retries=0), text="?")
    assert res["valid"] is False and res["attempts"] == 1
    assert "failed_attempts" not in res


def test_json_batch_only_reasks_the_failures() -> None:
    # calls are numbered in order: record 0 valid, record 1 invalid, then record 1's re-ask valid
    backend = RecordingFake(responses=['{"name": "A", "age": 1}', "garbage", '{"name": "B", "age": 2}'])
    task = extractor(Person)
    out = task.run_many(ModelClient(backend), [{"text": "A"}, {"text": "B"}], step="x", record_keys=["0", "1"])
    assert backend.gen_batches == [2, 1]
    assert out[0]["attempts"] == 1 and out[0]["output"] == {"name": "A", "age": 1}
    assert out[1]["attempts"] == 2 and out[1]["output"] == {"name": "B", "age": 2}


def test_json_schema_passed_to_backends_that_support_it() -> None:
    backend = RecordingFake(responses=['{"name": "A", "age": 1}'], json_schema=True)
    run_one(backend, extractor(Person), text="A")
    assert backend.gen_requests[0].json_schema == Person.model_json_schema()


def test_dict_schema_validation_details() -> None:
    from openautoglm.core.schema import OutputSchema, extract_json

    s = OutputSchema({"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
        "n": {"type": "number"}, "flag": {"type": "boolean"}}})
    assert s.validate({"tags": ["a"], "n": 1.5, "flag": True}) == ({"tags": ["a"], "n": 1.5, "flag": True}, [])
    _, errs = s.validate({"tags": ["c", 3], "n": True})
    assert "(root).tags[0]: must be one of ['a', 'b']" in errs
    assert "(root).tags[1]: expected string, got int" in errs
    assert "(root).n: expected number, got bool" in errs
    assert extract_json('text [1, 2] and {"a": 1}') == ([1, 2], None)
    value, err = extract_json("no json here")
    assert value is None and "no valid JSON" in err
    with pytest.raises(TypeError):
        OutputSchema("not a schema")
