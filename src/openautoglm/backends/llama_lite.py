"""A lean pure-PyTorch runtime for Llama-family decoders (Llama, SmolLM, Mistral, Qwen2).

Why not ``transformers`` at run time?  Importing it costs ~4 s on a 2-core machine
and ``model.generate`` spends most of its time in Python bookkeeping (9.5 tok/s on
SmolLM2-135M).  This module needs only ``torch`` and gives the backend direct
control of the KV cache, which is what batched label scoring with a shared prompt
prefix and a tight decode loop need.  ``transformers`` is still used once, to
convert GGUF/other checkpoints (see :mod:`openautoglm.backends.weights`).

Weights use the Hugging Face Llama layout (``model.layers.N.self_attn.q_proj.weight``...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")


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
    """Per-layer keys/values ``[batch, kv_heads, slots, head_dim]`` plus a key-validity
    mask ``[batch, slots]`` (padding slots are invalid) and each row's next position."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], valid: torch.Tensor,
                 next_pos: torch.Tensor) -> None:
        self.keys = keys
        self.values = values
        self.valid = valid
        self.next_pos = next_pos

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
    layers.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        self.weight, self.bias = weight, bias
        self._copies: dict[torch.dtype, torch.Tensor] = {}

    def __call__(self, x: torch.Tensor, gemm: str = "fp32") -> torch.Tensor:
        if gemm == "fp32":
            return F.linear(x, self.weight, self.bias)
        dtype = torch.bfloat16 if gemm == "bf16" else torch.float16
        w = self._copies.get(dtype)
        if w is None:
            w = self._copies[dtype] = self.weight.to(dtype)
        y = F.linear(x.to(dtype), w).float()
        return y + self.bias if self.bias is not None else y


class Int8Linear:
    """Dynamic int8 linear layer (per-output-channel weights, fbgemm/qnnpack kernels).

    Decoding a small model on CPU is memory-bound: int8 weights are 4x smaller than
    fp32, so a decode step reads 4x fewer bytes; prefill GEMMs are ~1.7x faster too.
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


class LiteLlama:
    """Inference-only Llama forward pass over plain tensors."""

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
    ) -> tuple[torch.Tensor, KVCache]:
        """Run ``input_ids [B, T]`` (``token_valid [B, T]`` marks real tokens; padding
        must come after a row's real tokens) on top of ``cache``.

        ``tree = (depths [B, T], sees [B, T, T])`` packs several token paths that branch
        from the cache into one row (a trie of continuations): new token ``i`` sits at
        position ``cache.next_pos + depths[i]`` and attends the cache plus the new tokens
        ``j`` with ``sees[i, j]`` (its ancestors and itself) instead of every earlier one.

        ``gemm`` picks the precision of the matrix products (see :class:`Linear`).
        ``pooled``: for each layer index already in it as a key, its output is replaced by
        that layer's hidden states averaged over each row's real tokens ``[B, H]``
        (``pooling="last"``: at each row's last real token; ``"mean,last"``: both, side by
        side ``[B, 2H]``), and the pass stops after the deepest such layer (the returned states and cache are then
        those of a truncated model: use only ``pooled``).

        Returns final hidden states ``[B, T, H]`` (pre LM head) and the extended cache.
        """
        cfg = self.config
        bsz, t = input_ids.shape
        if cache is None:
            start = torch.zeros(bsz, dtype=torch.long)
            past_valid = torch.zeros(bsz, 0, dtype=torch.bool)
            past_k = [None] * cfg.num_layers
            past_v = [None] * cfg.num_layers
        else:
            start = cache.next_pos
            past_valid = cache.valid
            past_k, past_v = cache.keys, cache.values
        valid = torch.cat([past_valid, token_valid], dim=1)  # [B, S]
        s = valid.shape[1]
        past = s - t
        if tree is None:
            positions = start[:, None] + torch.cumsum(token_valid.long(), dim=1) - 1
            # query i (slot past+i) may attend key slot j if j <= past+i and key j is real
            causal = torch.ones(t, s, dtype=torch.bool).tril(diagonal=past)
            mask = causal[None, None, :, :] & valid[:, None, None, :]
        else:
            depths, sees = tree
            positions = start[:, None] + depths
            new = sees & token_valid[:, None, :]
            mask = torch.cat([past_valid[:, None, :].expand(bsz, t, past), new], dim=2)[:, None]
        positions = positions.clamp(min=0)
        cos, sin = self._rope(positions)
        # rows that are pure padding would attend nothing -> NaN; let them see slot 0
        mask[..., 0] |= ~mask.any(-1)

        h = F.embedding(input_ids, self.embed)
        nh, nkv, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        q_size, kv_size = nh * hd, nkv * hd
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            x = self._rms(h, layer["ln1"])
            qkv = layer["qkv"](x, gemm)
            q, k, v = qkv.split([q_size, kv_size, kv_size], dim=-1)
            q = q.view(bsz, t, nh, hd).transpose(1, 2)
            k = k.view(bsz, t, nkv, hd).transpose(1, 2)
            v = v.view(bsz, t, nkv, hd).transpose(1, 2)
            q = self._rotate(q, cos, sin)
            k = self._rotate(k, cos, sin)
            if past_k[i] is not None:
                k = torch.cat([past_k[i], k], dim=2)
                v = torch.cat([past_v[i], v], dim=2)
            new_k.append(k)
            new_v.append(v)
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=nkv != nh)
            h = h + layer["o"](attn.transpose(1, 2).reshape(bsz, t, q_size), gemm)
            x = self._rms(h, layer["ln2"])
            gate, up = layer["gate_up"](x, gemm).chunk(2, dim=-1)
            h = h + layer["down"](F.silu(gate) * up, gemm)
            if pooled is not None and i in pooled:
                parts = []
                for kind in pooling.split(","):
                    if kind == "last":
                        parts.append(h[torch.arange(bsz), (token_valid.long().sum(1) - 1).clamp(min=0)])
                    else:
                        weights = token_valid.to(h.dtype).unsqueeze(-1)
                        parts.append((h * weights).sum(1) / weights.sum(1).clamp(min=1.0))
                pooled[i] = torch.cat(parts, dim=-1)
                if i == max(pooled):
                    break
        h = self._rms(h, self.norm)
        next_pos = start + token_valid.long().sum(dim=1)
        return h, KVCache(new_k, new_v, valid, next_pos)

    def logits(self, hidden: torch.Tensor, gemm: str = "fp32") -> torch.Tensor:
        """Project hidden states onto the vocabulary."""
        return self.lm_head(hidden, gemm)
