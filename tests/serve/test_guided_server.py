"""The OpenAI-compatible server speaks structured output: ``response_format`` and vLLM's guided
fields reach the backend as a Constraint (streamed too), a kind the backend does not enforce
is refused (400), never dropped, and the operator can cap the listed top logprobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import pytest

from openautoglm.backends.base import Completion, Constraint, GenerationRequest
from openautoglm.backends.fake import FakeBackend

from .conftest import ServerThread, make_app

PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 18}},
          "required": ["name", "age"]}


class Recording(FakeBackend):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: list[GenerationRequest] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        self.seen += list(requests)
        return super().generate(requests)


@pytest.fixture()
def backend() -> Recording:
    return Recording()


@pytest.fixture()
def client(backend: Recording) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from openautoglm.serve.openai_api import create_openai_app

    with TestClient(create_openai_app(backend, "fake", streaming=True)) as c:
        yield c


def chat(client: Any, text: str = "a negative and dull film", **fields: Any) -> Any:
    body = {"messages": [{"role": "user", "content": text}], "temperature": 0, **fields}
    return client.post("/v1/chat/completions", json=body)


def content(response: Any) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("fields, expected", [
    ({"response_format": {"type": "json_object"}}, Constraint.json({"type": "object"})),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}},
     Constraint.json(PERSON)),
    ({"guided_json": PERSON}, Constraint.json(PERSON)),
    ({"guided_json": json.dumps(PERSON)}, Constraint.json(PERSON)),
    ({"guided_choice": ["positive", "negative"]}, Constraint.choice(["positive", "negative"])),
    ({"guided_regex": "[a-z]{3}-[0-9]"}, Constraint.regex("[a-z]{3}-[0-9]")),
    ({"structured_outputs": {"choice": ["positive", "negative"]}}, Constraint.choice(["positive", "negative"])),
    ({"structured_outputs": {"json": PERSON}}, Constraint.json(PERSON)),
    ({"structured_outputs": {"json_object": True}}, Constraint.json({"type": "object"})),
])
def test_structured_fields_reach_the_backend_as_a_constraint(client: Any, backend: Recording,
                                                             fields: dict[str, Any], expected: Constraint) -> None:
    text = content(chat(client, **fields))
    assert backend.seen[-1].constraint == expected
    if expected.kind == "json_schema":
        value = json.loads(text)
        assert isinstance(value, dict) and set(expected.value.get("required", [])) <= set(value)
        if "age" in value:
            assert value["age"] >= 18
    elif expected.kind == "choice":
        assert text == "negative"  # the fake's word rule: the prompt says "negative"
    else:
        assert text == "aaa-0"


def test_text_response_format_is_no_constraint(client: Any, backend: Recording) -> None:
    assert content(chat(client, response_format={"type": "text"})).startswith("echo:")
    assert backend.seen[-1].constraint is None


def test_completions_take_guided_fields(client: Any, backend: Recording) -> None:
    body = {"prompt": "Review: a great film. Sentiment:", "guided_choice": ["positive", "negative"], "max_tokens": 4,
            "temperature": 0}
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 200 and response.json()["choices"][0]["text"] == "positive"
    scoring = {"prompt": "Is it good? Answer: yes", "continuation_offset": 19, "echo": True, "logprobs": 1,
               "max_tokens": 1, "guided_choice": ["yes", "no"]}
    refused = client.post("/v1/completions", json=scoring)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "unsupported_constraint"


def test_a_kind_the_backend_does_not_enforce_is_refused_not_ignored() -> None:
    from fastapi.testclient import TestClient

    from openautoglm.serve.openai_api import create_openai_app

    plain = Recording(constraints=())
    with TestClient(create_openai_app(plain, "fake", streaming=True)) as c:
        for fields, param in (({"response_format": {"type": "json_object"}}, "response_format"),
                              ({"guided_choice": ["a", "b"]}, "guided_choice"),
                              ({"guided_grammar": 'start: "a"'}, "guided_grammar")):
            response = chat(c, **fields)
            assert response.status_code == 400, fields
            error = response.json()["error"]
            assert error["code"] == "unsupported_constraint" and error["param"] == param
            assert "cannot enforce" in error["message"] and "(it enforces: none)" in error["message"]
            streamed = chat(c, stream=True, **fields)  # refused before the stream starts
            assert streamed.status_code == 400
        assert plain.seen == []  # nothing reached the model


@pytest.mark.parametrize("fields, where", [
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": {
        "age": {"type": "int"}}}}}}, "response_format.json_schema.schema.properties.age.type"),
    ({"guided_json": {"type": "object", "required": "name"}}, "guided_json.required"),
    ({"structured_outputs": {"json": {"properties": {"x": {"$ref": "#/$defs/Missing"}}}}},
     "structured_outputs.json.properties.x.$ref"),
])
def test_a_malformed_schema_is_refused_naming_its_path(client: Any, backend: Recording, fields: dict[str, Any],
                                                       where: str) -> None:
    response = chat(client, **fields)
    assert response.status_code == 400
    assert where in response.json()["error"]["message"] and response.json()["error"]["code"] == "invalid_schema"
    assert backend.seen == []


@pytest.mark.parametrize("fields, needle", [
    ({"guided_regex": "(unclosed"}, "not a regular expression"),
    ({"guided_choice": []}, "guided_choice"),
    ({"guided_json": "{not json"}, "not valid JSON"),
    ({"response_format": {"type": "xml"}}, "unsupported response_format type"),
    ({"structured_outputs": {"structural_tag": "x"}}, "structured_outputs.structural_tag is not supported"),
    ({"structured_outputs": {"choice": ["a"], "regex": "a"}}, "exactly one of"),
    ({"guided_choice": ["a", "b"], "guided_regex": "a"}, "give one structured-output field"),
])
def test_malformed_structured_fields_are_400(client: Any, fields: dict[str, Any], needle: str) -> None:
    response = chat(client, **fields)
    assert response.status_code == 400 and needle in response.json()["error"]["message"]


def _streamed(client: Any, **fields: Any) -> tuple[str, list[str]]:
    body = {"messages": [{"role": "user", "content": "a negative and dull film"}], "stream": True, "temperature": 0,
            **fields}
    pieces = []
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                event = json.loads(line[6:])
                assert "error" not in event, event
                pieces += [c["delta"].get("content") or "" for c in event["choices"]]
    return "".join(pieces), [p for p in pieces if p]


def test_structured_output_streams(client: Any, backend: Recording) -> None:
    text, pieces = _streamed(client, guided_choice=["positive", "negative"])
    assert text == "negative" and backend.seen[-1].constraint == Constraint.choice(["positive", "negative"])
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
              "required": ["a", "b"]}
    text, pieces = _streamed(client, response_format={"type": "json_schema", "json_schema": {"schema": schema}})
    assert json.loads(text) == {"a": "", "b": 0} and len(pieces) > 1  # valid JSON, sent in pieces
    assert backend.seen[-1].on_text is not None  # streamed as the backend reported it


def test_top_logprobs_cap(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tests.backends.fault_server import TopLogprobFake

    vocab = ["great", "terrible", "fun", "boring", "movie", "film", "plot"]
    body = {"messages": [{"role": "user", "content": "a great film"}], "logprobs": True, "top_logprobs": 20,
            "max_tokens": 1}
    with TestClient(make_app(tmp_path, backend=TopLogprobFake(vocab), max_top_logprobs=3)) as c:
        token = c.post("/v1/chat/completions", json=body).json()["choices"][0]["logprobs"]["content"][0]
        assert len(token["top_logprobs"]) == 3
        assert token["top_logprobs"][0]["logprob"] >= token["top_logprobs"][-1]["logprob"]
        legacy = c.post("/v1/completions", json={"prompt": "a great film", "logprobs": 5, "max_tokens": 1}).json()
        assert len(legacy["choices"][0]["logprobs"]["top_logprobs"][0]) == 3
    with TestClient(make_app(tmp_path / "uncapped", backend=TopLogprobFake(vocab))) as c:
        token = c.post("/v1/chat/completions", json=body).json()["choices"][0]["logprobs"]["content"][0]
        assert len(token["top_logprobs"]) == len(vocab)


def test_serve_cli_has_the_cap_option() -> None:
    import typer
    from typer.testing import CliRunner

    from openautoglm.serve.cli import register

    app = typer.Typer()

    @app.command()
    def version() -> None:
        print("0")

    register(app)
    assert "--max-top-logprobs" in CliRunner().invoke(app, ["serve", "--help"]).output


def test_a_real_client_gets_guided_choices_over_loopback(tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    with ServerThread(make_app(tmp_path)) as srv:
        client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="unused", max_retries=0)
        answer = client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "a negative review"}], temperature=0,
            extra_body={"guided_choice": ["positive", "negative"]})
        assert answer.choices[0].message.content == "negative"
        stream = client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "Ann"}], stream=True,
            response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}})
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert json.loads(text) == {"name": "", "age": 18}
