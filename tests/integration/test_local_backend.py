"""The local backend on the real embedded model: correctness of the lean runtime."""

from __future__ import annotations

import math

import pytest

from openautoglm.backends.base import GenerationRequest, ScoreRequest

pytestmark = pytest.mark.slow

REVIEW = "Review: {}\nSentiment:"


def test_lite_runtime_matches_transformers_logits(local_backend):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(local_backend.files.directory), dtype=torch.float32)
    ids = torch.tensor([local_backend.tokenizer.encode("The capital of France is Paris. The capital of Italy is")])
    with torch.no_grad():
        ref = hf(ids).logits[0]
    net = local_backend.net
    valid = torch.ones_like(ids, dtype=torch.bool)
    out = {g: net.logits(net.forward(ids, valid, gemm=g)[0], g)[0] for g in ("fp32", "bf16", "fp16")}
    assert torch.allclose(ref, out["fp32"], atol=1e-3), float((ref - out["fp32"]).abs().max())
    # reduced-precision GEMMs round, but keep the distribution: same next token, close log-probs
    top = ref.log_softmax(-1) > -6  # the tokens that matter
    for g in ("bf16", "fp16"):
        assert torch.equal(ref.argmax(-1), out[g].argmax(-1)), g
        drift = (ref.log_softmax(-1) - out[g].log_softmax(-1)).abs()
        assert float(drift[top].max()) < 0.5, (g, float(drift[top].max()))


@pytest.mark.parametrize("gemm", ["fp32", "bf16"])
def test_batched_prefix_scoring_equals_one_by_one(local_backend, monkeypatch, gemm):
    # batch shapes and shared prefixes differ between the two ways, yet the scores are the
    # same to the bit in both precisions (batch-invariant kernels: test_determinism.py)
    monkeypatch.setitem(local_backend._gemm, "score", gemm)
    texts = ["a gorgeous, witty, seductive movie .", "the plot is nothing but boilerplate clichés", "ok"]
    reqs = [ScoreRequest(REVIEW.format(t), (" positive", " negative", " very mixed feelings")) for t in texts]
    together = local_backend.score_batch(reqs)
    for req, batched in zip(reqs, together):
        alone = local_backend.score_batch([req])[0]
        assert batched.lengths == alone.lengths
        assert batched.logprobs == alone.logprobs
    # multi-token continuation really sums several token log-probs
    assert together[0].lengths[2] > 1
    assert all(lp < 0 for r in together for lp in r.logprobs)


def test_continuations_sharing_leading_tokens_score_as_full_sequences(local_backend, monkeypatch):
    """Continuations run as a trie of shared prefixes (one row per prompt, tree attention)
    give the log-probs of running prompt + continuation as one plain sequence."""
    torch = pytest.importorskip("torch")
    from openautoglm.backends.local import _continuation_trie

    monkeypatch.setitem(local_backend._gemm, "score", "fp32")
    conts = (" card arrival", " card linking", " card", " cash withdrawal charge", " cash withdrawal not recognised")
    tok = local_backend.tokenizer
    nodes, _ = _continuation_trie([tok.encode(c) for c in conts])
    assert len(nodes) < sum(len(tok.encode(c)) - 1 for c in conts)  # shared prefixes run once
    prompts = ["Customer message: where is my new card?\nIntent:", "Customer message: the ATM kept my money\nIntent:"]
    results = local_backend.score_batch([ScoreRequest(p, conts) for p in prompts])
    net = local_backend.net
    for prompt, res in zip(prompts, results):
        p_ids = tok.encode(prompt)
        for cont, got in zip(conts, res.logprobs):
            c_ids = tok.encode(cont)
            ids = torch.tensor([p_ids + c_ids])
            hidden, _ = net.forward(ids, torch.ones_like(ids, dtype=torch.bool), gemm="fp32")
            lp = net.logits(hidden, "fp32")[0].log_softmax(-1)
            want = sum(float(lp[len(p_ids) - 1 + j, t]) for j, t in enumerate(c_ids))
            assert math.isclose(got, want, abs_tol=1e-3), (cont, got, want)


def test_scores_rank_sentiment(local_backend):
    pos, neg = local_backend.score_batch([
        ScoreRequest(REVIEW.format("an absolute delight , wonderful acting and a great story ."), (" positive", " negative")),
        ScoreRequest(REVIEW.format("a dull , boring , terrible mess ."), (" positive", " negative")),
    ])
    margin_pos = pos.logprobs[0] - pos.logprobs[1]
    margin_neg = neg.logprobs[0] - neg.logprobs[1]
    assert margin_pos > margin_neg


def test_generate_greedy_is_deterministic_and_stops(local_backend):
    req = GenerationRequest([{"role": "user", "content": "What is the capital of France?"}], max_tokens=24)
    a, b = local_backend.generate([req, req])
    assert a.text == b.text and "Paris" in a.text
    assert a.finish_reasons[0] in ("stop", "length") and 0 < a.completion_tokens <= 24
    stopped = local_backend.generate([GenerationRequest("1, 2, 3, 4,", max_tokens=20, stop=(" 7",))])[0]
    assert " 7" not in stopped.text and stopped.finish_reasons == ["stop"]


