"""The hot path's JSON (orjson where it agrees with the standard library) against the standard
library itself: same text or same meaning, non-finite floats never stored or hashed as null."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from enum import Enum

import pytest

from openautoglm.backends.base import GenerationRequest, ScoreRequest, request_key
from openautoglm.store import fastjson
from openautoglm.store.fastjson import canonical_bytes, dumps

STORE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))

VALUES = [
    {"continuations": [" positive", " negative"]},
    [{"role": "user", "content": "Classify: \u00e9t\u00e9 \u4e2d\u6587 \U0001f600 \"q\" \\ \x00\x1f\x7f\n"}],
    {" positive": -0.1053605156578263, " negative": -2.3025850929940455},
    {"logprobs": [-0.1, -2.3], "lengths": [1, 1], "prompt_tokens": 21, "latency_s": 0.0, "cached": False},
    {"texts": ["a", "b"], "tokens": 7, "nested": {"b": [1, 2.5, True], "a": {}}},
]


@pytest.mark.parametrize("value", VALUES)
def test_storage_text_parses_to_the_same_value(value: object) -> None:
    assert json.loads(dumps(value)) == json.loads(STORE.encode(value))


@pytest.mark.parametrize("value", VALUES)
def test_canonical_bytes_equal_the_standard_librarys(value: object) -> None:
    assert canonical_bytes(value) == CANONICAL.encode(value).encode("utf-8")


@pytest.mark.parametrize("bad", [float("-inf"), float("inf"), float("nan")])
def test_non_finite_floats_are_never_null(bad: float) -> None:
    text = dumps({"logprobs": [-0.5, bad]})
    back = json.loads(text)["logprobs"][1]
    assert back is not None and (math.isnan(back) if math.isnan(bad) else back == bad)
    assert canonical_bytes({"x": bad}) != canonical_bytes({"x": None}, nulls=1)


class Colour(str, Enum):
    RED = "red"


@dataclass
class Point:
    x: int


def test_types_orjson_would_spell_differently_go_to_the_standard_library() -> None:
    np = pytest.importorskip("numpy")
    for value in ({"p": np.float64(0.25)}, {"c": Colour.RED}, {"pt": Point(1)}, {"big": 2**80}, {"s": "\ud800"}):
        assert dumps(value) == STORE.encode(value)


@pytest.mark.parametrize("question", ["R\u00e9sum\u00e9?", "is it null?"])
def test_request_keys_keep_their_bytes_for_chat_prompts(question: str) -> None:
    """Stores written before orjson keep answering: a chat prompt's key is the same hash."""
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]
    for req, kind in ((ScoreRequest(chat, ("yes", "no")), "score"),
                      (GenerationRequest(chat, max_tokens=16, temperature=0.0), "generate")):
        payload = req.cache_payload()
        old = hashlib.sha256(CANONICAL.encode({"backend": "b:m", "kind": kind, "payload": payload})
                             .encode("utf-8", "surrogatepass")).hexdigest()
        assert request_key("b:m", kind, payload) == old


def test_without_orjson_the_standard_library_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastjson, "orjson", None)
    assert dumps(VALUES[2]) == STORE.encode(VALUES[2])
    assert canonical_bytes(VALUES[4]) == CANONICAL.encode(VALUES[4]).encode("utf-8")


def test_the_fast_path_answers_a_plain_generation_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A generate request's own None fields (seed, json_schema) do not send it to the slow path."""
    class Refuse:
        def encode(self, value: object) -> str:
            raise AssertionError("the standard library was asked")

    payload = GenerationRequest([{"role": "user", "content": "hi"}], max_tokens=8).cache_payload()
    expected = request_key("b:m", "generate", payload)
    monkeypatch.setattr(fastjson, "_CANONICAL", Refuse())
    assert request_key("b:m", "generate", payload) == expected
