"""``run_each``: a failing batch is narrowed down so that one bad request fails alone."""

from __future__ import annotations

import pytest

from openautoglm.backends.base import run_each
from openautoglm.errors import BackendError, EndpointUnavailable


def _runner(bad: set[str], batches: list[list[str]]):  # type: ignore[no-untyped-def]
    def run(requests: list[str]) -> list[str]:
        batches.append(list(requests))
        if bad & set(requests):
            raise ValueError(f"cannot handle {sorted(bad & set(requests))[0]}")
        return [r.upper() for r in requests]
    return run


def _no_check(request: str) -> None:
    return None


def test_one_bad_request_fails_alone_and_the_rest_stay_batched() -> None:
    requests = [f"r{i}" for i in range(64)]
    batches: list[list[str]] = []
    out = run_each(_runner({"r37"}, batches), _no_check, requests)
    assert [o for o in out if isinstance(o, BackendError)] == [out[37]]
    assert "ValueError: cannot handle r37" in str(out[37])
    assert [o for i, o in enumerate(out) if i != 37] == [r.upper() for i, r in enumerate(requests) if i != 37]
    assert len(batches) <= 2 * 6 + 1  # halving, not 64 single calls
    assert sum(len(b) for b in batches if "r37" not in b) == 63  # each good request answered once


def test_refused_requests_never_reach_the_backend() -> None:
    batches: list[list[str]] = []

    def check(request: str) -> None:
        if request == "huge":
            raise BackendError("too long")

    out = run_each(_runner(set(), batches), check, ["a", "huge", "b"])
    assert out[0] == "A" and out[2] == "B" and str(out[1]) == "too long"
    assert batches == [["a", "b"]]


def test_an_unreachable_endpoint_still_stops_everything() -> None:
    def run(requests: list[str]) -> list[str]:
        raise EndpointUnavailable("connection refused")

    with pytest.raises(EndpointUnavailable):
        run_each(run, _no_check, ["a", "b"])
