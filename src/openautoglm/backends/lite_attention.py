"""Batch-invariant attention over a KV cache: the cache itself, the scores bias of a
visibility mask, and softmax attention computed in fixed key blocks.

A row's attention must not depend on the other rows of its batch, on padding, or on
whether its prompt prefix came from a cache (see "Determinism" in docs/backends.md).
Library kernels do not promise that: measured on this CPU (torch 2.13, MKL/oneDNN),
``scaled_dot_product_attention`` changes with the padded key width and the number of
queries.  So :func:`attend` reads keys in fixed blocks of ``KEY_BLOCK`` slots (one product
per block, so no reduction spans more or fewer keys), adds block partials one after
another in key order, gives every product at least ``MIN_ROWS`` rows, and every token
sits at the slot equal to its position (:class:`KVCache`), so the blocks a query reads
hold the same keys at the same places whatever the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


#: attention products get at least this many rows (zero rows appended): with fewer, the
#: BLAS takes other code paths whose per-row results differ. Measured: an AVX512-BF16 EPYC
#: below 4 rows; an AMX Xeon and an AVX-512 Xeon without AMX (or AVX512-BF16) below 16 rows,
#: in gemma3-270m's 256-wide heads (8 rows left scores 0.07 nat apart on the first, 2e-5 on
#: the second). 16 holds on all three.
MIN_ROWS = 16
#: attention reads keys in blocks of this many slots: each block is one product with a
#: fixed reduction length, and block partials are added in order
KEY_BLOCK = 64
#: attention runs queries in chunks of at most this many tokens (and at most ATTN_CHUNK
#: scores at once), each reading only the key blocks its causal mask reaches
QUERY_BLOCK = 128
ATTN_CHUNK = 1 << 22
#: a decode step's cache has room for this many more slots, so the next steps write their
#: keys in place instead of copying the whole cache each step
DECODE_SPARE = 4 * KEY_BLOCK


class KVCache:
    """Per-layer keys ``[batch, kv_heads, slots, head_dim]`` and values ``[..., head_dim + 1]``
    (a last column of ones: attention gets its softmax denominator from the same product)
    plus a key-validity mask ``[batch, slots]`` (padding slots are invalid) and each row's
    next position.

    Every token sits at the slot equal to its position (padding after a row's tokens),
    so the key blocks attention reads hold the same keys at the same places whatever the
    batch.  ``room``: the per-layer buffers, longer than ``slots``, that a decode step's
    cache keeps for the next steps to write into (see :meth:`.llama_lite.LiteLlama.forward`).
    """

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], valid: torch.Tensor,
                 next_pos: torch.Tensor, room: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None) -> None:
        self.keys = keys
        self.values = values
        self.valid = valid
        self.next_pos = next_pos
        self.room = room

    @property
    def batch(self) -> int:
        return self.valid.shape[0]

    @property
    def slots(self) -> int:
        return self.valid.shape[1]

    def expand(self, batch: int) -> "KVCache":
        """Broadcast a batch-1 cache (a shared prefix) to ``batch`` rows (views, no copy)."""
        assert self.batch == 1
        return KVCache(
            [k.expand(batch, -1, -1, -1) for k in self.keys],
            [v.expand(batch, -1, -1, -1) for v in self.values],
            self.valid.expand(batch, -1),
            self.next_pos.expand(batch),
        )

    @staticmethod
    def concat(caches: list["KVCache"]) -> "KVCache":
        """Caches side by side (rows of several prefill chunks, to decode together); shorter
        ones are padded with invalid slots at the end, which attention never reads."""
        if len(caches) == 1:
            return caches[0]
        slots = max(c.slots for c in caches)

        def pad(t: torch.Tensor, n: int) -> torch.Tensor:  # [B, H, S, D]: extend S by n
            return F.pad(t, (0, 0, 0, n)) if n else t

        layers = range(len(caches[0].keys))
        return KVCache(
            [torch.cat([pad(c.keys[i], slots - c.slots) for c in caches]) for i in layers],
            [torch.cat([pad(c.values[i], slots - c.slots) for c in caches]) for i in layers],
            torch.cat([F.pad(c.valid, (0, slots - c.slots), value=False) for c in caches]),
            torch.cat([c.next_pos for c in caches]),
        )

    def truncate(self, n: int) -> "KVCache":
        """The first ``n`` positions of a batch-1 unpadded cache (views): a shorter shared prefix."""
        assert self.batch == 1 and 0 < n <= self.slots and bool(self.valid[:, :n].all())
        return KVCache(
            [k[:, :, :n] for k in self.keys],
            [v[:, :, :n] for v in self.values],
            self.valid[:, :n],
            torch.full_like(self.next_pos, n),
        )

    def select(self, index: torch.Tensor) -> "KVCache":
        """Rows ``index`` of the cache (e.g. repeat each prompt once per continuation)."""
        return KVCache(
            [k.index_select(0, index) for k in self.keys],
            [v.index_select(0, index) for v in self.values],
            self.valid.index_select(0, index),
            self.next_pos.index_select(0, index),
        )


def attention_bias(mask: torch.Tensor, block: int = KEY_BLOCK) -> torch.Tensor:
    """``[B, T, S]`` visibility -> additive scores bias ``[B, T, S']`` (0 or -inf), ``S``
    padded to whole blocks."""
    bsz, t, s = mask.shape
    bias = torch.full((bsz, t, -(-s // block) * block), float("-inf"))
    bias[..., :s].masked_fill_(mask, 0.0)
    return bias

def attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor,
           query_scale: float | None = None, first_slot: int | None = None,
           path: tuple | None = None) -> torch.Tensor:
    """Softmax attention of ``q [B, nh, T, D]``, batch-invariantly.

    ``keys [B, nkv, S, D]`` and ``values [B, nkv, S, D+1]`` (last column ones) span whole
    ``KEY_BLOCK`` blocks; ``bias [B, T, S]`` from :func:`attention_bias`;
    ``query_scale``: the score scale (``None``: ``head_dim ** -0.5``).  ``first_slot``: the
    slot of query 0 when attention is causal (query ``i`` sees no slot after
    ``first_slot + i``), so key blocks past a query chunk's last slot are skipped.
    ``path = (keys, values, paths [B, T, A], bias [B, T, A])`` adds each query's own
    keys (tree attention).

    Each key block is one product with a fixed reduction length, for the scores and for
    ``p @ values`` (whose last column is the softmax denominator); the block partials,
    then the path's terms, are added one after another, in that order.  A block of
    invisible keys adds exact zeros, so skipping it or not changes nothing.  Products
    get at least ``MIN_ROWS`` query rows (a decode step's 3 rows per key head were not
    invariant on real activations).  Returns ``[B, T, nh * D]``.
    """
    bsz, nh, t, hd = q.shape
    nkv = keys.shape[1]
    groups = nh // nkv
    bn, width = bsz * nkv, keys.shape[2]
    # query rows grouped by the key head they read, token-major: [B*nkv, T*groups, D]
    qg = (q * (query_scale or hd ** -0.5)).reshape(bsz, nkv, groups, t, hd).transpose(2, 3).reshape(bn, t * groups, hd)
    kg = keys.reshape(bn, width, hd).transpose(1, 2)
    path_scores = vpath = None
    if path is not None:
        pk, pv, paths, pbias = path
        a = paths.shape[-1]
        index = paths.clamp(min=0).reshape(bsz, 1, t * a, 1)
        kpath = pk.gather(2, index.expand(bsz, nkv, t * a, hd)).view(bsz, nkv, t, 1, a, hd)
        vpath = pv.gather(2, index.expand(bsz, nkv, t * a, hd + 1)).view(bsz, nkv, t, 1, a, hd + 1)
        path_scores = (qg.view(bsz, nkv, t, groups, 1, hd) * kpath).sum(-1)  # reductions of length D
        path_scores = (path_scores + pbias[:, None, :, None, :]).view(bn, t * groups, a)
    if path is not None:
        step = t
    else:
        step = max(1, min(QUERY_BLOCK, ATTN_CHUNK // max(1, bn * groups * width)))
    out = q.new_empty(bn, t * groups, hd)
    for t0 in range(0, t, step):
        t1 = min(t, t0 + step)
        rows = (t1 - t0) * groups
        seen = width if first_slot is None else min(width, -(-(first_slot + t1) // KEY_BLOCK) * KEY_BLOCK)
        qc = qg[:, t0 * groups:t1 * groups]
        if rows < MIN_ROWS:
            qc = F.pad(qc, (0, 0, 0, MIN_ROWS - rows))
        padded = qc.shape[1]
        sc = torch.bmm(qc, kg[:, :, :seen])  # [bn, padded, seen]
        sc[:, :rows].view(bsz, nkv, t1 - t0, groups, seen).add_(bias[:, None, t0:t1, None, :seen])
        mx = sc.amax(-1, keepdim=True)
        if path_scores is not None:
            ps = F.pad(path_scores, (0, 0, 0, padded - rows), value=float("-inf"))
            mx = torch.maximum(mx, ps.amax(-1, keepdim=True))
        nb = seen // KEY_BLOCK
        p = torch.exp(sc.sub_(mx)).view(bn, padded, nb, KEY_BLOCK).transpose(1, 2).contiguous()
        acc = None
        for j in range(nb):  # block partials in order: one fixed summation order
            vj = values[:, :, j * KEY_BLOCK:(j + 1) * KEY_BLOCK].reshape(bn, KEY_BLOCK, hd + 1)
            part = torch.bmm(p[:, j], vj)[:, :rows]
            acc = part if acc is None else acc + part
        if path_scores is not None:
            pp = torch.exp(ps[:, :rows] - mx[:, :rows]).view(bsz, nkv, t, groups, -1, 1)
            terms = (pp * vpath).view(bn, rows, -1, hd + 1)
            for j in range(terms.shape[2]):
                acc = acc + terms[:, :, j]
        out[:, t0 * groups:t1 * groups] = acc[..., :hd] / acc[..., hd:]
    return out.view(bsz, nkv, t, groups, hd).permute(0, 2, 1, 3, 4).reshape(bsz, t, nh * hd)
