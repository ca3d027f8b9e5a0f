"""Linear layers of the lite runtime: ``x W^T (+ b)`` in a chosen GEMM precision
(fp32, bf16, fp16) that keeps each row's result independent of its batch, the opt-in
dynamic int8 variant, and probes of what this CPU / torch build runs natively.

Measured on this CPU (torch 2.13, MKL/oneDNN): row ``i`` of ``A @ W`` changes with the
number of rows for fewer than 12 rows (GEMV / small-M paths), so :class:`Linear` appends
zero rows up to ``LINEAR_MIN_ROWS[gemm]`` (see "Determinism" in docs/backends.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: linear layers get at least this many rows (zero rows appended), per GEMM precision:
#: with fewer, per-row results differ (measured on AVX512-BF16, torch 2.13, M = 1..1024: fp32 rows differ below 12 rows, bf16 at 1 row, fp16 never); fp16 and bf16
#: stay small because one-row decode steps are memory-bound and padding would slow them
LINEAR_MIN_ROWS = {"fp32": 16, "bf16": 4, "fp16": 1}


class Linear:
    """``y = x W^T (+ b)`` with the GEMM in one of three precisions (``gemm`` argument).

    * ``fp32``: exact; what scores and generation use unless told otherwise.
    * ``bf16``: bf16 inputs and weights, fp32 accumulation.  On CPUs with AVX512-BF16 or
      AMX, oneDNN runs it about twice as fast as fp32 (measured 360 vs 168 GFLOPS on 2
      cores), so compute-bound prefill gets twice as fast, at the cost of rounding.
    * ``fp16``: for generation decode steps, which are memory-bound (reading the weights
      dominates): half the bytes of fp32 (measured 3x faster per GEMV on 2 cores).

    Reduced-precision weight copies are made on first use; activations stay fp32 between
    layers.  Inputs with fewer than ``LINEAR_MIN_ROWS[gemm]`` rows get zero rows appended,
    so a row's result does not depend on how many rows share the call (batch invariance).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.weight, self.bias = weight, bias
        self._copies: dict[torch.dtype, torch.Tensor] = {}

    def __call__(self, x: torch.Tensor, gemm: str = "fp32") -> torch.Tensor:
        lead, rows = x.shape[:-1], x.numel() // x.shape[-1]
        x = x.reshape(rows, x.shape[-1])
        least = LINEAR_MIN_ROWS[gemm]
        if rows < least:
            x = F.pad(x, (0, 0, 0, least - rows))
        if gemm == "fp32":
            y = F.linear(x, self.weight)
        else:
            dtype = torch.bfloat16 if gemm == "bf16" else torch.float16
            w = self._copies.get(dtype)
            if w is None:
                w = self._copies[dtype] = self.weight.to(dtype)
            y = F.linear(x.to(dtype), w).float()
        y = y[:rows].reshape(*lead, y.shape[-1])
        return y + self.bias if self.bias is not None else y


class Int8Linear:
    """Dynamic int8 linear layer (per-output-channel weights, fbgemm/qnnpack kernels).

    Decoding a small model on CPU is memory-bound: int8 weights are 4x smaller than
    fp32, so a decode step reads 4x fewer bytes; prefill GEMMs are ~1.7x faster too.
    Opt-in only, and not batch-invariant: activations are quantised with one scale per
    call, so a row's result depends on the other rows.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        import warnings

        scale = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-8).double()
        zero = torch.zeros(weight.shape[0], dtype=torch.long)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
            self.packed = torch.ops.quantized.linear_prepack(q, bias)

    def __call__(self, x: torch.Tensor, gemm: str = "fp32") -> torch.Tensor:  # noqa: ARG002 - always int8
        return torch.ops.quantized.linear_dynamic(x, self.packed)


def bf16_fast() -> bool:
    """Whether this CPU runs bf16 GEMMs natively (AVX512-BF16 or AMX), i.e. faster than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:  # not Linux: be conservative
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def int8_available() -> bool:
    """Whether this torch build has the dynamic int8 linear kernels."""
    try:
        Int8Linear(torch.ones(2, 2))(torch.ones(1, 2))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False
