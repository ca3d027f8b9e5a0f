"""Wrapper backends forward every capability of the Backend contract to the backend they wrap."""

from __future__ import annotations

from typing import Any

import pytest

from openautoglm.backends.base import Backend
from openautoglm.backends.delegate import CONTRACT_ATTRIBUTES, DelegatingBackend
from openautoglm.backends.fake import FakeBackend
from openautoglm.optimize.search import CountingBackend


class Unusual(FakeBackend):
    """A backend whose every capability differs from the Backend defaults."""

    name = "unusual"
    can_score = False
    score_method = "student"
    supports_json_schema = True
    max_context = 1234
    deterministic = False
    can_featurize = True
    feature_poolings = ("mean", "last")
    num_layers = 7
    reads_fields = True
    constraints = frozenset({"choice"})
    label_format = "text"


def _wrappers(inner: Backend) -> list[Backend]:
    wrappers: list[Backend] = [DelegatingBackend(inner), CountingBackend(inner)]
    try:
        from openautoglm.serve.batching import BatchingBackend
    except ImportError:  # the server extra is not installed
        return wrappers
    return wrappers + [BatchingBackend(inner, enabled=False)]


def test_the_contract_lists_every_capability() -> None:
    # a new capability flag on Backend must reach the wrappers without editing them
    assert {"name", "model", "can_score", "score_method", "supports_json_schema", "max_context", "deterministic",
            "can_featurize", "feature_poolings", "num_layers"} <= set(CONTRACT_ATTRIBUTES)


@pytest.mark.parametrize("attribute", CONTRACT_ATTRIBUTES)
def test_wrappers_forward_each_capability(attribute: str) -> None:
    inner = Unusual(model="m-1")
    expected: Any = getattr(inner, attribute)
    if attribute not in ("name", "model"):
        assert expected != getattr(Backend, attribute), "the test backend must differ from the default"
    for wrapper in _wrappers(inner):
        assert getattr(wrapper, attribute) == expected, (type(wrapper).__name__, attribute)


def test_wrappers_forward_identity_and_tokens() -> None:
    inner = Unusual(model="m-2")
    for wrapper in _wrappers(inner):
        assert wrapper.identity() == inner.identity()
        assert wrapper.count_tokens("four words in here") == inner.count_tokens("four words in here")
