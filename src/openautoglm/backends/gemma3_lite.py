"""Gemma 3 text decoders (e.g. google/gemma-3-270m) on the lean runtime of :mod:`.llama_lite`.

What differs from Llama, after ``transformers``' ``Gemma3ForCausalLM`` (``modeling_gemma3.py``):

* RMSNorm scales by ``1 + w`` (stored here as ``w + 1``, computed once at load);
* four norms per block: ``input`` and ``pre_feedforward`` before attention and MLP, and
  ``post_attention`` / ``post_feedforward`` on their outputs before the residual add;
  plus per-head RMSNorms of queries and keys before the rotary embedding;
* GeGLU MLP (``gelu`` with the tanh approximation instead of SiLU);
* input embeddings multiplied by ``sqrt(hidden_size)`` (the tied LM head is not);
* sliding-window layers (a query sees the last ``sliding_window`` positions, itself
  included) with their own rope base, alternating with global layers;
* attention scores scaled by ``query_pre_attn_scalar ** -0.5``;
* optional final logit soft-capping (``tanh(x / c) * c``; null for gemma-3-270m).

Batch invariance holds as for Llama: the sliding window is an extra ``-inf`` in the bias
of each query, a function of its own position, so whole key blocks stay the unit of
every product; a decode step reads exactly its own window of keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .llama_lite import LiteConfig, LiteLlama, rope_inv_freq, rope_tables

GEMMA3_MODEL_TYPES = ("gemma3_text", "gemma3")


@dataclass(frozen=True)
class Gemma3Config(LiteConfig):
    sliding_window: int = 512
    #: per layer: whether it is a sliding-window layer
    sliding: tuple[bool, ...] = ()
    rope_local_theta: float = 10000.0
    query_pre_attn_scalar: float = 256.0
    final_logit_softcapping: float | None = None

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> "Gemma3Config":
        cfg = cfg.get("text_config") or cfg
        if cfg.get("model_type") not in GEMMA3_MODEL_TYPES:
            raise ValueError(f"model_type {cfg.get('model_type')!r} is not a Gemma 3 text decoder")
        if cfg.get("attn_logit_softcapping") is not None:
            raise ValueError("attention logit soft-capping is not supported by the lite runtime")
        if cfg.get("use_bidirectional_attention"):
            raise ValueError("bidirectional Gemma 3 attention is not supported by the lite runtime")
        if cfg.get("hidden_activation", "gelu_pytorch_tanh") not in ("gelu_pytorch_tanh", "gelu_tanh"):
            raise ValueError(f"activation {cfg.get('hidden_activation')!r} is not supported")
        layers = int(cfg["num_hidden_layers"])
        types = cfg.get("layer_types") or [
            "full_attention" if (i + 1) % int(cfg.get("_sliding_window_pattern", 6)) == 0 else "sliding_attention"
            for i in range(layers)]
        rope = cfg.get("rope_parameters") or {}
        for kind in ("full_attention", "sliding_attention"):
            if (rope.get(kind) or {}).get("rope_type", "default") != "default":
                raise ValueError(f"rope_type {rope[kind]['rope_type']!r} is not supported by the lite runtime")
        theta = (rope.get("full_attention") or {}).get("rope_theta", cfg.get("rope_theta", 1_000_000.0))
        local = (rope.get("sliding_attention") or {}).get("rope_theta", cfg.get("rope_local_base_freq", 10_000.0))
        heads = int(cfg["num_attention_heads"])
        head_dim = int(cfg.get("head_dim") or cfg["hidden_size"] // heads)
        cap = cfg.get("final_logit_softcapping")
        return cls(
            hidden_size=int(cfg["hidden_size"]),
            intermediate_size=int(cfg["intermediate_size"]),
            num_layers=layers,
            num_heads=heads,
            num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=head_dim,
            vocab_size=int(cfg["vocab_size"]),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_theta=float(theta),
            max_position=int(cfg.get("max_position_embeddings", 32768)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", True)),
            sliding_window=int(cfg.get("sliding_window") or 1 << 30),
            sliding=tuple(t == "sliding_attention" for t in types),
            rope_local_theta=float(local),
            query_pre_attn_scalar=float(cfg.get("query_pre_attn_scalar") or head_dim),
            final_logit_softcapping=float(cap) if cap else None,
        )


class LiteGemma3(LiteLlama):
    """Inference-only Gemma 3 forward pass (the Llama one with Gemma's hooks)."""

    @staticmethod
    def act(x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")

    def __init__(self, config: Gemma3Config, weights: dict[str, torch.Tensor], int8: bool = False) -> None:
        super().__init__(config, weights, int8)
        self.config: Gemma3Config = config
        w = {k.removeprefix("model."): v for k, v in weights.items()}
        self.norm = w["norm.weight"] + 1.0
        names = {"ln1": "input_layernorm", "post_attn": "post_attention_layernorm",
                 "ln2": "pre_feedforward_layernorm", "post_mlp": "post_feedforward_layernorm",
                 "q_norm": "self_attn.q_norm", "k_norm": "self_attn.k_norm"}
        for i, layer in enumerate(self.layers):
            for key, name in names.items():
                layer[key] = w[f"layers.{i}.{name}.weight"] + 1.0
        # the same fp32 value as transformers' embed_scale buffer
        self.embed_scale = float(torch.tensor(config.hidden_size ** 0.5, dtype=torch.float32))
        self.query_scale = config.query_pre_attn_scalar ** -0.5
        self.inv_freq_local = rope_inv_freq(config.rope_local_theta, config.head_dim)
        self._window_memo: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def _rope(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both tables stacked: ``[0]`` global layers, ``[1]`` sliding-window layers."""
        (cos, sin), (cos_local, sin_local) = (rope_tables(positions, f) for f in (self.inv_freq, self.inv_freq_local))
        return torch.stack([cos, cos_local]), torch.stack([sin, sin_local])

    def _layer_rope(self, i: int, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        j = int(self.config.sliding[i])
        return cos[j], sin[j]

    def _layer_bias(self, i: int, bias: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        """Sliding layers also hide key slots ``<= position - sliding_window`` (computed
        once per forward pass and shared by its sliding layers)."""
        if not self.config.sliding[i]:
            return bias
        memo = self._window_memo
        if memo is not None and memo[0] is bias and torch.equal(memo[1], query_pos):
            return memo[2]
        slots = torch.arange(bias.shape[-1], device=bias.device)
        hide = slots[None, None, :] <= (query_pos.to(bias.device)[..., None] - self.config.sliding_window)
        if not bool(hide.any()):
            out = bias
        else:
            out = bias.masked_fill(hide, float("-inf"))
            # a padding query past every real key of its window would see nothing (NaN): slot 0
            dead = torch.isinf(out).all(-1)
            out[..., 0] = torch.where(dead, torch.zeros((), device=out.device), out[..., 0])
        self._window_memo = (bias, query_pos, out)
        return out

    def _key_start(self, i: int, n: int) -> int:
        return max(0, n - self.config.sliding_window) if self.config.sliding[i] else 0

    def logits(self, hidden: torch.Tensor, gemm: str = "fp32") -> torch.Tensor:
        out = self.lm_head(hidden, gemm)
        cap = self.config.final_logit_softcapping
        return out if cap is None else torch.tanh(out / cap) * cap