def test_sampling_n_and_logprobs(local_backend):
    req = GenerationRequest("Once upon a time", max_tokens=8, temperature=1.0, n=3, seed=1, logprobs=True)
    comp = local_backend.generate([req])[0]
    assert len(comp.texts) == 3 and comp.logprobs is not None and len(comp.logprobs) == 3
    assert all(lp.logprob <= 0 for choice in comp.logprobs for lp in choice)
    again = local_backend.generate([req])[0]
    assert again.texts == comp.texts  # same seed, same samples


def test_context_overflow_is_a_clear_error(local_backend):
    from openautoglm.errors import BackendError

    with pytest.raises(BackendError, match="exceeds the model's context"):
        local_backend.score_batch([ScoreRequest("word " * 9000, (" a", " b"))])


def test_partial_prefix_reuse_gives_the_same_answers_and_skips_the_shared_part(local_backend, monkeypatch):
    """A retry prompt that differs from a cached one only after a long shared part reuses
    the shared KV cache (truncated), and answers exactly as a cold backend would."""
    shared = "Schema: singer(name, age, country).\n" * 12 + "Question: how many singers are there?\n"
    first = shared + "SQL:"
    retry = shared + "Earlier answer was rejected: no such column nme.\nSQL:"
    fed: list[int] = []
    forward = local_backend.net.forward

    def counting_forward(ids, *args, **kwargs):  # type: ignore[no-untyped-def]
        fed.append(int(ids.shape[0] * ids.shape[1]))
        return forward(ids, *args, **kwargs)

    local_backend._prefix_cache.clear()
    monkeypatch.setattr(local_backend.net, "forward", counting_forward)
    request = dict(max_tokens=8, temperature=0.0)
    local_backend.generate([GenerationRequest(first, **request)])
    fed.clear()
    warm = local_backend.generate([GenerationRequest(retry, **request)])[0].text
    retry_tokens = len(local_backend.tokenizer.encode(local_backend.tokenizer.render(retry)))
    shared_tokens = len(local_backend.tokenizer.encode(shared))
    assert fed[0] <= retry_tokens - shared_tokens + 2  # only the differing tail was prefilled
    local_backend._prefix_cache.clear()
    fed.clear()
    cold = local_backend.generate([GenerationRequest(retry, **request)])[0].text
    assert fed[0] == retry_tokens  # a lone cold prompt: one pass over all its tokens
    assert set(fed[1:]) == {1}  # then one token per decode step
    assert warm == cold


def test_features_are_token_averaged_hidden_states_of_the_asked_blocks(local_backend):
    import numpy as np

    from openautoglm.errors import BackendError

    texts = ["a wonderful, moving film", "dull and far too long", ""]
    feats = local_backend.features(texts, [3, -1])
    assert feats.shape == (3, 2, local_backend.net.config.hidden_size) and feats.dtype == np.float32
    top = local_backend.features(texts[:1], [local_backend.num_layers - 1])
    assert np.array_equal(top[0, 0], feats[0, 1])  # -1 is the top block; batching changes nothing
    assert not np.allclose(feats[0, 0], feats[1, 0])
    with pytest.raises(BackendError, match="does not exist"):
        local_backend.features(texts, [local_backend.num_layers])
    with pytest.raises(BackendError, match="unknown pooling"):
        local_backend.features(texts, [3], "max")


def test_last_token_features_are_the_state_where_the_model_answers(local_backend):
    import numpy as np
    import torch

    texts = ["Review: a wonderful, moving film\nSentiment:", "Review: dull\nSentiment:"]
    both = local_backend.features(texts, [4], "mean,last")
    mean, last = local_backend.features(texts, [4], "mean"), local_backend.features(texts, [4], "last")
    hidden = local_backend.net.config.hidden_size
    assert both.shape == (2, 1, 2 * hidden)
    assert np.allclose(both[..., :hidden], mean, atol=1e-3) and np.allclose(both[..., hidden:], last, atol=1e-3)
    # the last token's state of block 4, computed by hand from a full pass of the second text alone
    ids = torch.tensor([local_backend.tokenizer.encode(texts[1])])
    states: list = []
    rms = local_backend.net._rms
    local_backend.net._rms = lambda h, w: (states.append(h), rms(h, w))[1]
    try:
        local_backend.net.forward(ids, torch.ones_like(ids, dtype=torch.bool), None, local_backend._gemm["score"])
    finally:
        del local_backend.net._rms
    block4_out = states[2 * 5]  # inputs of each block's two norms: block 4's output feeds block 5's first
    assert np.allclose(block4_out[0, -1].float().numpy(), last[1, 0], atol=2e-2)
    assert not np.allclose(mean[1, 0], last[1, 0], atol=1e-2)


