"""OpenAICompatBackend against a real uvicorn server on 127.0.0.1 serving
``create_openai_app(FakeBackend)`` behind a fault-injection layer."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Iterator

import httpx
import pytest

from openautoglm.backends.base import GenerationRequest, ScoreRequest
from openautoglm.backends.openai_compat import (
    OpenAICompatBackend,
    estimate_first_token_logprob,
    render_chat_text,
)
from openautoglm.backends.presets import PRESETS, availability, preset_for
from openautoglm.errors import BackendError, ConfigError, EndpointUnavailable, UnknownModelError

from .fault_server import FaultController, FaultMiddleware, ServerThread, TopLogprobFake, closed_port

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from openautoglm.serve.openai_api import create_openai_app  # noqa: E402

VOCAB = ["great", "terrible", "fun", "boring", "movie"]
SECRET = "sk-test-SECRET-0123456789"


@pytest.fixture(scope="module")
def served() -> TopLogprobFake:
    return TopLogprobFake(VOCAB, model="fake")


@pytest.fixture(scope="module")
def controller() -> FaultController:
    return FaultController()


@pytest.fixture(scope="module")
def server(served: TopLogprobFake, controller: FaultController) -> Iterator[ServerThread]:
    app = FaultMiddleware(create_openai_app(served, model_name="fake"), controller)
    with ServerThread(app) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _reset(controller: FaultController) -> None:
    controller.reset()


@pytest.fixture
def make_backend(server: ServerThread) -> Iterator[Any]:
    """Backends with test-sized timeouts/backoffs, closed after the test."""
    made: list[OpenAICompatBackend] = []

    def make(**options: Any) -> OpenAICompatBackend:
        options.setdefault("base_url", server.base_url)
        options.setdefault("timeout_s", 2.0)
        options.setdefault("max_retries", 3)
        options.setdefault("backoff_s", 0.01)
        options.setdefault("max_backoff_s", 0.05)
        backend = OpenAICompatBackend(options.pop("model", "fake"), **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


# --------------------------------------------------------------------------- generation


def test_generation_round_trip_with_usage(make_backend: Any, controller: FaultController) -> None:
    backend = make_backend()
    out = backend.generate([GenerationRequest(chat("hello there"), max_tokens=20), GenerationRequest("plain text")])
    assert [c.text for c in out] == ["echo: hello there", "echo: plain text"]
    assert out[0].finish_reasons == ["stop"]
    assert out[0].prompt_tokens == 4  # FakeBackend counts words of all messages
    assert out[0].completion_tokens == 3
    assert out[1].prompt_tokens == 2
    assert all(c.latency_s > 0 for c in out)
    assert controller.paths["/v1/chat/completions"] == 2
    sent = controller.bodies[0] if controller.bodies[0]["messages"][0]["role"] == "system" else controller.bodies[1]
    assert sent["max_tokens"] == 20 and sent["temperature"] == 0.0 and sent["model"] == "fake"


def test_request_parameters_are_mapped(make_backend: Any, controller: FaultController) -> None:
    schema = {"type": "object", "properties": {"label": {"type": "string"}}}
    req = GenerationRequest("hi", max_tokens=7, temperature=0.7, top_p=0.9, stop=("\n",), seed=3, json_schema=schema)
    make_backend().generate([req])
    body = controller.bodies[-1]
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (7, 0.7, 0.9, 3)
    assert body["stop"] == ["\n"]
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


def test_n_samples_in_one_request(make_backend: Any, controller: FaultController) -> None:
    (comp,) = make_backend().generate([GenerationRequest("say it", n=3, temperature=1.0)])
    assert len(comp.texts) == 3 and len(comp.finish_reasons) == 3
    assert controller.hits == 1


def test_n_samples_fall_back_to_separate_requests(make_backend: Any, controller: FaultController) -> None:
    one_choice = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "first"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2, "completion_tokens": 1},
    }
    controller.inject("json", body=one_choice)
    backend = make_backend()
    (comp,) = backend.generate([GenerationRequest("say it", n=3, seed=10)])
    assert comp.texts[0] == "first" and len(comp.texts) == 3
    assert controller.hits == 3
    assert [b.get("seed") for b in controller.bodies[1:]] and all("n" not in b for b in controller.bodies[1:])
    assert comp.prompt_tokens == 2 + 2 * 2  # usage summed over the three requests
    controller.reset()
    backend.generate([GenerationRequest("again", n=2)])  # now asks one sample per request
    assert controller.hits == 2 and all("n" not in b for b in controller.bodies)


def test_logprobs_are_mapped(make_backend: Any, served: TopLogprobFake) -> None:
    (comp,) = make_backend().generate([GenerationRequest("a great fun movie", logprobs=True, max_tokens=5)])
    assert comp.logprobs is not None and len(comp.logprobs) == 1
    first = comp.logprobs[0][0]
    assert first.token.strip() in VOCAB and first.logprob <= 0
    assert set(first.top) == {" " + w for w in VOCAB}


# --------------------------------------------------------------------------- retries


def test_transient_500s_are_retried(make_backend: Any, controller: FaultController) -> None:
    controller.inject("status", times=2, status=500)
    (comp,) = make_backend().generate([GenerationRequest("retry me")])
    assert comp.text == "echo: retry me"
    assert controller.hits == 3


def test_429_honours_retry_after(make_backend: Any, controller: FaultController) -> None:
    controller.inject("status", status=429, retry_after="1")
    controller.inject("status", status=429)  # no header: exponential backoff
    backend = make_backend(max_backoff_s=5.0)
    t0 = time.monotonic()
    (comp,) = backend.generate([GenerationRequest("rate limited")])
    assert comp.text == "echo: rate limited"
    assert controller.hits == 3
    assert time.monotonic() - t0 >= 0.9  # waited as told, although backoff_s is 0.01


def test_retry_after_is_capped_by_max_backoff(make_backend: Any, controller: FaultController) -> None:
    controller.inject("status", status=503, retry_after="3600")
    (comp,) = make_backend(max_backoff_s=0.05).generate([GenerationRequest("x")])
    assert comp.text == "echo: x" and controller.hits == 2


def test_timeouts_are_retried(make_backend: Any, controller: FaultController) -> None:
    controller.inject("sleep", seconds=1.0)
    (comp,) = make_backend(timeout_s=0.3).generate([GenerationRequest("slow")])
    assert comp.text == "echo: slow"
    assert controller.hits >= 2  # retried (a busy machine can time out the echo too: a third try)


def test_timeouts_exhausted(make_backend: Any, controller: FaultController) -> None:
    controller.inject("sleep", times=2, seconds=1.0)
    with pytest.raises(BackendError, match="did not answer within 0.3s") as info:
        make_backend(timeout_s=0.3, max_retries=1).generate([GenerationRequest("slow")])
    assert "after 2 attempts" in str(info.value)
    # the client's count is the one that matters: on a busy machine the second request can time
    # out before the server has dispatched it (then the server saw 1), but never more than 2
    assert 1 <= controller.hits <= 2


@pytest.mark.parametrize("kind", ["malformed", "close"])
def test_malformed_body_and_dropped_connection_are_retried(
    make_backend: Any, controller: FaultController, kind: str
) -> None:
    controller.inject(kind)
    (comp,) = make_backend().generate([GenerationRequest("fragile")])
    assert comp.text == "echo: fragile"
    assert controller.hits == 2


def test_client_errors_are_not_retried(make_backend: Any, controller: FaultController, server: ServerThread) -> None:
    backend = make_backend(model="no-such-model")
    with pytest.raises(BackendError) as info:
        backend.generate([GenerationRequest("hi")])
    message = str(info.value)
    assert controller.hits == 1
    assert f"{server.base_url}/chat/completions" in message and "HTTP 404" in message
    assert "does not exist" in message  # the server's own message
    assert "check the model name 'no-such-model'" in message
    assert not isinstance(info.value, EndpointUnavailable)


def test_retries_exhausted_name_status_and_attempts(make_backend: Any, controller: FaultController) -> None:
    controller.inject("status", times=3, status=502, message="bad gateway upstream")
    with pytest.raises(BackendError) as info:
        make_backend(max_retries=2).generate([GenerationRequest("hi")])
    assert "HTTP 502: bad gateway upstream (after 3 attempts)" in str(info.value)
    assert controller.hits == 3


# --------------------------------------------------------------------------- circuit breaker


def test_circuit_breaker_opens_fails_fast_and_recovers(make_backend: Any, controller: FaultController) -> None:
    backend = make_backend(max_retries=0, breaker_threshold=2, breaker_cooldown_s=0.4)
    controller.inject("status", times=2, status=500)
    for _ in range(2):
        with pytest.raises(BackendError, match="HTTP 500"):
            backend.generate([GenerationRequest("x")])
    assert controller.hits == 2
    with pytest.raises(EndpointUnavailable) as info:
        backend.generate([GenerationRequest("x")])
    assert controller.hits == 2  # failed fast, the server never saw it
    assert backend.base_url in str(info.value) and "retrying in" in str(info.value)
    assert backend.describe()["breaker"] == "open"

    time.sleep(0.5)  # let the cooldown pass: the next call is the half-open trial
    assert backend.describe()["breaker"] == "half_open"
    controller.inject("status", status=500)
    with pytest.raises(BackendError, match="HTTP 500"):
        backend.generate([GenerationRequest("trial")])
    with pytest.raises(EndpointUnavailable):  # a failed trial re-opens at once
        backend.generate([GenerationRequest("x")])
    assert controller.hits == 3

    time.sleep(0.5)
    (comp,) = backend.generate([GenerationRequest("recovered")])
    assert comp.text == "echo: recovered" and controller.hits == 4
    assert backend.describe()["breaker"] == "closed"


def test_client_errors_do_not_trip_the_breaker(make_backend: Any, controller: FaultController) -> None:
    backend = make_backend(model="missing", max_retries=0, breaker_threshold=1)
    for _ in range(3):
        with pytest.raises(BackendError, match="HTTP 404"):
            backend.generate([GenerationRequest("x")])
    assert controller.hits == 3 and backend.describe()["breaker"] == "closed"


def test_unreachable_endpoint() -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    backend = OpenAICompatBackend("m", base_url=base_url, max_retries=1, backoff_s=0.01, timeout_s=2)
    try:
        with pytest.raises(EndpointUnavailable) as info:
            backend.generate([GenerationRequest("anyone?")])
    finally:
        backend.close()
    assert base_url in str(info.value)
    assert "is the server running?" in str(info.value) and "after 2 attempts" in str(info.value)


# --------------------------------------------------------------------------- api key


def test_api_key_sent_as_bearer_and_never_shown(
    make_backend: Any, controller: FaultController, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller.required_key = SECRET
    monkeypatch.setenv("TEST_OAG_KEY", SECRET)
    backend = make_backend(api_key_env="TEST_OAG_KEY")
    (comp,) = backend.generate([GenerationRequest("authorised")])
    assert comp.text == "echo: authorised"
    assert controller.authorizations[-1] == f"Bearer {SECRET}"
    shown = [repr(backend), json.dumps(backend.describe()), backend.identity()]
    assert not any(SECRET in s for s in shown)
    assert backend.describe()["api_key_set"] is True

    # a server that echoes the key back in its error message: redacted
    controller.inject("status", status=400, message=f"bad request for key {SECRET}")
    with pytest.raises(BackendError) as info:
        backend.generate([GenerationRequest("x")])
    assert SECRET not in str(info.value) and "***" in str(info.value)

    wrong = make_backend(api_key="sk-wrong-key-987654")
    with pytest.raises(BackendError) as info:
        wrong.generate([GenerationRequest("x")])
    assert "HTTP 401" in str(info.value) and "sk-wrong-key-987654" not in str(info.value)
    assert "check the API key" in str(info.value)


def test_custom_base_url_never_gets_a_preset_key(make_backend: Any, controller: FaultController,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    make_backend().generate([GenerationRequest("x")])
    assert controller.authorizations[-1] is None


# --------------------------------------------------------------------------- scoring


def test_score_top_logprobs_orders_like_served_backend(make_backend: Any, served: TopLogprobFake) -> None:
    backend = make_backend(score_mode="top_logprobs")
    assert backend.can_score
    prompt = "a great and fun movie, not boring"
    conts = ("great", "terrible", "Boring", "fun")
    (result,) = backend.score_batch([ScoreRequest(prompt, conts)])
    truth = served.score(prompt, list(conts))
    assert result.exact is False and result.lengths == [1] * len(conts)
    assert sorted(conts, key=lambda c: -result.logprobs[conts.index(c)]) == sorted(
        conts, key=lambda c: -truth[conts.index(c)]
    )
    unlisted = backend.score(prompt, ["zebra", "great"])
    assert unlisted[0] < unlisted[1] and unlisted[0] < min(result.logprobs)


def test_score_echo_is_exact(make_backend: Any, served: TopLogprobFake, controller: FaultController) -> None:
    backend = make_backend(score_mode="echo")
    prompt = "Review: a great movie. Sentiment:"
    conts = (" great", " terrible movie", " fun")
    text_prompt, chat_prompt = ScoreRequest(prompt, conts), ScoreRequest(chat("a great movie"), conts)
    text_result, chat_result = backend.score_batch([text_prompt, chat_prompt])
    assert text_result.exact and text_result.logprobs == pytest.approx(served.score(prompt, list(conts)))
    rendered = render_chat_text(chat("a great movie"))
    assert chat_result.logprobs == pytest.approx(served.score(rendered, list(conts)))
    assert text_result.lengths == [1, 2, 1]  # FakeBackend's token counts
    body = controller.bodies[0]
    assert body["echo"] is True and body["logprobs"] == 1 and body["continuation_offset"] > 0
    assert controller.paths["/v1/completions"] == 6


def test_score_mode_none_cannot_score(make_backend: Any, controller: FaultController) -> None:
    backend = make_backend(score_mode="none")
    assert not backend.can_score
    with pytest.raises(BackendError, match="cannot score"):
        backend.score("p", ["a"])
    assert controller.hits == 0
    with pytest.raises(ConfigError, match="score_mode"):
        make_backend(score_mode="magic")


def test_estimate_first_token_logprob() -> None:
    top = {" Positive": -0.2, " positive": -1.0, " neg": -2.0, "no.": -3.0, " not": -2.5}
    assert estimate_first_token_logprob(top, "positive") == pytest.approx(-1.0)  # case-sensitive first
    assert estimate_first_token_logprob(top, "negative") == pytest.approx(-2.0)  # a prefix token counts
    assert estimate_first_token_logprob(top, "no") == pytest.approx(-3.0)  # "not" is another word
    assert estimate_first_token_logprob(top, "maybe") == pytest.approx(-3.0 - 1.0)
    both = estimate_first_token_logprob({"yes": -1.0, " yes": -1.0}, "yes")
    assert both == pytest.approx(-1.0 + 0.6931, abs=1e-3)


# --------------------------------------------------------------------------- concurrency / event loops


def test_concurrency_is_bounded(make_backend: Any, controller: FaultController) -> None:
    controller.delay_s = 0.05
    out = make_backend(concurrency=3).generate([GenerationRequest(f"r{i}") for i in range(12)])
    assert [c.text for c in out] == [f"echo: r{i}" for i in range(12)]
    assert controller.hits == 12
    assert 2 <= controller.max_in_flight <= 3


def test_sync_call_inside_running_loop_and_async_api(make_backend: Any) -> None:
    backend = make_backend()

    async def main() -> tuple[str, str, list[float]]:
        sync_text = backend.generate([GenerationRequest("from a loop")])[0].text  # e.g. Jupyter
        (comp,) = await backend.agenerate([GenerationRequest("awaited")])
        (scored,) = await backend.ascore_batch([ScoreRequest("great fun", ("great", "boring"))])
        return sync_text, comp.text, scored.logprobs

    sync_text, async_text, scores = asyncio.run(main())
    assert (sync_text, async_text) == ("echo: from a loop", "echo: awaited")
    assert scores[0] > scores[1]


def test_close_and_reuse(make_backend: Any) -> None:
    backend = make_backend()
    backend.generate([GenerationRequest("one")])
    backend.close()
    backend.close()  # idempotent
    assert backend.generate([GenerationRequest("two")])[0].text == "echo: two"  # restarts lazily


def test_batch_fails_fast_on_first_error(make_backend: Any, controller: FaultController) -> None:
    backend = make_backend(model="missing")
    with pytest.raises(BackendError, match="HTTP 404"):
        backend.generate([GenerationRequest(f"r{i}") for i in range(3)])


# --------------------------------------------------------------------------- presets / from_spec


def test_presets_and_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"openai", "zhipu", "qwen", "deepseek", "vllm", "ollama", "llamacpp"} <= set(PRESETS)
    assert preset_for("GLM") is PRESETS["zhipu"] and preset_for("dashscope") is PRESETS["qwen"]
    assert preset_for("nope") is None
    monkeypatch.delenv("ZHIPUAI_API_KEY", raising=False)
    ok, why = availability(PRESETS["zhipu"])
    assert not ok and "ZHIPUAI_API_KEY" in why
    monkeypatch.setenv("ZHIPUAI_API_KEY", SECRET)
    assert availability(PRESETS["zhipu"]) == (True, "ok")
    ok, why = availability(PRESETS["ollama"])
    assert ok and "localhost:11434" in why


def test_from_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZHIPUAI_API_KEY", raising=False)
    with pytest.raises(BackendError, match="ZHIPUAI_API_KEY"):
        OpenAICompatBackend.from_spec("zhipu", "glm-4-flash")
    monkeypatch.setenv("ZHIPUAI_API_KEY", SECRET)
    glm = OpenAICompatBackend.from_spec("glm", "")
    assert (glm.model, glm.base_url) == ("glm-4-flash", "https://open.bigmodel.cn/api/paas/v4")
    assert SECRET not in json.dumps(glm.describe()) + repr(glm)
    ollama = OpenAICompatBackend.from_spec("ollama", "qwen2.5", timeout_s=5)
    assert ollama.base_url == "http://localhost:11434/v1" and ollama.describe()["api_key_set"] is False
    monkeypatch.setenv("OPENAUTOGLM_VLLM_BASE_URL", "http://10.0.0.5:9000/v1/")
    assert OpenAICompatBackend.from_spec("vllm", "m").base_url == "http://10.0.0.5:9000/v1"
    assert OpenAICompatBackend.from_spec("vllm", "m", base_url="http://h:1/v1").base_url == "http://h:1/v1"
    with pytest.raises(UnknownModelError):
        OpenAICompatBackend.from_spec("nosuch", "m")
    with pytest.raises(ConfigError):
        OpenAICompatBackend.from_spec("vllm", "")  # vLLM has no default model
    for backend in (glm, ollama):
        backend.close()


# --------------------------------------------------------------------------- the server itself


def test_server_models_and_error_shape(server: ServerThread) -> None:
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        models = client.get("/models").json()
        assert models["data"][0]["id"] == "fake"
        streamed = client.post("/chat/completions", json={"model": "fake", "messages": chat("x"), "stream": True})
        assert streamed.status_code == 400 and "stream" in streamed.json()["error"]["message"]
        invalid = client.post("/chat/completions", json={"model": "fake", "messages": []})
        assert invalid.status_code == 400 and set(invalid.json()["error"]) == {"message", "type", "param", "code"}
        no_offset = client.post(
            "/completions", json={"model": "fake", "prompt": "a b", "echo": True, "logprobs": 1, "max_tokens": 0}
        )
        assert no_offset.status_code == 400 and "continuation_offset" in no_offset.json()["error"]["message"]
        missing = client.get("/nothing-here")
        assert missing.status_code == 404 and "error" in missing.json()


def test_server_completions_and_chat_logprobs(server: ServerThread) -> None:
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        plain = client.post("/completions", json={"model": "fake", "prompt": ["one", "two"], "max_tokens": 5}).json()
        assert [c["text"] for c in plain["choices"]] == ["echo: one", "echo: two"]
        assert plain["usage"]["total_tokens"] == plain["usage"]["prompt_tokens"] + plain["usage"]["completion_tokens"]
        echoed = client.post("/completions", json={"model": "fake", "prompt": "hey", "echo": True, "max_tokens": 3})
        assert echoed.json()["choices"][0]["text"] == "heyecho: hey"
        body = {"model": "fake", "messages": chat("great fun"), "logprobs": True, "top_logprobs": 2}
        lp = client.post("/chat/completions", json=body).json()["choices"][0]["logprobs"]["content"][0]
        assert len(lp["top_logprobs"]) == 2 and lp["token"].strip() in VOCAB


# --------------------------------------------------------------------------- the real embedded model


@pytest.mark.slow
def test_real_local_model_over_http() -> None:
    local = pytest.importorskip("openautoglm.backends.local")
    model = local.LocalBackend()
    try:
        with ServerThread(create_openai_app(model, model_name="local")) as srv:
            backend = OpenAICompatBackend("local", base_url=srv.base_url, score_mode="echo", timeout_s=120)
            try:
                (comp,) = backend.generate([GenerationRequest([{"role": "user", "content": "Say hello."}], max_tokens=16)])
                assert comp.text.strip() and comp.completion_tokens > 0
                # The wire must carry the model's exact scores; the model's opinion on one
                # prompt is not what is tested here (SmolLM2-135M is biased towards "negative").
                template = "Review: {}\nIs this review positive or negative? Answer:"
                margins = []
                for review in ("An absolute delight, wonderful acting and a great story.",
                               "Dull, ugly and far too long; a total waste of time."):
                    prompt = template.format(review)
                    positive, negative = backend.score(prompt, [" positive", " negative"])
                    exact = model.score(prompt, [" positive", " negative"])
                    # bit for bit: scores do not depend on the batch (the server scores each
                    # continuation as its own request) and JSON floats round-trip exactly
                    assert [positive, negative] == exact
                    margins.append(positive - negative)
                assert margins[0] > margins[1]
            finally:
                backend.close()
    finally:
        model.close()
