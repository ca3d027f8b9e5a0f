"""One failing call must not fail a run: pipelines over a real HTTP endpoint on loopback
(the project's OpenAI-compatible server on a fake model, behind a fault-injecting layer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from openautoglm.backends.base import GenerationRequest, ScoreRequest
from openautoglm.backends.openai_compat import OpenAICompatBackend
from openautoglm.core.batch import run_batch
from openautoglm.core.pipeline import Pipeline
from openautoglm.core.task import Task
from openautoglm.errors import BackendError
from openautoglm.store.sqlite import Store

from .fault_server import Fault, FaultController, FaultMiddleware, ServerThread, TopLogprobFake

pytest.importorskip("fastapi")
from openautoglm.serve.openai_api import create_openai_app  # noqa: E402

VOCAB = ["positive", "negative", "movie"]
TASK = dict(name="sentiment", template="Review: {text}", labels=["positive", "negative"], format="text")


@pytest.fixture(scope="module")
def controller() -> FaultController:
    return FaultController()


@pytest.fixture(scope="module")
def server(controller: FaultController) -> Iterator[ServerThread]:
    app = FaultMiddleware(create_openai_app(TopLogprobFake(VOCAB, model="fake"), model_name="fake"), controller)
    with ServerThread(app) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _reset(controller: FaultController) -> None:
    controller.reset()


def backend(server: ServerThread, **options: Any) -> OpenAICompatBackend:
    options = {"timeout_s": 2.0, "max_retries": 4, "backoff_s": 0.001, "max_backoff_s": 0.01, **options}
    return OpenAICompatBackend("fake", base_url=server.base_url, **options)


def records(n: int) -> list[dict[str, str]]:
    return [{"text": f"{'positive' if i % 2 == 0 else 'negative'} film number {i}"} for i in range(n)]


def test_a_400_for_one_record_fails_that_record_only(server: ServerThread, controller: FaultController,
                                                     tmp_path: Path) -> None:
    controller.reject_marker = "number 7 "
    data = records(30)
    data[7]["text"] = "number 7 is refused by the content filter"
    with Store(tmp_path / "s.db") as store:
        pipe = Pipeline(model=backend(server), task=Task(**TASK), store=store)
        res = run_batch(pipe, data, run_id="r", output=tmp_path / "o.jsonl", batch_size=64)
        pipe.close()
        assert (res.done, res.failed) == (29, 1)
        assert res.errors[0][0] == 7 and "HTTP 400" in res.errors[0][1] and "content filter" in res.errors[0][1]
        assert store.get_run("r")["failed"] == 1  # type: ignore[index]
        # the 29 good records were each asked once: their answers were kept while record 7 was isolated
        assert controller.paths["/v1/chat/completions"] == 30


def test_transient_faults_are_retried_and_nothing_is_lost(server: ServerThread, controller: FaultController,
                                                          tmp_path: Path) -> None:
    controller.random_faults(0.4, [Fault("status", status=500), Fault("status", status=429), Fault("malformed"),
                                   Fault("close")], seed=7)
    with Store(tmp_path / "s.db") as store:
        pipe = Pipeline(model=backend(server, max_retries=8, breaker_threshold=0), task=Task(**TASK), store=store)
        res = run_batch(pipe, records(40), run_id="t", batch_size=64)
        pipe.close()
    assert sum(controller.injected.values()) > 10  # the faults did happen
    assert res.failed == 0 and res.done == 40
    assert [r["label"] for r in res.results] == ["positive" if i % 2 == 0 else "negative" for i in range(40)]


@pytest.mark.parametrize("logprobs", [
    {"content": "x"},
    "x",
    {"content": [{"token": "a", "logprob": "NaN-ish"}]},
    {"content": [{"token": "a", "logprob": float("nan")}]},
    {"content": [{"token": "a", "logprob": 3.0}]},
    {"content": [{"token": "a", "logprob": -1.0, "top_logprobs": [["a", -1.0]]}]},
    {"content": [None]},
])
def test_malformed_logprobs_become_a_recorded_error(server: ServerThread, controller: FaultController,
                                                    logprobs: Any) -> None:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "a"}, "logprobs": logprobs}]}
    controller.inject("json", body=body)
    client = backend(server)
    try:
        (outcome,) = client.score_each([ScoreRequest("Review: ok", (" positive", " negative"))])
    finally:
        client.close()
    assert isinstance(outcome, BackendError) and "malformed response" in str(outcome)


@pytest.mark.parametrize("body", [
    {"choices": "nope"},
    {"choices": [{"index": 0, "message": "just a string"}]},
    {"choices": [{"index": "0", "message": {"content": "x"}}]},
    {"choices": [{"index": 0, "message": {"content": {"nested": True}}}]},
])
def test_malformed_chat_answers_become_a_recorded_error(server: ServerThread, controller: FaultController,
                                                        body: Any) -> None:
    controller.inject("json", body=body)
    client = backend(server)
    try:
        (outcome,) = client.generate_each([GenerationRequest("hi", max_tokens=4)])
    finally:
        client.close()
    assert isinstance(outcome, BackendError)


def test_a_huge_record_fails_alone_before_it_is_sent(server: ServerThread, controller: FaultController) -> None:
    client = backend(server)
    try:
        huge = GenerationRequest("x" * (client.max_context * 40), max_tokens=4)
        small = GenerationRequest("hello", max_tokens=4)
        first, second = client.generate_each([huge, small])
    finally:
        client.close()
    assert isinstance(first, BackendError) and "cannot fit" in str(first)
    assert not isinstance(second, BackendError) and second.text
    assert controller.hits == 1  # only the small one went out


def test_the_cache_key_covers_the_score_mode(server: ServerThread, tmp_path: Path) -> None:
    top, echo = backend(server, score_mode="top_logprobs"), backend(server, score_mode="echo")
    try:
        assert top.identity() != echo.identity()
        assert backend(server, extra_headers={"X-Route": "a"}).identity() != top.identity()
        with Store(tmp_path / "s.db") as store:
            first = Pipeline(model=top, task=Task(**TASK), store=store).run(text="a positive film")
            second = Pipeline(model=echo, task=Task(**TASK), store=store).run(text="a positive film")
        # a stale cache hit would carry the estimate's method (and its 0.5/0.5 when no label was listed)
        assert "first-token-estimate" in first["method"] and "first-token-estimate" not in second["method"]
    finally:
        top.close()
        echo.close()
