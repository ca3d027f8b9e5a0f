"""Batch invariance of the local backend on the real embedded model.

A request's log-probabilities must be a function of the request alone: not of the other
requests in its batch, of the prefix-cache state, of how a batch is chunked, or of the
process (see "Determinism" in docs/backends.md).  Every comparison here is exact (``==``
on floats); a tolerance would hide exactly the drift these tests exist to catch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from openautoglm.backends.base import GenerationRequest, ScoreRequest

pytestmark = pytest.mark.slow

REVIEW = "Review: {}\nSentiment:"
SHOTS = "".join(f"Review: {t}\nSentiment: {lab}\n\n" for t, lab in (
    ("a gorgeous, witty, seductive movie .", "positive"),
    ("the plot is nothing but boilerplate clichés from start to finish , and the acting is wooden", "negative"),
    ("an utterly charming and hilarious film that reminded me why i love going to the cinema", "positive"),
    ("it is a long , slow , and ultimately pointless exercise in style over substance", "negative"),
) * 3)  # > 64 tokens: the cached few-shot prefix spans several key blocks
LABELS = (" positive", " negative")
LONG_LABELS = (" positive", " negative", " very mixed feelings indeed", " very mixed")

TARGET = ScoreRequest(SHOTS + REVIEW.format("a moving , funny and beautifully acted story"), LONG_LABELS)
NEIGHBOURS = [
    ScoreRequest(SHOTS + REVIEW.format("dull"), LABELS),  # shares the few-shot prefix, shorter
    ScoreRequest(SHOTS + REVIEW.format("one of the most " + "tedious , " * 20 + "films of the year"), LONG_LABELS),
    ScoreRequest(REVIEW.format("ok"), LABELS),  # no shared prefix, very short
    ScoreRequest(REVIEW.format("a sprawling " + "and overlong " * 40 + "mess"), (" positive", " card arrival")),
    ScoreRequest("Customer message: where is my new card?\nIntent:", (" card arrival", " card linking", " card")),
]


@pytest.fixture()
def backend(local_backend):
    """The shared backend with its default settings restored after each test."""
    gemm, max_tokens = dict(local_backend._gemm), local_backend.max_batch_tokens
    local_backend._prefix_cache.clear()
    yield local_backend
    local_backend._gemm.update(gemm)
    local_backend.max_batch_tokens = max_tokens
    local_backend._prefix_cache.clear()


def score_alone(backend, request: ScoreRequest) -> list[float]:
    backend._prefix_cache.clear()
    return backend.score_batch([request])[0].logprobs


@pytest.mark.parametrize("gemm", ["default", "fp32"])
def test_a_request_scores_the_same_in_any_batch_and_cache_state(backend, gemm):
    if gemm != "default":
        backend._gemm["score"] = gemm
    alone = score_alone(backend, TARGET)
    assert len(set(alone)) == len(alone)  # real, distinct scores

    runs = {}
    runs["again, whole prompt cached"] = backend.score_batch([TARGET])[0].logprobs
    backend._prefix_cache.clear()
    backend.score_batch([NEIGHBOURS[0]])  # another prompt warms the cache with the few-shot prefix
    runs["after a neighbour warmed the cache"] = backend.score_batch([TARGET])[0].logprobs
    for size in (1, 2, 3, len(NEIGHBOURS)):
        backend._prefix_cache.clear()
        batch = NEIGHBOURS[:size] + [TARGET]
        runs[f"with {size} neighbour(s)"] = backend.score_batch(batch)[-1].logprobs
        runs[f"with {size} neighbour(s), target first"] = backend.score_batch([TARGET] + NEIGHBOURS[:size])[0].logprobs
    runs["with neighbours not sharing the prefix"] = backend.score_batch(NEIGHBOURS[2:] + [TARGET])[-1].logprobs
    for limit in (64, 200, 5000):  # chunks of other sizes, other padding
        backend.max_batch_tokens = limit
        backend._prefix_cache.clear()
        runs[f"max_batch_tokens={limit}"] = backend.score_batch(NEIGHBOURS + [TARGET])[-1].logprobs
    # each continuation on its own, and as separate requests of one batch (how the
    # OpenAI-compatible server receives "echo" scoring requests)
    runs["one continuation per call"] = [score_alone(backend, ScoreRequest(TARGET.prompt, (c,)))[0]
                                         for c in TARGET.continuations]
    split = backend.score_batch([ScoreRequest(TARGET.prompt, (c,)) for c in TARGET.continuations])
    runs["continuations as separate requests"] = [r.logprobs[0] for r in split]
    reordered = backend.score_batch([ScoreRequest(TARGET.prompt, TARGET.continuations[::-1])])[0].logprobs
    runs["continuations in reverse order"] = reordered[::-1]

    differ = {name: [a - b for a, b in zip(got, alone)] for name, got in runs.items() if got != alone}
    assert not differ, differ


def test_scores_are_identical_in_a_fresh_process(backend):
    requests = [TARGET] + NEIGHBOURS
    here = [r.logprobs for r in backend.score_batch(requests)]
    code = textwrap.dedent(f"""
        import json, sys
        from openautoglm.backends.base import ScoreRequest
        from openautoglm.backends.local import LocalBackend
        reqs = [ScoreRequest(p, tuple(c)) for p, c in json.loads(sys.stdin.read())]
        backend = LocalBackend()
        alone = [backend.score_batch([r])[0].logprobs for r in reqs]
        print(json.dumps(alone))
    """)
    env = {k: v for k, v in os.environ.items() if k != "OPENAUTOGLM_PRECISION"}
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps([[r.prompt, r.continuations] for r in requests]),
                         capture_output=True, text=True, env=env, timeout=600, check=True)
    there = json.loads(out.stdout.strip().splitlines()[-1])  # JSON floats round-trip exactly
    assert there == here


def test_linear_layers_give_each_row_the_same_result_whatever_the_row_count(backend):
    torch = pytest.importorskip("torch")
    net = backend.net
    layer = net.layers[0]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, net.config.hidden_size, generator=gen)
    for gemm in ("fp32", "bf16", "fp16"):
        for name in ("qkv", "o", "gate_up", "down"):  # every product of a layer (their shapes differ)
            rows = torch.randn(300, layer[name].weight.shape[1], generator=gen)
            full = layer[name](rows, gemm)
            differ = [m for m in (*range(1, 40), 48, 49, 57, 63, 64, 65, 96, 127, 160, 200, 299)
                      if not torch.equal(layer[name](rows[:m], gemm), full[:m])]
            assert not differ, (gemm, name, differ)
        full = net.logits(x[:40], gemm)
        differ = [m for m in range(1, 40) if not torch.equal(net.logits(x[:m], gemm), full[:m])]
        assert not differ, (gemm, "lm_head", differ)


@pytest.mark.parametrize("decode", ["default", "fp32"])
def test_greedy_generation_is_batch_invariant(backend, decode):
    """Same text and token log-probs alone and beside other prompts.  Under ``auto`` a
    decode step of more than 8 rows switches from fp16 to fp32 weights (documented), so
    the default case keeps to 8 rows; with fp32 decoding any batch size qualifies."""
    if decode == "fp32":
        backend._gemm["decode"] = "fp32"
    target = GenerationRequest([{"role": "user", "content": "Write a short poem about the sea."}],
                               max_tokens=24, logprobs=True)
    prompts = ["Hi", "Name a colour.", "What is two plus two? Answer with a number only, no words at all, please.",
               "Tell me a long story about a lighthouse keeper and his cat, with many details.",
               "Say yes.", "List three fruits.", "Why is the sky blue?", "Count to five.", "Write one word."]
    others = [GenerationRequest([{"role": "user", "content": c}], max_tokens=24, logprobs=True) for c in prompts]

    def signature(comp):  # type: ignore[no-untyped-def]
        return comp.text, [t.logprob for t in comp.logprobs[0]]

    alone = signature(backend.generate([target])[0])
    batches = [others[:1] + [target], others[:4] + [target], [target] + others[2:5]]
    if decode == "fp32":
        batches.append(others + [target])
    for batch in batches:
        backend._prefix_cache.clear()
        assert signature(backend.generate(batch)[batch.index(target)]) == alone


def test_features_do_not_depend_on_the_batch(backend):
    import numpy as np

    texts = ["a wonderful, moving film", "dull", "a sprawling " + "and overlong " * 30 + "mess"]
    together = backend.features(texts, [3, -1], "mean,last")
    for i, text in enumerate(texts):
        assert np.array_equal(backend.features([text], [3, -1], "mean,last")[0], together[i])
