"""``LocalBackend(device=...)`` on the real embedded model: CPU here, a GPU where one is present."""

from __future__ import annotations

import pytest

from openautoglm.backends.base import GenerationRequest, ScoreRequest

pytestmark = pytest.mark.slow

REQUESTS = [ScoreRequest(f"Review: {t}\nSentiment:", (" positive", " negative")) for t in (
    "a gorgeous, witty, seductive movie .", "the plot is nothing but boilerplate clichés", "dull")]


def test_device_cpu_gives_the_default_backends_numbers(local_backend):
    from openautoglm.backends.local import LocalBackend

    cpu = LocalBackend(device="cpu")
    try:
        assert cpu.describe()["device"] == "cpu" and cpu.net.embed.device.type == "cpu"
        if local_backend.device == "cpu":
            assert cpu.identity() == local_backend.identity()
            assert [r.logprobs for r in cpu.score_batch(REQUESTS)] == \
                [r.logprobs for r in local_backend.score_batch(REQUESTS)]
    finally:
        cpu.close()


def test_device_cuda_runs_scoring_features_and_generation_on_the_gpu(local_backend):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here: the device='cuda' test runs where PyTorch sees one")
    from openautoglm.backends.local import LocalBackend

    gpu = LocalBackend(device="cuda")
    try:
        assert gpu.net.embed.device.type == "cuda" and gpu._gemm["score"] == "bf16"
        assert gpu.identity().endswith(":cuda") and gpu.identity() != local_backend.identity()
        on_gpu = [r.logprobs for r in gpu.score_batch(REQUESTS)]
        on_cpu = [r.logprobs for r in local_backend.score_batch(REQUESTS)]
        for g, c in zip(on_gpu, on_cpu):  # bf16 vs CPU: same decision, close numbers
            assert (g[0] > g[1]) == (c[0] > c[1]) or abs(c[0] - c[1]) < 0.1
            assert max(abs(a - b) for a, b in zip(g, c)) < 0.5
        assert gpu.features(["hello world"], [-1]).shape == (1, 1, gpu.net.config.hidden_size)
        out = gpu.generate([GenerationRequest("The capital of France is", max_tokens=8),
                            GenerationRequest("Once upon a time", max_tokens=8, temperature=0.8, seed=1)])
        assert all(c.texts[0] for c in out)
    finally:
        gpu.close()
