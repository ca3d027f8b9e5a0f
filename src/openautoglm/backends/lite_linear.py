"""Linear layers of the lite runtime: ``x W^T (+ b)`` in a chosen GEMM precision
(fp32, bf16, fp16) that keeps each row's result independent of its batch, the opt-in
dynamic int8 variant, and probes of what this CPU / torch build runs natively.

Row ``i`` of ``A @ W`` can change with the number of rows ``M`` of ``A``: the BLAS picks
its kernel, blocking and thread split by shape. :class:`Linear` therefore runs every
product with a row count inside one band ``(fewest, most)`` per precision, CPU kind and
reduction length (:meth:`Linear.band`): fewer rows get zero rows appended, more are cut
into pieces of at most ``most`` rows (a short last piece padded to ``fewest``). Inside the
band, every ``M`` was measured to give the same rows (see "Determinism" in
docs/backends.md; ``bench/gemm_rows.py`` checks a CPU).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

#: the row counts every product of a precision runs with (``None``: no upper bound), per CPU
#: kind, chosen so that every row's result is the same for every M in the band (torch 2.13,
#: 2 threads, the embedded model's layers; ``bench/gemm_rows.py`` checks a CPU):
#:
#: * fp32 everywhere: rows differ below 12 rows (EPYC) / 16 rows (Xeons). On both Xeons
#:   measured (Sapphire Rapids with AMX, and a Xeon with AVX-512 but neither AMX nor
#:   AVX512-BF16), products with a long reduction (``in_features >= LONG_K``: SmolLM2's
#:   1536 -> 576 down-projection, gemma3's 1024 -> 640 and 2048 -> 640) differ between 57
#:   and 160 rows: those are cut into pieces of 16 to 48 rows (the ``*_long_k`` entries);
#:   shorter reductions held at every row count from 16 to 300 on the AVX-512 Xeon, and on
#:   the AMX Xeon they keep the 48-row pieces they were measured with;
#: * AVX512-BF16 EPYC: bf16 rows differ at 1 row, fp16 never;
#: * AMX Xeon: bf16 rows depend on where they fall in the kernel's row tiles beyond 32 rows
#:   (every layer; a 48-row upper bound already fails); fp16 differs at 1 row;
#: * CPUs without native bf16: torch's emulated bf16 GEMM gives rows that differ at odd
#:   row counts up to 59 with any lower bound, and it is no faster than fp32. There the
#:   bf16 product is run as an fp32 product of the bf16-rounded operands (the same math:
#:   a product of two bf16 numbers is exact in fp32), inside the fp32 bands.
ROWS_BY_CPU: dict[str, dict[str, tuple[int, int | None]]] = {
    "avx512_bf16": {"fp32": (16, None), "fp32_long_k": (16, 48), "bf16": (4, None), "fp16": (1, None)},
    "amx": {"fp32": (16, 48), "fp32_long_k": (16, 48), "bf16": (4, 32), "fp16": (2, None)},
    "no_bf16": {"fp32": (16, None), "fp32_long_k": (16, 48), "bf16": (16, None), "bf16_long_k": (16, 48),
                "fp16": (1, None)},
}
#: a product reduces over this many inputs or more: it takes its precision's ``*_long_k`` band
LONG_K = 1024


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (``/proc/cpuinfo``, read once; empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return frozenset(next((line for line in f if line.startswith("flags")), "").split())
    except OSError:  # not Linux
        return frozenset()


def cpu_kind(flags: frozenset[str]) -> str:
    """The key of ``ROWS_BY_CPU`` for a CPU with these feature flags."""
    if "amx_bf16" in flags:
        return "amx"
    return "avx512_bf16" if "avx512_bf16" in flags else "no_bf16"


def bf16_fast() -> bool:
    """Whether this CPU runs bf16 GEMMs natively (AVX512-BF16 or AMX), i.e. faster than fp32."""
    return cpu_kind(cpu_flags()) != "no_bf16"


LINEAR_ROWS = ROWS_BY_CPU[cpu_kind(cpu_flags())]


class Linear:
    """``y = x W^T (+ b)`` with the GEMM in one of three precisions (``gemm`` argument).

    * ``fp32``: exact; what scores and generation use unless told otherwise.
    * ``bf16``: bf16 inputs and weights, fp32 accumulation.  On CPUs with AVX512-BF16 or
      AMX, oneDNN runs it about twice as fast as fp32 (measured 360 vs 168 GFLOPS on 2
      cores), so compute-bound prefill gets twice as fast, at the cost of rounding.
    * ``fp16``: for generation decode steps, which are memory-bound (reading the weights
      dominates): half the bytes of fp32 (measured 3x faster per GEMV on 2 cores).

    Reduced-precision weight copies are made on first use; activations stay fp32 between
    layers.  Each product runs with a row count inside its band (:meth:`band`; padded or cut
    into pieces), so a row's result does not depend on how many rows share the call
    (batch invariance).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.weight, self.bias = weight, bias
        self._copies: dict[torch.dtype, torch.Tensor] = {}
        self.long_k = weight.shape[1] >= LONG_K

    def band(self, gemm: str) -> tuple[int, int | None]:
        """The row counts this layer's products in ``gemm`` run with (see ``ROWS_BY_CPU``)."""
        return LINEAR_ROWS.get(f"{gemm}_long_k", LINEAR_ROWS[gemm]) if self.long_k else LINEAR_ROWS[gemm]

    def __call__(self, x: torch.Tensor, gemm: str = "fp32") -> torch.Tensor:
        lead, rows = x.shape[:-1], x.numel() // x.shape[-1]
        x = x.reshape(rows, x.shape[-1])
        least, most = self.band(gemm)
        if most is None or rows <= most:
            y = self._product(x, gemm, least)
        else:
            y = torch.cat([self._product(x[start : start + most], gemm, least) for start in range(0, rows, most)])
        y = y.reshape(*lead, y.shape[-1])
        return y + self.bias if self.bias is not None else y

    def _product(self, x: torch.Tensor, gemm: str, least: int) -> torch.Tensor:
        """``x W^T`` for one piece, run with at least ``least`` rows (zero rows appended)."""
        rows = x.shape[0]
        if rows < least:
            x = F.pad(x, (0, 0, 0, least - rows))
        if gemm == "fp32":
            y = F.linear(x, self.weight)
        elif gemm == "bf16" and x.is_cpu and not bf16_fast():  # emulated: see ROWS_BY_CPU
            w = self._copies.get(torch.float32)
            if w is None:
                w = self._copies[torch.float32] = self.weight.to(torch.bfloat16).float()
            y = F.linear(x.to(torch.bfloat16).float(), w)
        else:
            dtype = torch.bfloat16 if gemm == "bf16" else torch.float16
            w = self._copies.get(dtype)
            if w is None:
                w = self._copies[dtype] = self.weight.to(dtype)
            y = F.linear(x.to(dtype), w).float()
        return y[:rows] if rows < least else y


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


def int8_available() -> bool:
    """Whether this torch build has the dynamic int8 linear kernels."""
    try:
        Int8Linear(torch.ones(2, 2))(torch.ones(1, 2))
        return True
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False