def test_a_linear_probe_of_the_model_separates_sentiment(local_backend):
    from openautoglm.core.client import ModelClient
    from openautoglm.core.task import Task

    pool = [{"text": t, "output": "positive"} for t in (
        "a delight from start to finish", "wonderful acting and a moving story", "i loved every minute",
        "brilliant, funny and warm", "a beautiful film", "great fun for the whole family")] + [
        {"text": t, "output": "negative"} for t in (
        "a boring mess", "i hated every minute", "dull, slow and far too long", "the worst film of the year",
        "badly acted and badly written", "a tedious waste of time")]
    task = Task(name="s", template="Review: {text}", labels=["positive", "negative"], format="text",
                head={"pool": pool, "C": 0.1})
    tests = [("an absolute joy to watch", "positive"), ("painfully boring", "negative"),
             ("warm, witty and wonderful", "positive"), ("a dreadful, tedious film", "negative")]
    out = task.run_many(ModelClient(local_backend, trace=False), [{"text": t} for t, _ in tests], step="s",
                        record_keys=["0", "1", "2", "3"])
    assert [o["label"] for o in out] == [g for _, g in tests]
    assert out[0]["method"].startswith("head(layers ")


def test_generation_reports_text_between_decode_steps_and_never_a_stop_string(local_backend, monkeypatch):
    from openautoglm.backends.base import GenerationRequest

    forwards = []
    real_forward = local_backend.net.forward
    monkeypatch.setattr(local_backend.net, "forward", lambda *a, **k: forwards.append(1) or real_forward(*a, **k))
    seen: list[tuple[int, str, int]] = []
    req = GenerationRequest("Count from one to ten: one, two,", max_tokens=24, stop=("seven",),
                            on_text=lambda i, text: seen.append((i, text, len(forwards))))
    (comp,) = local_backend.generate([req])
    plain = local_backend.generate([GenerationRequest(req.prompt, max_tokens=24, stop=("seven",))])[0]
    assert comp.text == plain.text  # streaming changes nothing in the answer
    assert "".join(t for _, t, _ in seen) == comp.text and all(i == 0 for i, _, _ in seen)
    assert len({n for _, _, n in seen}) >= 3  # pieces arrived after different decode steps, not at the end
    assert all("seven" not in t for _, t, _ in seen)


def test_prompts_prefilled_in_several_chunks_decode_together_and_match_one_by_one(local_backend, monkeypatch):
    """Generation prefills in chunks of max_batch_tokens but decodes all rows in one step
    (their caches padded side by side); answers equal those of one prompt at a time."""
    monkeypatch.setitem(local_backend._gemm, "decode", "fp32")  # same precision whatever the row count
    monkeypatch.setattr(local_backend, "max_batch_tokens", 64)
    prompts = ["Name a colour.", "Write one word about the sea and nothing else, please.",
               "Say hello.", "What is two plus two? Answer with a number only, no words at all."]
    requests = [GenerationRequest([{"role": "user", "content": p}], max_tokens=6, temperature=0.0) for p in prompts]
    steps: list[int] = []
    forward = local_backend.net.forward

    def counting_forward(ids, *args, **kwargs):  # type: ignore[no-untyped-def]
        steps.append(int(ids.shape[0]) if ids.shape[1] == 1 else -1)
        return forward(ids, *args, **kwargs)

    monkeypatch.setattr(local_backend.net, "forward", counting_forward)
    together = [c.text for c in local_backend.generate(requests)]
    assert steps.count(-1) >= 2  # the prompts did not fit one prefill chunk
    assert max(steps) == len(prompts)  # ...yet the first decode step carried every row
    alone = [local_backend.generate([r])[0].text for r in requests]
    assert together == alone


def test_lone_surrogates_in_prompts_become_replacement_characters(local_backend):
    from openautoglm.backends.chat_tokenizer import well_formed

    tok = local_backend.tokenizer
    assert well_formed("plain") == "plain"
    assert well_formed("a\ud800b\udfff") == "a\ufffdb\ufffd"
    assert well_formed("\ud83d\ude00") == "\U0001F600"  # a high + low pair is the character it encodes
    assert tok.encode("bad \ud800 text") == tok.encode("bad \ufffd text")
    assert tok.encode_batch(["x\udc00", "ok"]) == [tok.encode("x\ufffd"), tok.encode("ok")]
    assert local_backend.count_tokens("\ud800") == len(tok.encode("\ufffd"))
    broken = local_backend.score_batch([ScoreRequest(REVIEW.format("fine \ud800 film"), (" positive", " negative \udfff"))])
    clean = local_backend.score_batch([ScoreRequest(REVIEW.format("fine \ufffd film"), (" positive", " negative \ufffd"))])
    assert broken[0].logprobs == clean[0].logprobs
    chat = [{"role": "user", "content": "Say \ud800 hello."}]
    assert local_backend.generate([GenerationRequest(chat, max_tokens=4)])[0].completion_tokens > 0
