"""A lean pure-PyTorch runtime for Llama-family decoders (Llama, SmolLM, Mistral, Qwen2;
Gemma 3 through the hooks that :mod:`.gemma3_lite` overrides).

Why not ``transformers`` at run time?  Importing it costs ~4 s on a 2-core machine
and ``model.generate`` spends most of its time in Python bookkeeping (9.5 tok/s on
SmolLM2-135M).  This module needs only ``torch`` and gives the backend direct
control of the KV cache, which is what batched label scoring with a shared prompt
prefix and a tight decode loop need.  ``transformers`` is still used once, to
convert GGUF/other checkpoints (see :mod:`openautoglm.backends.weights`).

Weights use the Hugging Face Llama layout (``model.layers.N.self_attn.q_proj.weight``...).

Batch invariance.  A row's results must not depend on the other rows of its batch, on the
padding, or on whether its prompt prefix came from a cache (see "Determinism" in
docs/backends.md).  Library kernels do not promise that: measured on this CPU (torch
2.13, MKL/oneDNN), row ``i`` of ``A @ W`` changes with the number of rows for fewer than
12 rows (GEMV / small-M paths), and ``scaled_dot_product_attention`` changes with the
padded key width and the number of queries.  So every matrix product here runs on shapes
whose per-row results were measured not to depend on the batch: enough rows (zero rows
appended, ``LINEAR_MIN_ROWS`` / ``MIN_ROWS``), attention keys in fixed blocks of
``KEY_BLOCK`` slots (one product per block, so no reduction spans more or fewer keys),
block partials added one after another in key order, and every token at the slot equal
to its position, so the blocks a query reads hold the same keys at the same places
whatever the batch.  A decode step's attention runs row by row over exactly the row's
keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
#: attention products get at least this many rows (zero rows appended): with fewer, this
#: CPU's BLAS takes other code paths whose per-row results differ (measured: below 4 rows)
MIN_ROWS = 8
#: the same for the linear layers, per GEMM precision (measured on AVX512-BF16, torch 2.13,
#: M = 1..1024: fp32 rows differ below 12 rows, bf16 at 1 row, fp16 never); fp16 and bf16
#: stay small because one-row decode steps are memory-bound and padding would slow them
LINEAR_MIN_ROWS = {"fp32": 16, "bf16": 4, "fp16": 1}
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


@dataclass(frozen=True)
class LiteConfig:
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    rms_norm_eps: float
    rope_theta: float
    max_position: int
    tie_word_embeddings: bool

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> "LiteConfig":
        """The runtime's config of a Hugging Face ``config.json`` (Gemma 3's subclass for it)."""
        if cls is LiteConfig and str(cfg.get("model_type", "")).startswith("gemma3"):
            from .gemma3_lite import Gemma3Config

            return Gemma3Config.from_hf(cfg)
        if cfg.get("model_type") not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"model_type {cfg.get('model_type')!r} is not a Llama-family decoder")
        heads = int(cfg["num_attention_heads"])
        rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
        if rope.get("rope_type", "default") not in ("default", None):
            raise ValueError(f"rope_type {rope.get('rope_type')!r} is not supported by the lite runtime")
        theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
        return cls(
            hidden_size=int(cfg["hidden_size"]),
            intermediate_size=int(cfg["intermediate_size"]),
            num_layers=int(cfg["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or cfg["hidden_size"] // heads),
            vocab_size=int(cfg["vocab_size"]),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_theta=float(theta),
            max_position=int(cfg.get("max_position_embeddings", 4096)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        )


class KVCache:
    """Per-layer keys ``[batch, kv_heads, slots, head_dim]`` and values ``[..., head_dim + 1]``
    (a last column of ones: attention gets its softmax denominator from the same product)
    plus a key-validity mask ``[batch, slots]`` (padding slots are invalid) and each row's
    next position.

    Every token sits at the slot equal to its position (padding after a row's tokens),
    so the key blocks attention reads hold the same keys at the same places whatever the
    batch.  ``room``: the per-layer buffers, longer than ``slots``, that a decode step's
    cache keeps for the next steps to write into (see :meth:`LiteLlama.forward`).
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


def lite_model(config: LiteConfig, weights: dict[str, torch.Tensor], int8: bool = False) -> "LiteLlama":
    """The runtime model for ``config`` (from :meth:`LiteConfig.from_hf`)."""
    from .gemma3_lite import Gemma3Config, LiteGemma3

    if isinstance(config, Gemma3Config):
        return LiteGemma3(config, weights, int8)
    return LiteLlama(config, weights, int8)


class LiteLlama:
    """Inference-only Llama forward pass over plain tensors.

    Subclasses for other architectures (:mod:`.gemma3_lite`) change the hooks: ``act``,
    ``embed_scale``, ``query_scale``, the optional per-layer norms of :meth:`_normed`,
    :meth:`_layer_rope`, :meth:`_layer_bias`, :meth:`_key_start` and :meth:`logits`.
    """

    #: MLP activation of the gate (SwiGLU); multiplier of the input embeddings; attention
    #: score scale (``None``: ``head_dim ** -0.5``)
    act = staticmethod(F.silu)
    embed_scale = 1.0
    query_scale: float | None = None

    def __init__(self, config: LiteConfig, weights: dict[str, torch.Tensor], int8: bool = False) -> None:
        self.config = config
        lin = Int8Linear if int8 else Linear
        w = {k.removeprefix("model."): v for k, v in weights.items()}
        self.embed = w["embed_tokens.weight"]
        self.lm_head = lin(weights.get("lm_head.weight", self.embed))
        self.norm = w["norm.weight"]
        self.layers = []
        for i in range(config.num_layers):
            p = f"layers.{i}."
            q, k, v = (w[p + f"self_attn.{n}_proj.weight"] for n in "qkv")
            qkv_bias = None
            if p + "self_attn.q_proj.bias" in w:
                qkv_bias = torch.cat([w[p + f"self_attn.{n}_proj.bias"] for n in "qkv"])
            gate, up = w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"]
            self.layers.append(
                {
                    "ln1": w[p + "input_layernorm.weight"],
                    "ln2": w[p + "post_attention_layernorm.weight"],
                    "qkv": lin(torch.cat([q, k, v]).contiguous(), qkv_bias),  # one GEMM, not three
                    "o": lin(w[p + "self_attn.o_proj.weight"]),
                    "gate_up": lin(torch.cat([gate, up]).contiguous()),
                    "down": lin(w[p + "mlp.down_proj.weight"]),
                }
            )
        half = config.head_dim // 2
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, half, dtype=torch.float32) / half))
        self.inv_freq = inv_freq

    # -- building blocks -------------------------------------------------
    def _normed(self, layer: dict, key: str, x: torch.Tensor) -> torch.Tensor:
        """``x`` through the layer's optional RMSNorm ``key`` (absent in Llama: ``x``)."""
        weight = layer.get(key)
        return x if weight is None else self._rms(x, weight)

    def _layer_rope(self, i: int, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rotary tables layer ``i`` uses (one set for every layer in Llama)."""
        return cos, sin

    def _layer_bias(self, i: int, bias: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        """Layer ``i``'s attention bias given the model's (``query_pos [B|1, T]``: the
        position of each query; a sliding-window layer hides keys too far back)."""
        return bias

    def _key_start(self, i: int, n: int) -> int:
        """First key slot a decode step at slot ``n - 1`` reads in layer ``i``."""
        return 0

    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        var = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(var + self.config.rms_norm_eps) * weight

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions.to(torch.float32)[..., None] * self.inv_freq  # [B, T, half]
        emb = torch.cat([freqs, freqs], dim=-1)[:, None, :, :]  # [B, 1, T, D]
        return emb.cos(), emb.sin()

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    # -- forward -----------------------------------------------------------
    @torch.inference_mode()
    def forward(
        self,
        input_ids: torch.Tensor,
        token_valid: torch.Tensor,
        cache: KVCache | None = None,
        gemm: str = "fp32",
        pooled: dict[int, torch.Tensor] | None = None,
        pooling: str = "mean",
        tree: tuple[torch.Tensor, torch.Tensor] | None = None,
        decode: bool = False,
    ) -> tuple[torch.Tensor, KVCache]:
        """Run ``input_ids [B, T]`` (``token_valid [B, T]`` marks real tokens; padding
        must come after a row's real tokens) on top of ``cache``.

        The new tokens take the slots right after the cache's: a prompt's tail after its
        cached prefix (each row's cache must then be free of padding, so that slots equal
        positions).  ``decode``: one generated token per row (``T == 1``), written at the
        slot equal to its position (over the row's padding after a shorter prompt) and
        into spare room of the cache when it has some; its attention runs row by row.

        ``tree = (depths [B, T], paths [B, T, A])`` packs several token paths that branch
        from the cache into one row (a trie of continuations): new token ``i`` sits at
        position ``cache.next_pos + depths[i]`` and attends the cache plus the new tokens
        on its path ``paths[i]`` (indices of new tokens, root first, ending with ``i``
        itself; ``-1`` pads) instead of every earlier one.  The cache is returned as it was.

        ``gemm`` picks the precision of the matrix products (see :class:`Linear`).
        ``pooled``: for each layer index already in it as a key, its output is replaced by
        that layer's hidden states averaged over each row's real tokens ``[B, H]``
        (``pooling="last"``: at each row's last real token; ``"mean,last"``: both, side by
        side ``[B, 2H]``), and the pass stops after the deepest such layer (the returned states and cache are then
        those of a truncated model: use only ``pooled``).

        Returns final hidden states ``[B, T, H]`` (pre LM head) and the extended cache.
        Each row's results depend on that row alone (see the module docstring).
        """
        cfg = self.config
        bsz, t = input_ids.shape
        nh, nkv, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        if cache is None:
            start = torch.zeros(bsz, dtype=torch.long)
            past_valid = torch.zeros(bsz, 0, dtype=torch.bool)
            past_k: list[torch.Tensor | None] = [None] * cfg.num_layers
            past_v: list[torch.Tensor | None] = [None] * cfg.num_layers
        else:
            start = cache.next_pos
            past_valid = cache.valid
            past_k, past_v = list(cache.keys), list(cache.values)
        past = past_valid.shape[1]
        paths = path_bias = bias = None
        if decode:
            if tree is not None or t != 1 or cache is None:
                raise ValueError("a decode step runs one new token per row on top of a cache")
            # each row's token at the slot equal to its position (over the row's padding, if any)
            slot = start.tolist()
            lengths = [p + 1 for p in slot]
            s = max(past, max(lengths))
            valid = F.pad(past_valid, (0, s - past)).clone()
            valid[torch.arange(bsz), start] = True
            positions = start[:, None]
            room = cache.room if cache.room is not None and cache.room[0][0].shape[2] >= s else None
        elif tree is None:
            valid = torch.cat([past_valid, token_valid], dim=1)  # [B, S]
            s = past + t
            positions = start[:, None] + torch.cumsum(token_valid.long(), dim=1) - 1
            # query i (slot past+i) may attend key slot j if j <= past+i and key j is real
            mask = torch.ones(t, s, dtype=torch.bool).tril(diagonal=past)[None] & valid[:, None, :]
            # rows that are pure padding would attend nothing -> NaN; let them see slot 0
            mask[..., 0] |= ~mask.any(-1)
            bias = self._bias(mask)
        else:
            if cache is None:
                raise ValueError("a tree of continuations needs the cache it branches from")
            depths, paths = tree
            positions = start[:, None] + depths
            bias = self._bias(past_valid[:, None, :].expand(bsz, t, past))
            taken = torch.gather(token_valid, 1, paths.clamp(min=0).reshape(bsz, -1)).view_as(paths)
            path_bias = self._bias((paths >= 0) & taken, block=1)
        positions = positions.clamp(min=0)
        cos, sin = self._rope(positions)

        h = F.embedding(input_ids, self.embed)
        if self.embed_scale != 1.0:
            h = h * self.embed_scale
        q_size, kv_size = nh * hd, nkv * hd
        ones = torch.ones(bsz, nkv, t, 1)
        rows = torch.arange(bsz)
        new_k, new_v = [], []
        new_room: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        for i, layer in enumerate(self.layers):
            x = self._rms(h, layer["ln1"])
            qkv = layer["qkv"](x, gemm)
            q, k, v = qkv.split([q_size, kv_size, kv_size], dim=-1)
            q = q.view(bsz, t, nh, hd).transpose(1, 2)
            k = k.view(bsz, t, nkv, hd).transpose(1, 2)
            v = torch.cat([v.view(bsz, t, nkv, hd).transpose(1, 2), ones], dim=-1)
            q, k = self._normed(layer, "q_norm", q), self._normed(layer, "k_norm", k)
            lcos, lsin = self._layer_rope(i, cos, sin)
            q = self._rotate(q, lcos, lsin)
            k = self._rotate(k, lcos, lsin)
            if decode:
                if room is not None:  # written in place: later steps' slots are free
                    keys, values = room[0][i], room[1][i]
                else:
                    keys = k.new_zeros(bsz, nkv, s + DECODE_SPARE, hd)
                    values = k.new_zeros(bsz, nkv, s + DECODE_SPARE, hd + 1)
                    keys[:, :, :past] = past_k[i]
                    values[:, :, :past] = past_v[i]
                keys[rows, :, start] = k[:, :, 0]
                values[rows, :, start] = v[:, :, 0]
                new_room[0].append(keys)
                new_room[1].append(values)
                new_k.append(keys[:, :, :s])
                new_v.append(values[:, :, :s])
                # one attention call per row over exactly its own keys: nothing of the batch
                # (other rows, padding, the buffer's width) reaches the computation
                attn = torch.cat([F.scaled_dot_product_attention(
                    q[b:b + 1], keys[b:b + 1, :, self._key_start(i, n):n],
                    values[b:b + 1, :, self._key_start(i, n):n, :hd], enable_gqa=nkv != nh, scale=self.query_scale)
                    for b, n in enumerate(lengths)]).transpose(1, 2).reshape(bsz, 1, q_size)
            elif tree is None:
                # whole key blocks: [cache | new tokens | zeros]
                width = bias.shape[-1]
                keys = k.new_empty(bsz, nkv, width, hd)
                values = k.new_empty(bsz, nkv, width, hd + 1)
                if past:
                    keys[:, :, :past] = past_k[i]
                    values[:, :, :past] = past_v[i]
                keys[:, :, past:s] = k
                values[:, :, past:s] = v
                keys[:, :, s:] = 0.0
                values[:, :, s:] = 0.0
                new_k.append(keys[:, :, :s])
                new_v.append(values[:, :, :s])
                attn = self._attend(q, keys, values, self._layer_bias(i, bias, past + torch.arange(t)[None]),
                                    first_slot=past)
            else:
                width = bias.shape[-1]
                keys = F.pad(past_k[i], (0, 0, 0, width - past))
                values = F.pad(past_v[i], (0, 0, 0, width - past))
                attn = self._attend(q, keys, values, self._layer_bias(i, bias, positions),
                                    path=(k, v, paths, path_bias))
            h = h + self._normed(layer, "post_attn", layer["o"](attn, gemm))
            x = self._rms(h, layer["ln2"])
            gate, up = layer["gate_up"](x, gemm).chunk(2, dim=-1)
            h = h + self._normed(layer, "post_mlp", layer["down"](self.act(gate) * up, gemm))
            if pooled is not None and i in pooled:
                parts = []
                for kind in pooling.split(","):
                    if kind == "last":
                        parts.append(h[torch.arange(bsz), (token_valid.long().sum(1) - 1).clamp(min=0)])
                    else:
                        weights = token_valid.to(h.dtype).unsqueeze(-1)
                        # cumsum: one fixed summation order, so padding does not change a row's mean
                        total = (h * weights).cumsum(1)[:, -1]
                        parts.append(total / weights.sum(1).clamp(min=1.0))
                pooled[i] = torch.cat(parts, dim=-1)
                if i == max(pooled):
                    break
        h = self._rms(h, self.norm)
        if tree is not None:
            return h, cache  # type: ignore[return-value]
        next_pos = start + token_valid.long().sum(dim=1)
        return h, KVCache(new_k, new_v, valid, next_pos, new_room if decode else None)

    @staticmethod
    def _bias(mask: torch.Tensor, block: int = KEY_BLOCK) -> torch.Tensor:
        """``[B, T, S]`` visibility -> additive scores bias ``[B, T, S']`` (0 or -inf), ``S``
        padded to whole blocks."""
        bsz, t, s = mask.shape
        bias = torch.full((bsz, t, -(-s // block) * block), float("-inf"))
        bias[..., :s].masked_fill_(mask, 0.0)
        return bias

    def _attend(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor,
                first_slot: int | None = None, path: tuple | None = None) -> torch.Tensor:
        """Softmax attention of ``q [B, nh, T, D]``, batch-invariantly.

        ``keys [B, nkv, S, D]`` and ``values [B, nkv, S, D+1]`` (last column ones) span whole
        ``KEY_BLOCK`` blocks; ``bias [B, T, S]`` from :meth:`_bias`.  ``first_slot``: the
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
        qg = (q * (self.query_scale or hd ** -0.5)).reshape(bsz, nkv, groups, t, hd).transpose(2, 3).reshape(bn, t * groups, hd)
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

    def logits(self, hidden: torch.Tensor, gemm: str = "fp32") -> torch.Tensor:
        """Project hidden states onto the vocabulary."""
        return self.lm_head(hidden, gemm)
