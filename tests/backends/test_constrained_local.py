"""Constrained decoding in the local backend (llguidance) on the real embedded model: JSON
Schema (Pydantic and plain), regex, choice and Lark grammars; batched rows with and without
constraints answer as they do alone; bad schemas and dead-end grammars fail alone, clearly."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import BaseModel

from openautoglm.backends.base import Completion, Constraint, GenerationRequest
from openautoglm.errors import BackendError

pytestmark = pytest.mark.slow


class Person(BaseModel):
    name: str
    age: int
    languages: list[str]


DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
GREETING = 'start: "Hello, " NAME "!"\nNAME: /[A-Z][a-z]{1,12}/'
#: ``x`` has no finite derivation: after "a" nothing can follow, and nothing can end it either
DEAD_END = 'start: "a" x\nx: x "b"'


@pytest.fixture(scope="module")
def local() -> Any:
    pytest.importorskip("llguidance")
    from openautoglm.backends.local import LocalBackend

    backend = LocalBackend()
    yield backend
    backend.close()


def ask(text: str, constraint: Constraint | None = None, max_tokens: int = 48, **kw: Any) -> GenerationRequest:
    return GenerationRequest([{"role": "user", "content": text}], max_tokens=max_tokens, constraint=constraint, **kw)


def test_declares_every_kind(local: Any) -> None:
    assert local.constraints == {"json_schema", "regex", "choice", "grammar"}


def test_pydantic_schema_gives_valid_json(local: Any) -> None:
    comp = local.generate([ask("Ann Lee is 31 and speaks French and Greek. Give her as JSON.",
                               Constraint.json(Person.model_json_schema()), max_tokens=60)])[0]
    person = Person.model_validate_json(comp.text)  # raises if not schema-valid
    assert person.name and comp.finish_reasons == ["stop"]
    assert comp.constraint_method == "llguidance"  # type: ignore[attr-defined]
    # the grammar forces the keys and punctuation: some tokens were not sampled, all are counted
    assert 0 < comp.forced_tokens < comp.completion_tokens  # type: ignore[attr-defined]


def test_plain_schema_with_enum_and_bounds(local: Any) -> None:
    schema = {"type": "object", "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "negative"]},
        "stars": {"type": "integer", "minimum": 1, "maximum": 5}}, "required": ["sentiment", "stars"],
        "additionalProperties": False}
    comp = local.generate([ask("Review: 'a wonderful film'. Rate it.", Constraint.json(schema))])[0]
    value = json.loads(comp.text)
    assert value["sentiment"] in ("positive", "negative") and 1 <= value["stars"] <= 5 and set(value) == {
        "sentiment", "stars"}


def test_regex(local: Any) -> None:
    comp = local.generate([ask("When did the Berlin wall fall? Give the date.", Constraint.regex(DATE))])[0]
    assert re.fullmatch(DATE, comp.text), comp.text


def test_choice(local: Any) -> None:
    options = ["positive", "negative", "neutral"]
    comps = local.generate([ask(f"Sentiment of: '{t}'?", Constraint.choice(options), logprobs=True)
                            for t in ("I loved it", "It was awful")])
    assert all(c.text in options for c in comps)
    first = comps[0].logprobs[0][0]
    # logprobs come from the masked distribution: only the options' first tokens are listed
    assert all(any(o.startswith(tok) for o in options) for tok in first.top if first.top[tok] > -1e9)


def test_lark_grammar(local: Any) -> None:
    comp = local.generate([ask("Greet Maria.", Constraint.grammar(GREETING))])[0]
    assert re.fullmatch(r"Hello, [A-Z][a-z]{1,12}!", comp.text), comp.text


def test_max_tokens_bounds_an_open_ended_grammar(local: Any) -> None:
    comp = local.generate([ask("Write letters.", Constraint.regex("[a-z ]+"), max_tokens=5)])[0]
    assert comp.completion_tokens <= 5 and comp.finish_reasons == ["length"]
    assert re.fullmatch("[a-z ]*", comp.text)


def test_batched_rows_with_and_without_constraints_answer_as_alone(local: Any) -> None:
    requests = [
        ask("Ann Lee is 31 and speaks French. JSON please.", Constraint.json(Person.model_json_schema()), 60),
        ask("What is the capital of France?", None, 16),
        ask("Sentiment of 'great fun'?", Constraint.choice(["positive", "negative"]), 16),
        ask("Greet Tom.", Constraint.grammar(GREETING), 16),
        ask("When was the moon landing?", Constraint.regex(DATE), 16),
    ]
    alone = [local.generate([r])[0] for r in requests]
    together = local.generate(requests)
    assert [c.text for c in together] == [c.text for c in alone]
    assert [c.completion_tokens for c in together] == [c.completion_tokens for c in alone]
    assert together[1].constraint_method is None and together[1].forced_tokens == 0  # the unconstrained row is untouched


def test_constrained_text_streams(local: Any) -> None:
    pieces: list[str] = []
    req = ask("Ann Lee is 31 and speaks French. JSON please.", Constraint.json(Person.model_json_schema()), 60,
              on_text=lambda i, t: pieces.append(t))
    comp = local.generate([req])[0]
    assert "".join(pieces) == comp.text and len(pieces) > 3
    Person.model_validate_json(comp.text)


def test_a_schema_the_engine_cannot_compile_names_its_path(local: Any) -> None:
    schema = {"type": "object", "properties": {
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}}
    with pytest.raises(BackendError) as info:
        local.check_request(ask("x", Constraint.json(schema)))
    assert "schema.properties.tags" in str(info.value) and "uniqueItems" in str(info.value)
    nested = {"type": "object", "properties": {"who": {"$ref": "#/$defs/P"}}, "$defs": {
        "P": {"type": "object", "properties": {"born": {"type": "string", "format": "weird"}}}}}
    with pytest.raises(BackendError, match=r"schema\.\$defs\.P\.properties\.born"):
        local.check_request(ask("x", Constraint.json(nested)))
    with pytest.raises(BackendError, match=r"schema\.properties\.age\.type"):  # not a schema at all
        local.check_request(ask("x", Constraint.json({"properties": {"age": {"type": "int"}}})))
    # in a batch it fails alone, before any decoding
    out = local.generate_each([ask("x", Constraint.json(schema)), ask("Say hi.", None, 4)])
    assert isinstance(out[0], BackendError) and isinstance(out[1], Completion)


def test_bad_regex_and_grammar_are_clear_errors(local: Any) -> None:
    with pytest.raises(BackendError, match="regex constraint cannot be compiled"):
        local.check_request(ask("x", Constraint.regex("(?<=a)b")))
    with pytest.raises(BackendError, match="grammar constraint cannot be compiled"):
        local.check_request(ask("x", Constraint.grammar("start: undefined_rule")))


def test_a_dead_end_grammar_stops_its_row_with_an_error(local: Any) -> None:
    requests = [ask("Say a.", Constraint.grammar(DEAD_END), 200), ask("Greet Tom.", Constraint.grammar(GREETING), 16)]
    comps = local.generate(requests)
    assert comps[0].finish_reasons == ["error"] and "dead end" in comps[0].error  # type: ignore[attr-defined]
    assert comps[0].completion_tokens < 200  # stopped, not run to max_tokens
    assert re.fullmatch(r"Hello, [A-Z][a-z]{1,12}!", comps[1].text)
    each = local.generate_each(requests)
    assert isinstance(each[0], BackendError) and "dead end" in str(each[0])
    assert isinstance(each[1], Completion) and each[1].text == comps[1].text


def test_a_task_with_a_schema_uses_the_decoder(local: Any) -> None:
    from openautoglm import Task
    from openautoglm.core.client import ModelClient

    task = Task(name="person", template="Extract the person: {text}", schema=Person, max_tokens=60)
    out = task.run_many(ModelClient(local), [{"text": "Ann Lee is 31 and speaks French and Greek."}],
                        step="x", record_keys=["0"])[0]
    assert out["valid"] is True and out["attempts"] == 1
    assert out["method"] == "constrained-decoding (llguidance)"
    Person.model_validate(out["output"])


def test_a_cached_answer_reports_what_the_fresh_one_did(local: Any, tmp_path: Any) -> None:
    """The response cache keeps how the constraint was applied: the same request gives the same
    result (method, forced tokens) whether it was decoded or read back from the store."""
    from openautoglm import Pipeline, Task

    task = Task(name="person", template="Extract the person: {text}", schema=Person, max_tokens=60)
    record = {"text": "Bo Chan is 40 and speaks Dutch."}
    first = Pipeline(model=local, task=task, store=tmp_path / "s.db")
    fresh = first.run(record)
    first.close()
    again = Pipeline(model=local, task=task, store=tmp_path / "s.db")
    cached = again.run(record)
    again.flush()
    calls = again.store.recent_calls(limit=10)
    again.close()
    assert any(c["cached"] for c in calls), calls  # the second answer did come from the cache
    assert fresh["method"] == "constrained-decoding (llguidance)"
    assert cached["method"] == fresh["method"] and cached["output"] == fresh["output"]


def test_completion_round_trip_keeps_the_constraint_facts() -> None:
    comp = Completion(texts=["{}"], finish_reasons=["stop"], completion_tokens=5, constraint_method="llguidance",
                      forced_tokens=3)
    back = Completion.from_dict(json.loads(json.dumps(comp.to_dict())))
    assert (back.constraint_method, back.forced_tokens, back.completion_tokens) == ("llguidance", 3, 5)
    plain = Completion.from_dict(Completion(texts=["x"], finish_reasons=["stop"]).to_dict())
    assert (plain.constraint_method, plain.forced_tokens) == (None, 0)
