"""Honest label confidence over real HTTP on loopback.  An endpoint that lists only its top few
first-token alternatives (Open-AutoGLM's server with ``max_top_logprobs``) gives labels that
are not listed no measured score: then the answer comes from guided choice with logprobs,
else from votes constrained to the labels, else an error naming the fix - never the uniform
floor (``{'positive': 0.5, 'negative': 0.5}``) the estimate used to return."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import pytest

from openautoglm.backends.base import Completion, GenerationRequest, ScoreRequest, TokenLogprob
from openautoglm.backends.openai_compat import OpenAICompatBackend
from openautoglm.core.pipeline import Pipeline
from openautoglm.core.task import Task

from .fault_server import FaultController, FaultMiddleware, ServerThread, TopLogprobFake

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from openautoglm.serve.openai_api import create_openai_app  # noqa: E402

#: first tokens the served model "predicts": no label among them
OTHER_WORDS = ["the", "this", "film", "review", "it", "movie", "is"]
GUIDED_FIELDS = ("structured_outputs", "guided_choice", "guided_json", "guided_regex", "guided_grammar",
                 "response_format", "grammar", "json_schema")


class Served(TopLogprobFake):
    """The top-logprob fake, whose choice-constrained answers can report only the first word of
    the answer (as a tokenizer does when two labels share their first token)."""

    first_word_only = False

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        out = super().generate(requests)
        if self.first_word_only:
            for req, comp in zip(requests, out):
                if req.constraint is not None and comp.logprobs:
                    comp.logprobs = [[TokenLogprob(t.split()[0], 0.0, {t.split()[0]: 0.0})] for t in comp.texts]
        return out


@pytest.fixture(scope="module")
def served() -> Served:
    return Served(OTHER_WORDS, model="fake")


@pytest.fixture(scope="module")
def controller() -> FaultController:
    return FaultController()


@pytest.fixture(scope="module")
def server(served: Served, controller: FaultController) -> Iterator[ServerThread]:
    app = FaultMiddleware(create_openai_app(served, model_name="fake", max_top_logprobs=5), controller)
    with ServerThread(app) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _reset(controller: FaultController, served: Served) -> None:
    controller.reset()
    served.vocabulary = list(OTHER_WORDS)
    served.first_word_only = False


@pytest.fixture
def endpoint(server: ServerThread) -> Iterator[Any]:
    made: list[OpenAICompatBackend] = []

    def make(**options: Any) -> OpenAICompatBackend:
        options.setdefault("preset", "vllm")  # declares guided choice: no probes in the counts
        backend = OpenAICompatBackend("fake", base_url=server.base_url, timeout_s=5, max_retries=0, **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def sentiment(labels: Sequence[str] = ("positive", "negative"), **kw: Any) -> Task:
    """Text format: the prompt does not list the labels, so the served word rule can tell them apart."""
    return Task(name="sentiment", template="Review: {text}", labels=list(labels), format="text", **kw)


def run(backend: OpenAICompatBackend, text: str, task: Task | None = None) -> dict[str, Any]:
    return Pipeline(model=backend, task=task or sentiment(), store=False).run(text=text)


def test_listed_labels_keep_the_first_token_estimate(endpoint: Any, controller: FaultController,
                                                     served: Served) -> None:
    served.vocabulary = ["positive", "negative", "the", "a"]
    res = run(endpoint(), "a negative, dull film")
    assert res["method"] == "logprob-first-token-estimate" and "fallback" not in res
    assert res["label"] == "negative" and controller.hits == 1
    assert controller.bodies[0]["top_logprobs"] == 20  # asked for 20; the server lists 5


def test_no_listed_label_is_measured_by_guided_choice_with_logprobs(endpoint: Any,
                                                                    controller: FaultController) -> None:
    res = run(endpoint(), "a negative, dull film")
    assert res["method"] == "guided-choice-first-token-estimate"
    assert res["fallback"] == "no label among the first token's listed alternatives"
    assert res["label"] == "negative" and res["scores"]["negative"] > 0.7  # the served rule, measured
    assert controller.hits == 2
    guided = controller.bodies[1]
    assert guided["structured_outputs"] == {"choice": ["positive", "negative"]}
    assert guided["logprobs"] is True and guided["temperature"] == 0.0


def test_without_logprobs_for_the_choice_the_labels_are_voted(endpoint: Any, controller: FaultController,
                                                             served: Served) -> None:
    served.first_word_only = True  # both labels begin with "very": the first token measures nothing
    task = sentiment(["very good", "very bad"], n_votes=6)
    res = run(endpoint(), "a very bad and dull film", task)
    assert res["method"] == "vote-share(n=6)+guided-choice"
    assert res["unparsed_votes"] == 0 and res["label"] == "very bad"
    assert controller.hits == 3  # the estimate, the guided answer, six votes in one request
    votes = controller.bodies[2]
    assert votes["n"] == 6 and votes["temperature"] >= 0.7 and votes["structured_outputs"]["choice"]


def test_an_endpoint_that_cannot_constrain_is_an_error_naming_the_fix(endpoint: Any,
                                                                     controller: FaultController) -> None:
    controller.fields = {f: "reject" for f in GUIDED_FIELDS}
    backend = endpoint(preset=None)  # probed: nothing is taken
    with pytest.raises(Exception) as info:
        run(backend, "a negative, dull film")
    message = str(info.value)
    assert "no label ('positive', 'negative') is among the first token's listed alternatives" in message
    assert "cannot constrain an answer to the labels" in message and "score_mode='echo'" in message
    assert "0.5" not in message


def test_a_declared_choice_the_endpoint_refuses_is_voted_unconstrained_and_says_so(
        endpoint: Any, controller: FaultController) -> None:
    controller.fields = {f: "reject" for f in GUIDED_FIELDS}
    task = sentiment(answer_prefix="")  # the echoed last line is the review, which names one label
    res = run(endpoint(), "so negative", task)
    assert res["method"] == "vote-share(n=5)+unconstrained"
    assert res["fallback"] and res["unparsed_votes"] == 0 and res["label"] == "negative"


def test_a_generate_only_endpoint_votes_within_the_labels(endpoint: Any, controller: FaultController) -> None:
    res = run(endpoint(score_mode="none"), "a positive, fun film")
    assert res["method"] == "vote-share(n=5)+guided-choice" and res["unparsed_votes"] == 0
    assert res["label"] == "positive" and controller.hits == 1
    assert controller.bodies[0]["structured_outputs"] == {"choice": ["positive", "negative"]}


def test_unconstrained_votes_that_name_no_label_fail_instead_of_a_uniform_guess(endpoint: Any) -> None:
    with pytest.raises(Exception) as info:
        run(endpoint(score_mode="none", preset="ollama"), "a great film")  # echoes "Answer:"
    assert "none of the 5 sampled answers names a label" in str(info.value)


def test_before_this_change_the_estimate_was_uniform(endpoint: Any) -> None:
    """What the fallback replaces: the estimate itself gives every unlisted label the same value."""
    backend = endpoint()
    (result,) = backend.score_batch([ScoreRequest([{"role": "user", "content": "a negative film"}],
                                                  ("positive", "negative"))])
    assert result.exact is False and result.logprobs[0] == result.logprobs[1]


@pytest.mark.slow
def test_the_real_embedded_model_behind_a_top_5_endpoint_never_gives_a_uniform_default() -> None:
    """SmolLM2 through the project's server listing 5 alternatives, text-format SST-2 style reviews:
    each record is measured (the estimate where a label is listed, a constrained answer where the
    model enforces choice) or fails naming the fix - none is the uniform floor."""
    local = pytest.importorskip("openautoglm.backends.local")
    model = local.LocalBackend()
    reviews = ["it treats women like idiots .", "a gorgeous , witty , seductive movie .",
               "the acting is amateurish and the plot is a mess .", "one of the year 's best films ."]
    task = Task(name="sst2", template="Review: {text}", labels=["positive", "negative"], format="text",
                answer_prefix="Sentiment:")
    try:
        with ServerThread(create_openai_app(model, "local", max_top_logprobs=5)) as srv:
            backend = OpenAICompatBackend("local", base_url=srv.base_url, timeout_s=300, max_retries=0)
            try:
                results = Pipeline(model=backend, task=task, store=False).run_batch([{"text": r} for r in reviews])
                errors = [str(r.get("error", "")) for r in results if r.get("scores") is None]
            finally:
                backend.close()
    finally:
        model.close()
    measured = [r for r in results if r.get("scores") is not None]
    assert len(measured) + len(errors) == len(reviews)
    for r in measured:
        assert len(set(r["scores"].values())) > 1 or "vote-share" in r["method"], r
        assert r["method"] in ("logprob-first-token-estimate", "guided-choice-first-token-estimate") or \
            r["method"].startswith("vote-share")
    for error in errors:
        assert "cannot constrain an answer to the labels" in error or "names a label" in error, error
        assert "score_mode='echo'" in error
