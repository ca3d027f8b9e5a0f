"""The lite runtime's Linear: which row band a CPU kind gets, and bf16 where it is emulated."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = pytest.importorskip("torch.nn.functional")

from openautoglm.backends import lite_linear  # noqa: E402


@pytest.mark.parametrize(("flags", "kind"), [
    ({"avx512f", "amx_bf16", "avx512_bf16"}, "amx"),
    ({"avx512f", "avx512_bf16"}, "avx512_bf16"),
    ({"avx512f", "avx512_vnni"}, "no_bf16"),  # AVX-512 Xeon with AMX hidden by its hypervisor
    (set(), "no_bf16"),  # not Linux, or an ARM CPU
])
def test_cpu_kind_follows_the_bf16_flags(flags: set[str], kind: str) -> None:
    assert lite_linear.cpu_kind(frozenset(flags)) == kind
    bands = lite_linear.ROWS_BY_CPU[kind]
    assert {"fp32", "bf16", "fp16"} <= set(bands) <= {"fp32", "bf16", "fp16", "fp32_long_k", "bf16_long_k"}


def test_long_reductions_take_their_own_band(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lite_linear, "LINEAR_ROWS", {"fp32": (16, None), "fp32_long_k": (16, 48), "fp16": (1, None)})
    short = lite_linear.Linear(torch.zeros(8, lite_linear.LONG_K - 1))
    long = lite_linear.Linear(torch.zeros(8, lite_linear.LONG_K))
    assert (short.band("fp32"), long.band("fp32")) == ((16, None), (16, 48))
    assert long.band("fp16") == (1, None)  # no long-reduction entry: the precision's own band


def test_emulated_bf16_is_the_fp32_product_of_rounded_operands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lite_linear, "bf16_fast", lambda: False)
    monkeypatch.setitem(lite_linear.LINEAR_ROWS, "bf16", (16, 48))
    gen = torch.Generator().manual_seed(0)
    weight, x = torch.randn(64, 96, generator=gen), torch.randn(96, 96, generator=gen)
    layer = lite_linear.Linear(weight)
    got = layer(x, "bf16")
    rounded = torch.cat([F.linear(x[i:i + 48].bfloat16().float(), weight.bfloat16().float())
                         for i in range(0, 96, 48)])  # two whole 48-row pieces
    assert torch.equal(got, rounded)
    assert not torch.equal(got, layer(x, "fp32"))  # the operands really were rounded
    assert got.dtype == torch.float32
