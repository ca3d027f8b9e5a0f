"""Micro-batching on the real embedded model: concurrent requests share forward passes and
get the same answers as requests sent one at a time."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from openautoglm.backends.base import GenerationRequest
from openautoglm.serve.batching import BatchingBackend

pytestmark = pytest.mark.slow

REVIEWS = [
    "an absolute delight, wonderful acting and a great story.",
    "a dull, boring, terrible mess.",
    "one of the best films of the year.",
    "it drags on and on, and nothing happens.",
]


def test_batched_answers_match_one_at_a_time() -> None:
    local = pytest.importorskip("openautoglm.backends.local")
    inner = local.LocalBackend()
    sizes: list[int] = []
    backend = BatchingBackend(inner, window_ms=50, max_batch=16, on_batch=lambda k, n, s: sizes.append(n))
    prompts = [f"Review: {r}\nSentiment:" for r in REVIEWS]
    alone = [inner.score(p, [" positive", " negative"]) for p in prompts]
    gens_alone = [inner.generate([GenerationRequest(p, max_tokens=4)])[0].text for p in prompts[:2]]
    barrier = threading.Barrier(len(prompts))

    def score(p: str) -> list[float]:
        barrier.wait()
        return backend.score(p, [" positive", " negative"])

    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(score, prompts))
    assert len(sizes) < len(prompts) and max(sizes) > 1  # shared forward passes
    for a, b in zip(alone, together):
        # batch shapes differ between the two ways; bf16 scoring GEMMs round differently per shape
        # (drift measured up to ~0.08 nats, as in tests/integration/test_local_backend.py)
        assert a == pytest.approx(b, abs=0.15)
        assert (a[0] > a[1]) == (b[0] > b[1])
    barrier2 = threading.Barrier(2)

    def gen(p: str) -> str:
        barrier2.wait()
        return backend.generate([GenerationRequest(p, max_tokens=4)])[0].text

    with ThreadPoolExecutor(2) as pool:
        gens = list(pool.map(gen, prompts[:2]))
    assert gens == gens_alone  # greedy decoding gives the same text in a batch
    backend.close()
