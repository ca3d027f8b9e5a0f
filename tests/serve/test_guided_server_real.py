"""The OpenAI-compatible server on the embedded model enforces structured output with the local
constrained decoder (issue 18, items 3 and 5): response_format and the guided fields, streamed
or not, give answers inside the constraint; a schema the decoder cannot compile is a 400
naming its path."""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

import pytest

pytestmark = pytest.mark.slow

PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
                                           "city": {"type": "string"}},
          "required": ["name", "age", "city"], "additionalProperties": False}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    pytest.importorskip("llguidance")
    from fastapi.testclient import TestClient

    from openautoglm.backends.local import LocalBackend
    from openautoglm.serve.openai_api import create_openai_app

    backend = LocalBackend()
    with TestClient(create_openai_app(backend, "local", streaming=True)) as c:
        yield c
    backend.close()


def body(text: str, **fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], "temperature": 0, "max_tokens": 48, **fields}


def streamed(client: Any, payload: dict[str, Any]) -> tuple[str, list[str], str | None]:
    pieces, finish = [], None
    with client.stream("POST", "/v1/chat/completions", json={**payload, "stream": True}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                event = json.loads(line[6:])
                assert "error" not in event, event
                for choice in event["choices"]:
                    pieces.append(choice["delta"].get("content") or "")
                    finish = choice.get("finish_reason") or finish
    return "".join(pieces), [p for p in pieces if p], finish


def test_response_format_json_schema_streams_valid_json(client: Any) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    payload = body("Ann Lee, 31, lives in Lyon. Describe her.", response_format=fmt)
    text, pieces, finish = streamed(client, payload)
    value = json.loads(text)
    assert set(value) == {"name", "age", "city"} and isinstance(value["age"], int) and len(pieces) > 3
    assert finish == "stop"
    plain = client.post("/v1/chat/completions", json=payload).json()["choices"][0]["message"]["content"]
    assert plain == text  # streaming changes nothing but the delivery


def test_json_object_and_guided_fields(client: Any) -> None:
    answer = client.post("/v1/chat/completions", json=body("Give me a JSON object about a cat.",
                                                           response_format={"type": "json_object"})).json()
    text, finish = answer["choices"][0]["message"]["content"], answer["choices"][0]["finish_reason"]
    # any object: the model may go on adding keys until max_tokens, then it is a cut-off object
    assert isinstance(json.loads(text), dict) if finish == "stop" else text.startswith("{")
    choice = client.post("/v1/chat/completions", json=body("Is 'I loved it' positive or negative?",
                                                           guided_choice=["positive", "negative"]))
    assert choice.json()["choices"][0]["message"]["content"] in ("positive", "negative")
    text, _, _ = streamed(client, body("When did the Berlin wall fall?", guided_regex="[0-9]{4}-[0-9]{2}-[0-9]{2}"))
    assert re.fullmatch("[0-9]{4}-[0-9]{2}-[0-9]{2}", text)
    greeting = client.post("/v1/chat/completions", json=body("Greet Tom.",
                                                             guided_grammar='start: "Hi " /[A-Z][a-z]+/ "!"'))
    assert re.fullmatch("Hi [A-Z][a-z]+!", greeting.json()["choices"][0]["message"]["content"])


def test_a_schema_the_decoder_cannot_compile_is_a_400_naming_its_path(client: Any) -> None:
    schema = {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}
    answer = client.post("/v1/chat/completions", json=body("x", guided_json=schema))
    assert answer.status_code == 400 and "schema.properties.tags" in answer.json()["error"]["message"]
