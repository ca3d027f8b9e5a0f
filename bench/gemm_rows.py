"""Which row counts give the same rows: the batch-invariance bands of this CPU's GEMMs.

Row ``i`` of ``A @ W`` may change with the number of rows ``M`` of ``A`` (the BLAS picks
kernels, blocking and thread splits by shape). The local backend runs every product with
a row count inside one band per precision, CPU kind and reduction length
(``ROWS_BY_CPU`` in ``openautoglm/backends/lite_linear.py``). On the embedded model's weight shapes, this
script prints which ``M`` give the same first row from a plain product (the classes), and
checks the bands: every row of ``Linear(W)(A[:M])`` must equal the same row of the product
of all ``A``'s rows. Run it on a new CPU kind before trusting the determinism guarantee there.

    .venv/bin/python bench/gemm_rows.py             # torch's default thread count
    .venv/bin/python bench/gemm_rows.py --threads 1
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

try:
    import openautoglm  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from openautoglm.backends.lite_linear import Linear

#: (in, out) of SmolLM2-135M's products (q/o, k/v, gate/up, down, the output layer), then
#: gemma3-270m's (q, k/v, o, gate/up, down)
SHAPES = [(576, 576), (576, 192), (576, 1536), (1536, 576), (576, 49152),
          (640, 1024), (640, 256), (1024, 640), (640, 2048), (2048, 640)]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def classes(k: int, n: int, dtype: torch.dtype, counts: list[int]) -> list[list[int]]:
    """Group ``counts`` by the first row of ``A[:M] @ W^T`` (equal bits: one group)."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(n, k, generator=gen).to(dtype)
    a = torch.randn(max(counts), k, generator=gen).to(dtype)
    groups: list[tuple[torch.Tensor, list[int]]] = []
    for m in counts:
        row = F.linear(a[:m], w).float()[:1]
        for first, members in groups:
            if torch.equal(first, row):
                members.append(m)
                break
        else:
            groups.append((row, [m]))
    return [members for _, members in groups]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    ap.add_argument("--max-rows", type=int, default=256)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    counts = list(range(1, 65)) + [m for m in (80, 96, 128, 160, 200, 256, 300, 384, 512) if m <= args.max_rows]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    ok = True
    for gemm, dtype in DTYPES.items():
        for k, n in SHAPES:
            spans = ["{}-{}".format(g[0], g[-1]) if len(g) > 1 else str(g[0]) for g in classes(k, n, dtype, counts)]
            gen = torch.Generator().manual_seed(1)
            layer = Linear(torch.randn(n, k, generator=gen))
            least, most = layer.band(gemm)
            a = torch.randn(max(counts), k, generator=gen)
            full = layer(a, gemm)
            differ = [m for m in counts if not torch.equal(layer(a[:m], gemm), full[:m])]
            ok &= not differ
            verdict = "every row the same" if not differ else f"ROWS DIFFER at M = {differ[:10]}"
            print(f"{gemm:>4} {k:>5}x{n:<6} band {least}-{most or '∞'}: {verdict}; plain first-row classes "
                  f"{' | '.join(spans)}")
    print("all bands hold" if ok else "some band fails: ROWS_BY_CPU needs an entry for this CPU kind")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
