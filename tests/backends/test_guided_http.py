"""Guided decoding over real HTTP on loopback: the backend sends a constraint the way the
endpoint takes it (presets), probes endpoints it does not know, falls back when a field is
refused or ignored and records that it did; the server behind is Open-AutoGLM's own
(``create_openai_app`` on the rule-following fake), with the fault layer emulating how
vLLM, llama.cpp, Ollama and OpenAI treat the fields."""

from __future__ import annotations

import json
from typing import Any, Iterator, Sequence

import pytest

from openautoglm.backends.base import Completion, Constraint, GenerationRequest
from openautoglm.backends.fake import FakeBackend
from openautoglm.backends.openai_compat import OpenAICompatBackend
from openautoglm.errors import BackendError

from .fault_server import FaultController, FaultMiddleware, ServerThread

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from openautoglm.serve.openai_api import create_openai_app  # noqa: E402

SENTIMENT = Constraint.choice(["positive", "negative"])
PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


class PickyFake(FakeBackend):
    """The rule-following fake, whose 'engine' cannot compile schemas that use ``x-unsupported``
    (as a grammar engine refuses some keywords), naming the path."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        for req in requests:
            if req.constraint is not None and "x-unsupported" in json.dumps(req.constraint.value):
                raise BackendError("schema.properties.when: format 'x-unsupported' cannot be compiled")
        return super().generate(requests)


@pytest.fixture(scope="module")
def controller() -> FaultController:
    return FaultController()


@pytest.fixture(scope="module")
def server(controller: FaultController) -> Iterator[ServerThread]:
    app = FaultMiddleware(create_openai_app(PickyFake(model="fake"), model_name="fake"), controller)
    with ServerThread(app) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _reset(controller: FaultController) -> None:
    controller.reset()


@pytest.fixture
def make_backend(server: ServerThread) -> Iterator[Any]:
    made: list[OpenAICompatBackend] = []

    def make(**options: Any) -> OpenAICompatBackend:
        options.setdefault("base_url", server.base_url)
        backend = OpenAICompatBackend("fake", timeout_s=5, max_retries=0, api_key="k", **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def guided(text: str, constraint: Constraint, **options: Any) -> GenerationRequest:
    return GenerationRequest([{"role": "user", "content": text}], max_tokens=32, constraint=constraint, **options)


# --------------------------------------------------------------------------- presets


def test_vllm_preset_sends_structured_outputs(make_backend: Any, controller: FaultController) -> None:
    backend = make_backend(preset="vllm")
    assert backend.constraints == frozenset({"json_schema", "regex", "choice", "grammar"})  # declared, no probe
    assert controller.hits == 0
    (comp,) = backend.generate([guided("a negative, dull film", SENTIMENT)])
    assert comp.text == "negative"
    assert controller.bodies[-1]["structured_outputs"] == {"choice": ["positive", "negative"]}
    assert comp.constraint_method == "structured_outputs" and controller.hits == 1
    (comp,) = backend.generate([guided("give a code", Constraint.regex(r"[A-Z]{2}-[0-9]{3}"))])
    assert comp.text == "AA-000" and controller.bodies[-1]["structured_outputs"] == {"regex": r"[A-Z]{2}-[0-9]{3}"}


def test_old_vllm_ignores_structured_outputs_and_the_backend_falls_back_to_guided_fields(
        make_backend: Any, controller: FaultController) -> None:
    controller.fields = {"structured_outputs": "ignore"}
    backend = make_backend(preset="vllm")
    (comp,) = backend.generate([guided("a negative, dull film", SENTIMENT)])
    assert comp.text == "negative"
    assert controller.bodies[-1]["guided_choice"] == ["positive", "negative"]
    assert comp.constraint_method.startswith("guided; after structured_outputs: ignored")
    assert backend.guided_log and "structured_outputs: ignored" in backend.guided_log[0]
    assert backend.describe()["guided"]["structured_outputs/choice"] is False
    controller.reset()
    controller.fields = {"structured_outputs": "ignore"}
    backend.generate([guided("a great film", SENTIMENT)])
    assert controller.hits == 1 and "guided_choice" in controller.bodies[0]  # remembered: no second try


def test_an_endpoint_that_rejects_response_format_falls_back_and_records_it(
        make_backend: Any, controller: FaultController) -> None:
    controller.fields = {"response_format:json_schema": "reject"}
    backend = make_backend(preset="qwen")
    assert "json_schema" in backend.constraints  # declared by the preset
    (comp,) = backend.generate([guided("Ann is 31", Constraint.json(PERSON))])
    sent = [b.get("response_format", {}).get("type") for b in controller.bodies]
    assert sent == ["json_schema", "json_schema", "json_object"]  # the request, the probe, the fallback
    assert comp.constraint_method.startswith("json_object (JSON mode; the schema is not enforced); after "
                                             "response_format: refused (HTTP 400")
    assert "Unrecognized request argument supplied: response_format:json_schema" in comp.constraint_method
    assert json.loads(comp.text) == {}  # JSON mode: a JSON object, the schema unenforced
    assert "json_schema" not in backend.constraints  # now known: it does not enforce schemas
    assert backend.supports_json_schema  # but JSON mode still reaches it


def test_llamacpp_preset_sends_a_gbnf_grammar_for_a_choice(make_backend: Any, controller: FaultController) -> None:
    controller.fields = {"json_schema": "llamacpp", "grammar": "llamacpp"}
    backend = make_backend(preset="llamacpp")
    assert backend.constraints == frozenset({"json_schema", "choice"})
    (comp,) = backend.generate([guided("what a negative film", SENTIMENT)])
    assert controller.bodies[-1]["grammar"] == 'root ::= "positive" | "negative"'
    assert comp.text == "negative" and comp.constraint_method == "llamacpp"


def test_a_kind_no_method_carries_goes_without_and_says_so(make_backend: Any, controller: FaultController) -> None:
    backend = make_backend(preset="ollama")
    assert backend.constraints == frozenset({"json_schema"})
    (comp,) = backend.generate([guided("a negative film", SENTIMENT)])
    assert comp.text.startswith("echo:")  # unconstrained
    assert comp.constraint_method == f"none: {backend.base_url} takes no choice constraint"
    assert not any(k in controller.bodies[-1] for k in ("structured_outputs", "guided_choice", "grammar"))


# --------------------------------------------------------------------------- endpoints without a preset


def test_an_unknown_endpoint_is_probed_once(make_backend: Any, controller: FaultController) -> None:
    backend = make_backend()
    assert backend.describe()["constraints"] == []  # nothing known, and describe() does not probe
    assert controller.hits == 0
    assert backend.constraints == frozenset({"json_schema", "choice", "regex"})  # what the fake enforces
    probes = controller.hits
    assert probes >= 4  # one per kind at least; grammar is refused by every method
    assert backend.constraints == frozenset({"json_schema", "choice", "regex"}) and controller.hits == probes
    (comp,) = backend.generate([guided("a great film", SENTIMENT)])
    assert comp.text == "positive" and controller.hits == probes + 1
    support = backend.describe()["guided"]
    assert support["response_format/json_schema"] is True and support["structured_outputs/grammar"] is False


def test_an_unknown_endpoint_that_takes_nothing(make_backend: Any, controller: FaultController) -> None:
    controller.fields = {f: "reject" for f in ("response_format", "structured_outputs", "guided_choice", "guided_json",
                                              "guided_regex", "guided_grammar", "json_schema", "grammar")}
    backend = make_backend()
    assert backend.constraints == frozenset()
    assert not backend.supports_json_schema
    hits = controller.hits
    (comp,) = backend.generate([guided("Ann is 31", Constraint.json(PERSON))])
    assert comp.constraint_method.startswith("none:") and controller.hits == hits + 1  # known: sent plain at once
    assert "response_format" not in controller.bodies[-1]


def test_probe_results_stay_with_the_backend(make_backend: Any, controller: FaultController) -> None:
    first = make_backend()
    first.constraints  # noqa: B018 - probes
    probes = controller.hits
    assert make_backend().constraints == first.constraints  # a new backend probes again (not persisted)
    assert controller.hits == 2 * probes


# --------------------------------------------------------------------------- bad schemas


def test_a_malformed_schema_fails_before_it_is_sent_naming_the_path(make_backend: Any,
                                                                   controller: FaultController) -> None:
    backend = make_backend(preset="vllm")
    bad = {"type": "object", "properties": {"age": {"type": "int"}}}
    with pytest.raises(BackendError) as info:
        backend.generate([guided("x", Constraint.json(bad))])
    assert "schema.properties.age.type: 'int' is not a JSON Schema type" in str(info.value)
    assert controller.hits == 0


def test_a_schema_the_server_cannot_take_is_a_clear_error(make_backend: Any, controller: FaultController) -> None:
    backend = make_backend(preset="vllm")
    schema = {"type": "object", "properties": {"when": {"type": "string", "format": "x-unsupported"}}}
    with pytest.raises(BackendError) as info:
        backend.generate([guided("x", Constraint.json(schema))])
    message = str(info.value)
    assert "schema.properties.when: format 'x-unsupported' cannot be compiled" in message  # the server's words
    assert "refused this request's JSON schema" in message and "hint:" in message
    assert backend.describe()["guided"]["response_format/json_schema"] is True  # the method itself works
    assert "json_schema" in backend.constraints  # not marked unsupported because of one schema


# --------------------------------------------------------------------------- the JSON output kind


def test_a_json_task_uses_the_endpoint_constraint_and_records_how(make_backend: Any,
                                                                   controller: FaultController) -> None:
    from openautoglm.core.pipeline import Pipeline
    from openautoglm.core.task import Task

    task = Task(name="person", template="Extract the person: {text}", schema=PERSON)
    res = Pipeline(model=make_backend(preset="vllm"), task=task, store=False).run(text="Ann is 31")
    assert res["valid"] is True and res["attempts"] == 1 and res["output"] == {"name": "", "age": 0}
    assert res["method"] == "constrained-decoding (response_format)"
    assert controller.bodies[-1]["response_format"]["json_schema"]["schema"] == PERSON

    controller.fields = {f: "reject" for f in ("response_format", "structured_outputs", "guided_json")}
    backend = make_backend(preset="vllm")
    res = Pipeline(model=backend, task=task, store=False).run(text="Ann is 31")
    assert res["method"] == ("validate-and-re-ask (constraint not applied: "
                             f"{backend.base_url} refused or ignored response_format, structured_outputs, "
                             "guided for json_schema constraints)")  # the last attempt's; the first said HTTP 400
    assert res["valid"] is False and res["attempts"] == 3  # the fake echoes: re-asked, and said why
    assert len(backend.guided_log) == 3 and "response_format: refused (HTTP 400" in backend.guided_log[0]


def test_a_json_task_on_a_backend_without_constraints_sends_none(make_backend: Any) -> None:
    from openautoglm.core.pipeline import Pipeline
    from openautoglm.core.task import Task

    task = Task(name="person", template="Extract the person: {text}", schema=PERSON, max_retries=0)
    backend = FakeBackend(constraints=())
    res = Pipeline(model=backend, task=task, store=False).run(text="Ann is 31")
    assert res["method"] == "validate-and-re-ask" and res["valid"] is False  # nothing constrained: it says so
