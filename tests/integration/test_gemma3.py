"""The second embedded model, gemma-3-270m, on the lean runtime (``local:gemma3-270m``).

Its forward pass is checked against transformers' own ``Gemma3ForCausalLM`` on the same
dequantised weights, and the batch-invariance tests of ``test_determinism.py`` run on it
unchanged (plus one whose prompt is longer than the 512-token sliding window).
"""

from __future__ import annotations

import pytest

from openautoglm.backends.base import ScoreRequest

from . import test_determinism as det

pytestmark = pytest.mark.slow

LONG = "Review: " + "the film drags on and on , " * 90 + "but the ending is lovely .\nSentiment:"


@pytest.fixture(scope="module")
def gemma():
    from openautoglm.backends.local import LocalBackend

    try:
        backend = LocalBackend("gemma3-270m")
    except Exception as exc:  # noqa: BLE001 - the chunk packages are part of `make install`
        pytest.skip(f"gemma-3-270m is not installed: {exc}")
    yield backend
    backend.close()


@pytest.fixture()
def backend(gemma):
    """The batch-invariance tests' fixture, on gemma (settings restored after each test)."""
    gemm, max_tokens = dict(gemma._gemm), gemma.max_batch_tokens
    gemma._prefix_cache.clear()
    yield gemma
    gemma._gemm.update(gemm)
    gemma.max_batch_tokens = max_tokens
    gemma._prefix_cache.clear()


test_a_request_scores_the_same_in_any_batch_and_cache_state = det.test_a_request_scores_the_same_in_any_batch_and_cache_state
test_linear_layers_give_each_row_the_same_result_whatever_the_row_count = (
    det.test_linear_layers_give_each_row_the_same_result_whatever_the_row_count)
test_greedy_generation_is_batch_invariant = det.test_greedy_generation_is_batch_invariant
test_features_do_not_depend_on_the_batch = det.test_features_do_not_depend_on_the_batch


def test_selectable_by_name_and_reads_bos(gemma):
    from openautoglm.backends.registry import split_model_string
    from openautoglm.backends.weights import resolve_model_files

    assert split_model_string("local:gemma3-270m") == ("local", "gemma3-270m")
    assert resolve_model_files("gemma3-270m") == gemma.files  # cached: no second conversion
    assert gemma.net.config.sliding_window == 512 and any(gemma.net.config.sliding)
    # Gemma needs its BOS token: whole prompts get it, label continuations do not
    assert gemma.tokenizer.encode_batch(["你好"])[0][0] == gemma.tokenizer.bos_ids[0]
    assert gemma.tokenizer.bos_ids[0] not in gemma.tokenizer.encode("你好")
    assert "gemma" in gemma.describe()["model"]


def test_forward_matches_transformers_gemma3(gemma):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        str(gemma.files.directory), dtype=torch.float32, attn_implementation="eager").eval()
    for text in ("判断以下句子的情感倾向：这个产品真是太棒了", LONG):  # the second spans the sliding window
        ids = torch.tensor(gemma.tokenizer.encode_batch([text]))
        with torch.no_grad():
            ref = hf(ids).logits[0]
        hidden, _ = gemma.net.forward(ids, torch.ones_like(ids, dtype=torch.bool))
        mine = gemma.net.logits(hidden[0])
        assert float((ref - mine).abs().max()) < 1e-2, text[:20]
        assert torch.equal(ref.argmax(-1), mine.argmax(-1))


def test_a_prompt_longer_than_the_window_scores_the_same_in_any_batch(backend):
    target = ScoreRequest(LONG, (" positive", " negative", " very mixed"))
    assert len(backend.tokenizer.encode_batch([LONG])[0]) > 600
    alone = det.score_alone(backend, target)
    backend._prefix_cache.clear()
    batch = backend.score_batch(det.NEIGHBOURS + [target])[-1].logprobs
    backend._prefix_cache.clear()
    backend.score_batch([ScoreRequest(LONG + " positive", (" !",))])  # warms a cache holding the prompt
    cached = backend.score_batch([target])[0].logprobs
    assert batch == alone and cached == alone
