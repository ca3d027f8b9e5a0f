"""The model names GLM/ChatGLM, Qwen and Baichuan users type (issue 19, item 1):
``Pipeline(model="chatglm" | "glm" | "qwen" | "baichuan")`` reaches that provider's
OpenAI-compatible endpoint with its default model and key, ``chatglm:<repo id>`` a
self-hosted vLLM, and a missing key is a one-line error naming the variable.

Every request goes to a fake endpoint on 127.0.0.1: the presets' base URLs are
replaced for the test; their real values are checked as constants.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import pytest

from openautoglm import Pipeline, Task
from openautoglm.backends.presets import PRESETS, preset_for
from openautoglm.errors import BackendError

from .fault_server import FaultController, FaultMiddleware, ServerThread, TopLogprobFake

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from openautoglm.serve.openai_api import create_openai_app  # noqa: E402

KEY = "sk-alias-test-0123456789"
#: alias -> (preset it resolves to, key variable, default model, real base URL)
ALIASES = {
    "chatglm": ("chatglm", "ZHIPUAI_API_KEY", "glm-4-flash", "https://open.bigmodel.cn/api/paas/v4"),
    "glm": ("zhipu", "ZHIPUAI_API_KEY", "glm-4-flash", "https://open.bigmodel.cn/api/paas/v4"),
    "qwen": ("qwen", "DASHSCOPE_API_KEY", "qwen-plus", "https://dashscope.aliyuncs.com/compatible-mode/v1"),
    "baichuan": ("baichuan", "BAICHUAN_API_KEY", "Baichuan4-Turbo", "https://api.baichuan-ai.com/v1"),
}
KEY_VARS = sorted({v[1] for v in ALIASES.values()} | {"VLLM_API_KEY"})


def _task() -> Task:
    return Task(name="sentiment", prompt_template="Sentiment of: {text}", labels=["positive", "negative"], format="text")


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in KEY_VARS + ["OPENAUTOGLM_CHATGLM_BASE_URL", "OPENAUTOGLM_VLLM_BASE_URL", "OPENAUTOGLM_MODEL"]:
        monkeypatch.delenv(var, raising=False)


def _serve(model: str) -> tuple[ServerThread, FaultController]:
    controller = FaultController()
    app = FaultMiddleware(create_openai_app(TopLogprobFake(["positive", "negative", "the", "a"], model=model),
                                            model_name=model), controller)
    return ServerThread(app), controller


@pytest.fixture
def endpoint(request: pytest.FixtureRequest) -> Iterator[tuple[ServerThread, FaultController]]:
    server, controller = _serve(request.param)
    with server:
        yield server, controller


def test_presets_name_the_real_endpoints() -> None:
    for alias, (preset, key_var, model, url) in ALIASES.items():
        found = preset_for(alias)
        assert found is PRESETS[preset], alias
        assert (found.api_key_env, found.default_model, found.base_url) == (key_var, model, url)
        assert found.api_key_required
    assert preset_for("ChatGLM") is PRESETS["chatglm"] and preset_for("Tongyi") is PRESETS["qwen"]


@pytest.mark.parametrize(("alias", "endpoint"), [(a, v[2]) for a, v in ALIASES.items()], indirect=["endpoint"])
def test_alias_reaches_its_endpoint_with_its_key(alias: str, endpoint: tuple[ServerThread, FaultController],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    server, controller = endpoint
    preset, key_var, model, _ = ALIASES[alias]
    monkeypatch.setitem(PRESETS, preset, dataclasses.replace(PRESETS[preset], base_url=server.base_url))
    monkeypatch.setenv(key_var, KEY)
    pipe = Pipeline(model=alias, task=_task(), store=False)
    try:
        result = pipe.run(text="a positive film")
    finally:
        pipe.close()
    assert result["label"] == "positive" and 0.5 < result["confidence"] <= 1
    assert controller.bodies and {body["model"] for body in controller.bodies} == {model}
    assert set(controller.authorizations) == {f"Bearer {KEY}"}


@pytest.mark.parametrize("endpoint", ["THUDM/glm-4-9b-chat"], indirect=True)
def test_chatglm_repo_id_is_a_self_hosted_vllm(endpoint: tuple[ServerThread, FaultController],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    server, controller = endpoint
    monkeypatch.setenv("OPENAUTOGLM_CHATGLM_BASE_URL", server.base_url)
    monkeypatch.setenv("ZHIPUAI_API_KEY", KEY)  # Zhipu's key must never reach your own server
    pipe = Pipeline(model="chatglm:THUDM/glm-4-9b-chat", task=_task(), store=False)
    try:
        assert pipe.run(text="a positive film")["label"] == "positive"
    finally:
        pipe.close()
    assert {body["model"] for body in controller.bodies} == {"THUDM/glm-4-9b-chat"}
    assert set(controller.authorizations) == {None}


def test_chatglm_base_url_option_and_vllm_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from openautoglm.backends.registry import create_backend

    local = create_backend("chatglm:THUDM/chatglm3-6b")  # no key needed: vLLM's default URL
    given = create_backend("chatglm:glm4", base_url="http://127.0.0.1:9/v1")
    try:
        assert (local.base_url, local.preset.name) == ("http://localhost:8000/v1", "vllm")
        assert (given.base_url, given.model) == ("http://127.0.0.1:9/v1", "glm4")
    finally:
        local.close()
        given.close()


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_missing_key_is_one_line_naming_the_variable(alias: str) -> None:
    key_var = ALIASES[alias][1]
    with pytest.raises(BackendError) as caught:
        Pipeline(model=alias, task=_task(), store=False).run(text="a positive film")
    message = str(caught.value)
    assert "\n" not in message and key_var in message and alias.replace("glm", "") in message
