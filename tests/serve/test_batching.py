"""Micro-batching merges concurrent calls into one backend call, keeps answers in order,
isolates failures, and passes calls straight through when switched off."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import pytest

from openautoglm.backends.base import GenerationRequest, ScoreRequest, ScoreResult
from openautoglm.backends.fake import FakeBackend
from openautoglm.errors import BackendError
from openautoglm.serve.batching import BatchingBackend


class CountingFake(FakeBackend):
    """Records the size of every call it receives."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.sizes: list[int] = []
        self._lock = threading.Lock()

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        with self._lock:
            self.sizes.append(len(requests))
            for r in requests:
                if "EXPLODE" in str(r.prompt):
                    raise BackendError("prompt too long")
            return super().score_batch(requests)

    def generate(self, requests):  # type: ignore[no-untyped-def]
        with self._lock:
            self.sizes.append(len(requests))
            return super().generate(requests)


def _concurrently(fn, items, workers=16):  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(workers)

    def run(item):  # type: ignore[no-untyped-def]
        barrier.wait()
        return fn(item)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(run, items))


def test_concurrent_scores_share_backend_calls_and_stay_in_order() -> None:
    inner = CountingFake(delay_s=0.01)
    backend = BatchingBackend(inner, window_ms=30, max_batch=64)
    texts = [f"review number {i} is good" for i in range(16)]
    got = _concurrently(lambda t: backend.score(t, ["good", "bad"]), texts)
    expected = [inner.score(t, ["good", "bad"]) for t in texts]
    assert got == expected
    assert sum(inner.sizes[:-16]) == 16  # the concurrent calls...
    assert len(inner.sizes) - 16 < 16  # ...took fewer backend calls than requests
    assert max(inner.sizes[:-16]) > 1
    backend.close()


def test_max_batch_bounds_each_call() -> None:
    inner = CountingFake(delay_s=0.005)
    backend = BatchingBackend(inner, window_ms=50, max_batch=4)
    _concurrently(lambda i: backend.generate([GenerationRequest(f"hi {i}", max_tokens=4)]), range(16))
    assert sum(inner.sizes) == 16 and max(inner.sizes) <= 4
    backend.close()


def test_disabled_passes_each_call_through() -> None:
    inner = CountingFake()
    backend = BatchingBackend(inner, enabled=False)
    _concurrently(lambda i: backend.generate([GenerationRequest(f"hi {i}", max_tokens=4)]), range(8), workers=8)
    assert inner.sizes == [1] * 8
    assert backend.batches == 0 and backend.queue_depth == 0


def test_one_bad_request_fails_alone() -> None:
    inner = CountingFake()
    backend = BatchingBackend(inner, window_ms=40, max_batch=64)
    prompts = ["fine one", "EXPLODE here", "fine two", "fine three"]

    def call(p: str):  # type: ignore[no-untyped-def]
        try:
            return backend.score(p, ["fine", "bad"])
        except BackendError as exc:
            return exc

    out = _concurrently(call, prompts, workers=4)
    assert isinstance(out[1], BackendError)
    assert all(isinstance(o, list) and len(o) == 2 for i, o in enumerate(out) if i != 1)
    backend.close()


def test_hook_sees_every_backend_call_and_close_stops() -> None:
    seen: list[tuple[str, int]] = []
    backend = BatchingBackend(FakeBackend(), window_ms=1, on_batch=lambda k, n, s: seen.append((k, n)))
    backend.score("a", ["x", "y"])
    backend.generate([GenerationRequest("b"), GenerationRequest("c")])
    assert seen == [("score", 1), ("generate", 2)]
    assert backend.describe()["micro_batching"] is True
    backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backend.score("a", ["x", "y"])


def test_label_heads_work_through_the_batcher():
    """A task with a model-feature head (what the optimizer writes) must run behind the server's batcher."""
    import numpy as np

    from openautoglm.backends.fake import FakeBackend
    from openautoglm.core.client import ModelClient
    from openautoglm.core.task import Task
    from openautoglm.serve.batching import BatchingBackend

    class Featurizing(FakeBackend):
        can_featurize, num_layers = True, 2

        def features(self, texts, layers, pooling="mean"):  # type: ignore[no-untyped-def]
            return np.array([[[float("good" in t), float("bad" in t)]] * len(layers) for t in texts], dtype=np.float32)

    pool = [{"text": f"{w} {i}", "output": lab} for i in range(6) for w, lab in (("good", "pos"), ("bad", "neg"))]
    task = Task(name="s", template="{text}", labels=["pos", "neg"], format="text", head={"pool": pool, "C": 1.0})
    batcher = BatchingBackend(Featurizing())
    out = task.run_many(ModelClient(batcher, trace=False), [{"text": "so good"}, {"text": "so bad"}], step="s",
                        record_keys=["0", "1"])
    assert [o["label"] for o in out] == ["pos", "neg"]


def test_clients_in_a_closed_loop_are_merged_into_full_batches() -> None:
    """Callers that send their next request shortly after the last one returns (an HTTP
    round trip) arrive in waves; the leader waits for the last batch's callers (bounded by
    a share of its duration), so the waves merge instead of alternating between part batches."""
    inner = CountingFake(delay_s=0.2)
    backend = BatchingBackend(inner, window_ms=1, max_batch=64)
    clients, rounds = 8, 5

    def client(i: int) -> None:
        for r in range(rounds):
            backend.score(f"client {i} round {r}", ["good", "bad"])
            time.sleep(0.002 * (1 + i))  # the round trip: some clients are back sooner than others

    _concurrently(client, range(clients), workers=clients)
    assert sum(inner.sizes) == clients * rounds
    steady = inner.sizes[2:]  # the first wave may be split by arrival
    assert steady and max(steady) == clients
    assert sum(steady) / len(steady) >= 0.75 * clients, inner.sizes
