"""Issue 16 item 6: inputs that gave server errors or broken streams under schemathesis, each
answered with a clear 4xx now (on the plain fake model, as `openautoglm serve --model fake` runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient

from .conftest import make_app
from .fuzzing import DONE, cheap_body, response_failure

CHAT = "/v1/chat/completions"


@pytest.fixture()
def plain(tmp_path: Path) -> Iterator[TestClient]:
    """A server on the unmodified fake backend (its echo rule fails on an empty prompt)."""
    from openautoglm.backends.fake import FakeBackend

    with TestClient(make_app(tmp_path, backend=FakeBackend()), raise_server_exceptions=False) as c:
        yield c


def _raw(client: TestClient, path: str, text: str) -> Any:
    """POST a JSON text as it is (JSON escapes such as \\ud800 survive; httpx would refuse to encode them)."""
    return client.post(path, content=text.encode(), headers={"Content-Type": "application/json"})


def _error(resp: Any) -> dict[str, Any]:
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:300])
    return resp.json()["error"]


@pytest.mark.parametrize("prompt", ["", [""], ["ok", ""]])
def test_empty_completion_prompt_is_a_client_error(plain: TestClient, prompt: Any) -> None:
    error = _error(plain.post("/v1/completions", json={"prompt": prompt}))
    assert error["code"] == "empty_prompt" and error["param"] == "prompt" and "IndexError" not in error["message"]


@pytest.mark.parametrize("messages", [[{"role": ""}], [{"role": "user"}], [{"role": "user", "content": ""}],
                                      [{"role": "user", "content": [{"type": "image_url"}]}]])
def test_chat_without_text_or_with_an_unknown_role_is_a_client_error(plain: TestClient, messages: Any) -> None:
    error = _error(plain.post(CHAT, json={"messages": messages}))
    assert error["param"] in ("messages", "messages.0.role") and "IndexError" not in error["message"]


def test_roles_of_the_openai_api_are_accepted(plain: TestClient) -> None:
    for role in ("system", "developer", "user", "assistant", "tool"):
        assert plain.post(CHAT, json={"messages": [{"role": role, "content": "hi"}]}).status_code == 200, role


@pytest.mark.parametrize("path,body", [
    (CHAT, '{"messages": [{"role": "user", "content": "a\\ud800b"}]}'),
    (CHAT, '{"messages": [{"role": "user", "content": "a\\ud800b"}], "stream": true}'),
    ("/v1/completions", '{"prompt": "a\\udfffb", "stream": true}'),
    ("/v1/completions", '{"prompt": "ok", "user": {"\\ud800": 1}}'),
    ("/api/try", '{"yaml": "name: p\\ntask:\\n  template: \\"{text}\\"\\n  labels: [a, b]\\n", '
                 '"inputs": {"text": "\\ud800"}}'),
])
def test_lone_surrogates_are_refused_before_any_model_call(plain: TestClient, path: str, body: str) -> None:
    error = _error(_raw(plain, path, body))
    assert "surrogate" in error["message"]


def test_upload_with_lone_surrogates_is_refused(plain: TestClient) -> None:
    data = b'{"text": "fine"}\n{"text": "bad \\ud800"}\n'
    error = _error(plain.post("/api/uploads", files={"file": ("x.jsonl", data, "application/json")}))
    assert "surrogate" in error["message"] and "x.jsonl" in error["message"]


def test_a_stream_always_ends_with_done(tmp_path: Path) -> None:
    """The backend answers text that cannot be encoded: the stream still ends properly."""
    from openautoglm.backends.fake import FakeBackend

    app = make_app(tmp_path, backend=FakeBackend(responses=["bad \ud800 text"]))
    with TestClient(app, raise_server_exceptions=False) as c:
        chat = c.post(CHAT, json={"messages": [{"role": "user", "content": "hi"}], "stream": True})
        text = c.post("/v1/completions", json={"prompt": "hi", "stream": True})
        traces = c.get("/api/traces").json()["traces"]
    for resp in (chat, text):
        assert resp.status_code == 200 and resp.content.endswith(DONE), resp.content[-200:]
        events = [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: {")]
        assert events and all("error" not in e for e in events)
    assert len(traces) == 2 and "bad \ufffd text" in traces[0]["response"]  # stored, with U+FFFD


@pytest.mark.parametrize("body", [{"prompt": "hi", "max_tokens": 10**12},
                                  {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**30},
                                  {"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 100_001}])
def test_huge_max_tokens_is_refused_for_what_it_is(plain: TestClient, body: dict[str, Any]) -> None:
    path = CHAT if "messages" in body else "/v1/completions"
    error = _error(plain.post(path, json=body))
    assert error["code"] == "max_tokens_too_large" and error["param"] in ("max_tokens", "max_completion_tokens")
    assert "context" in error["message"] and "prompt of" not in error["message"]


def test_chunked_body_over_the_limit_gets_413(tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b" " * 100

    kinds = {"/api/validate": "application/json", "/api/uploads": "multipart/form-data; boundary=xyz",
             CHAT: "application/json"}
    with TestClient(make_app(tmp_path, max_body_bytes=2000)) as c:
        for path, kind in kinds.items():
            resp = c.post(path, content=chunks(), headers={"Content-Type": kind})
            assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large", path


def test_call_step_results_that_are_not_json_are_shown_as_text(tmp_path: Path) -> None:
    call = "tests.serve.helpers_calls:as_path"
    yaml = f'name: p\nsteps:\n  - name: s\n    call: "{call}"\n'
    with TestClient(make_app(tmp_path, allow_calls=[call]), raise_server_exceptions=False) as c:
        out = c.post("/api/try", json={"yaml": yaml, "inputs": {"text": "x"}})
    assert out.status_code == 200 and out.json()["result"] == {"path": "/data/x"}


def test_fuzz_helpers_flag_what_they_should() -> None:
    assert response_failure(500, "application/json", b"{}") is not None
    assert response_failure(200, "text/event-stream; charset=utf-8", b"data: {}\n\n") is not None
    assert response_failure(200, "text/event-stream", b"data: {}\n\n" + DONE) is None
    assert response_failure(422, "application/json", b"{}") is None
    cheap = cheap_body({"messages": [], "n": 100, "max_tokens": 5000}, context=8192)
    assert cheap == {"messages": [], "n": 2, "max_tokens": 8}
    assert cheap_body({"prompt": "x", "max_tokens": 10**9}, context=8192)["max_tokens"] == 10**9  # must be refused


def test_the_operators_answer_length_cap_holds_on_every_route(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from .conftest import TEST_HOST, make_app

    yaml_text = "name: p\ntask:\n  template: 'Say {text}'\n  max_tokens: 64\n"
    with TestClient(make_app(tmp_path, max_tokens=16), base_url=f"http://{TEST_HOST}") as client:
        chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                          "max_tokens": 64})
        assert chat.status_code == 400 and "this server allows (16)" in chat.json()["error"]["message"]
        ok = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                        "max_tokens": 16})
        assert ok.status_code == 200
        tried = client.post("/api/try", json={"yaml": yaml_text, "inputs": {"text": "hello"}})
        assert "this server allows (16)" in tried.text and tried.status_code < 500
