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
docs/backends.md).  Every matrix product runs on shapes whose per-row results were
measured not to depend on the batch: the linear layers in :mod:`.lite_linear`, prefill
and tree attention over fixed key blocks in :mod:`.lite_attention` (which also holds the
KV cache, every token at the slot equal to its position).  A decode step's attention
runs row by row over exactly the row's keys.

This module: the model config, the rotary tables, and the forward pass that ties those
pieces together (:class:`LiteLlama`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

# the pieces live in their own modules; these names stay importable from here
from .lite_attention import (  # noqa: F401 - re-exported
    ATTN_CHUNK,
    DECODE_SPARE,
    KEY_BLOCK,
    MIN_ROWS,
    QUERY_BLOCK,
    KVCache,
    attend,
    attention_bias,
)
from .lite_linear import Int8Linear, Linear, bf16_fast, int8_available  # noqa: F401 - re-exported

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



def rope_inv_freq(theta: float, head_dim: int) -> torch.Tensor:
    """Rotary inverse frequencies ``[head_dim // 2]`` of base ``theta``."""
    half = head_dim // 2
    return 1.0 / (theta ** (torch.arange(0, half, dtype=torch.float32) / half))


def rope_tables(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary ``cos``, ``sin`` ``[B, 1, T, D]`` of ``positions [B, T]``."""
    freqs = positions.to(torch.float32)[..., None] * inv_freq.to(positions.device)  # [B, T, half]
    emb = torch.cat([freqs, freqs], dim=-1)[:, None, :, :]  # [B, 1, T, D]
    return emb.cos(), emb.sin()


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
        self.inv_freq = rope_inv_freq(config.rope_theta, config.head_dim)

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
        return rope_tables(positions, self.inv_freq)

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

    # -- attention (batch-invariant, see :mod:`.lite_attention`) ------------
    _bias = staticmethod(attention_bias)

    def _attend(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor,
                first_slot: int | None = None, path: tuple | None = None) -> torch.Tensor:
        """:func:`.lite_attention.attend` with this model's score scale."""
        return attend(q, keys, values, bias, self.query_scale, first_slot, path)


    def logits(self, hidden: torch.Tensor, gemm: str = "fp32") -> torch.Tensor:
        """Project hidden states onto the vocabulary."""
        return self.lm_head(hidden, gemm)
