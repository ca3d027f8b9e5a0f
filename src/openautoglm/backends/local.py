"""The local backend: runs a model in-process on CPU (or GPU) with PyTorch.

``LocalBackend()`` loads the embedded SmolLM2-135M-Instruct with no network access.
Scoring is batched and reuses the KV cache of the prompt prefix that all requests in
a batch share (instructions, few-shot demonstrations, the chat header), so only each
input's own tokens are computed.  Generation is a tight loop over the same cache.

This module: loading the model, precision, constraints, the prefix cache and batched
prefill that scoring and generation share, and hidden-state features.  Scoring lives in
:mod:`.local_scoring`, generation in :mod:`.local_generation` (mixins of
:class:`LocalBackend`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from typing import Sequence

from ..errors import BackendError
from . import constrained
from .base import CONSTRAINT_KINDS, Backend, Completion, GenerationRequest, ScoreRequest
from .device import device_scope, resolve_device
from .local_generation import FP16_DECODE_ROWS, MAX_DECODE_ROWS, LocalGeneration, _TextStream  # noqa: F401 - re-exported
from .local_scoring import LOGIT_ROWS, LocalScoring, Trie, _continuation_trie  # noqa: F401 - re-exported
from .weights import ModelFiles, resolve_model_files

#: a separate batch-1 pass over a batch's shared, uncached prompt prefix costs about as much as
#: this many extra row-tokens (one read of every weight), so it runs only when it saves more
PREFIX_PASS_TOKENS = 32
#: features() reads at most this many tokens of a text (its first and last halves)
FEATURE_TOKENS = 256


class LocalBackend(LocalScoring, LocalGeneration, Backend):
    name = "local"
    can_score = True
    #: the embedded models (SmolLM2-135M, base gemma-3-270m) score labels far better after a
    #: plain-text cue than inside a chat (SST-2: 0.53 chat, all one label; see BENCHMARKS.md, issue 19)
    label_format = "text"
    can_featurize = True
    feature_poolings = ("mean", "last")
    supports_json_schema = False

    def __init__(
        self,
        model: str | None = None,
        *,
        threads: int | None = None,
        max_batch_tokens: int = 640,  # measured: larger padded batches fall out of cache on CPU
        prefix_cache_size: int = 16,
        precision: str = "auto",
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        try:
            import torch
        except ImportError as exc:
            raise BackendError(
                "the local backend needs PyTorch", hint="pip install 'openautoglm[local]'"
            ) from exc
        from safetensors.torch import load_file

        from .chat_tokenizer import ChatTokenizer
        from .llama_lite import LiteConfig, bf16_fast, lite_model

        t0 = time.perf_counter()
        self._torch = torch
        self.device = resolve_device(device)
        if threads or os.environ.get("OPENAUTOGLM_THREADS"):
            torch.set_num_threads(int(threads or os.environ["OPENAUTOGLM_THREADS"]))
        self.files: ModelFiles = resolve_model_files(model)
        self.model = model or "smollm2-135m"
        config = json.loads((self.files.directory / "config.json").read_text())
        try:
            lite_cfg = LiteConfig.from_hf(config)
        except ValueError as exc:
            raise BackendError(
                f"{self.files.directory}: {exc}",
                hint="the local backend runs Llama-family decoders (Llama, SmolLM, Mistral, Qwen2) and Gemma 3",
            ) from exc
        weights: dict = {}
        for shard in sorted(self.files.directory.glob("*.safetensors")):
            weights.update(load_file(str(shard)))
        weights = {k: v.float().to(self.device) for k, v in weights.items()}
        self.precision = self._resolve_precision(precision)
        if self.precision == "int8" and self.device != "cpu":
            raise BackendError("precision='int8' runs on CPU only", hint="use precision='auto' (bf16 on GPUs)")
        with device_scope(self.device):
            self.net = lite_model(lite_cfg, weights, int8=self.precision == "int8")
        # GEMM precision per kind of work (see llama_lite.Linear)
        self._gemm = {
            "fp32": {"score": "fp32", "prefill": "fp32", "decode": "fp32"},
            "bf16": {"score": "bf16", "prefill": "bf16", "decode": "bf16"},
            "int8": {"score": "fp32", "prefill": "fp32", "decode": "fp32"},  # Int8Linear ignores it
            "auto": {"score": "bf16" if bf16_fast() else "fp32", "prefill": "fp32", "decode": "fp16"},
        }[self.precision]
        if self.device != "cpu" and self.precision == "auto":  # GPUs: bf16 tensor cores throughout
            self._gemm = {"score": "bf16", "prefill": "bf16", "decode": "bf16"}
        self.tokenizer = ChatTokenizer(self.files.directory, config)
        self.max_context = lite_cfg.max_position
        self.num_layers = lite_cfg.num_layers
        self.max_batch_tokens = max_batch_tokens
        self._prefix_cache: OrderedDict[tuple[str, tuple[int, ...]], object] = OrderedDict()
        self._prefix_cache_size = prefix_cache_size
        self._generator = torch.Generator(device=self.device).manual_seed(seed)
        self._lock = threading.Lock()  # one forward pass at a time; torch uses all cores
        # constrained decoding (llguidance, built on the first constrained request)
        self.constraints = frozenset(CONSTRAINT_KINDS) if constrained.available() else frozenset()
        self._guide: constrained.Guide | None = None
        self.load_seconds = time.perf_counter() - t0

    @staticmethod
    def _resolve_precision(mode: str) -> str:
        """Validate ``precision`` (``$OPENAUTOGLM_PRECISION`` overrides it).

        ``auto``: label scoring (compute-bound) in bf16 where the CPU has native bf16
        GEMMs (2x faster, same SST-2 accuracy), generation prefill in fp32 (bf16 prefill
        visibly degrades this small model's greedy output), decode steps of up to
        ``FP16_DECODE_ROWS`` rows with fp16 weights (bf16 decode changed 5 of 12 greedy
        answers, fp16 none).  ``fp32``: exact everywhere.
        ``bf16``: bf16 everywhere.  ``int8``: dynamic int8, opt-in only, as it costs
        accuracy on this model (SST-2 73 % → 47 % measured).
        """
        from .llama_lite import int8_available

        mode = (os.environ.get("OPENAUTOGLM_PRECISION") or mode or "auto").lower()
        if mode not in ("auto", "fp32", "bf16", "int8"):
            raise BackendError(f"unknown precision {mode!r}", hint="use 'auto', 'fp32', 'bf16' or 'int8'")
        if mode == "int8" and not int8_available():
            raise BackendError("this PyTorch build has no int8 dynamic linear kernels", hint="use precision='fp32'")
        return mode

    # -- identity / info ---------------------------------------------------
    def identity(self) -> str:
        gemm = self._gemm
        where = "" if self.device == "cpu" else f":{self.device}"  # other kernels, other numbers
        return f"local:{self.files.fingerprint}:{self.precision}:{gemm['score']}/{gemm['prefill']}/{gemm['decode']}{where}"

    def describe(self) -> dict:
        info = super().describe()
        info.update(model=self.files.label, path=str(self.files.directory), load_seconds=round(self.load_seconds, 2),
                    device=self.device)
        return info

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    # -- constraints -----------------------------------------------------------
    def guide(self) -> "constrained.Guide":
        """The llguidance state of this model (tokenizer, compiled constraints), built once."""
        if self._guide is None:
            self._guide = constrained.Guide(self.files.directory / "tokenizer.json", self.tokenizer.eos_ids,
                                            self.net.config.vocab_size)
        return self._guide

    def check_request(self, request: GenerationRequest | ScoreRequest) -> None:
        """Also refuse, before any decoding, a constraint that does not compile."""
        super().check_request(request)
        if isinstance(request, GenerationRequest) and request.constraint is not None and self.constraints:
            self.guide().compile(request.constraint)

    def generate_each(self, requests: Sequence[GenerationRequest]) -> list[Completion | BackendError]:
        """A row whose constraint hit a dead end fails alone (its batch neighbours still answer)."""
        return [constrained.as_failure(c) for c in super().generate_each(requests)]

    # -- prefix cache --------------------------------------------------------
    def _cached_start(self, seq: tuple[int, ...], gemm: str, limit: int):  # type: ignore[no-untyped-def]
        """The cached batch-1 state sharing the most leading tokens with ``seq`` (at most
        ``limit``), cut to that length: ``(state or None, length)``.

        A retry whose prompt differs only after a long shared part (feedback notes, a new
        question under the same few-shot block) then recomputes only what differs.
        """
        best, best_len, best_key = None, 0, None
        for key, cached in self._prefix_cache.items():
            n = min(_common_length(key[1], seq), limit)
            if key[0] == gemm and n > best_len:
                best, best_len, best_key = cached, n, key
        if best is None:
            return None, 0
        self._prefix_cache.move_to_end(best_key)
        return (best.truncate(best_len) if best_len < best.slots else best), best_len

    def _remember(self, seq: tuple[int, ...], gemm: str, state) -> None:  # type: ignore[no-untyped-def]
        """Keep the batch-1 KV state of ``seq`` (LRU of ``prefix_cache_size`` entries)."""
        self._prefix_cache[(gemm, seq)] = state
        self._prefix_cache.move_to_end((gemm, seq))
        while len(self._prefix_cache) > self._prefix_cache_size:
            self._prefix_cache.popitem(last=False)

    @staticmethod
    def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
        first = seqs[0]
        n = min(len(s) for s in seqs)
        i = 0
        while i < n and all(s[i] == first[i] for s in seqs):
            i += 1
        return i

    def _prefill(self, seqs: list[list[int]], gemm: str):  # type: ignore[no-untyped-def]
        """Run ``seqs`` and return (last hidden [B, H], cache).

        The longest cached start of the prefix all rows share is reused.  The rest of
        that prefix gets its own batch-1 pass (and is cached) only when that saves more
        than the pass costs; otherwise every row computes it as part of its own tokens.
        A single sequence runs in one pass, and its whole prompt is cached afterwards.
        """
        torch = self._torch
        shared = self._common_prefix(seqs) if len(seqs) > 1 else len(seqs[0])
        shared = min(shared, min(len(s) for s in seqs) - 1)  # keep >= 1 own token per row
        start, start_len = self._cached_start(tuple(seqs[0][:shared]), gemm, shared) if shared > 0 else (None, 0)
        if len(seqs) > 1 and (shared - start_len) * (len(seqs) - 1) > PREFIX_PASS_TOKENS:
            prefix = tuple(seqs[0][:shared])
            ids = torch.tensor([prefix[start_len:]], dtype=torch.long)
            _, start = self.net.forward(ids, torch.ones_like(ids, dtype=torch.bool), start, gemm)
            start_len = shared
            self._remember(prefix, gemm, start)
        tails = [s[start_len:] for s in seqs]
        ids, valid = self._padded(tails)
        cache = start.expand(len(tails)) if start is not None else None
        hidden, cache = self.net.forward(ids, valid, cache, gemm)
        if len(seqs) == 1:
            self._remember(tuple(seqs[0]), gemm, cache)
        last = torch.tensor([len(t) - 1 for t in tails])
        return hidden[torch.arange(len(tails)), last], cache

    def _padded(self, seqs: Sequence[Sequence[int]]):  # type: ignore[no-untyped-def]
        """Right-padded token ids ``[B, T]`` and the mask of real tokens."""
        torch = self._torch
        width = max(len(t) for t in seqs)
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        valid = torch.zeros(len(seqs), width, dtype=torch.bool)
        for i, t in enumerate(seqs):
            ids[i, : len(t)] = torch.tensor(t)
            valid[i, : len(t)] = True
        return ids, valid

    def _chunks(self, order: list[int], lengths: list[int]) -> list[list[int]]:
        """Split indices (sorted by length) into batches of at most max_batch_tokens."""
        chunks, cur, cur_max = [], [], 0
        for i in order:
            new_max = max(cur_max, lengths[i])
            if cur and new_max * (len(cur) + 1) > self.max_batch_tokens:
                chunks.append(cur)
                cur, new_max = [], lengths[i]
            cur.append(i)
            cur_max = new_max
        if cur:
            chunks.append(cur)
        return chunks

    # -- features --------------------------------------------------------------
    def features(self, texts: Sequence[str], layers: Sequence[int],  # type: ignore[no-untyped-def]
                 pooling: str = "mean"):
        """Hidden states of ``layers`` averaged over each text's tokens (``pooling="last"``:
        at its last token): ``[N, len(layers), H]`` float32.  ``pooling="mean,last"``
        gives both from one pass, side by side (``2H`` wide).

        Texts are encoded as they are (no chat template); a text longer than
        ``FEATURE_TOKENS`` tokens keeps its first and last halves.  Layer ``i`` is the
        output of block ``i``; negative indices count from the top.
        """
        import numpy as np

        blocks = []
        for layer in layers:
            block = layer + self.num_layers if layer < 0 else layer
            if not 0 <= block < self.num_layers:
                raise BackendError(f"layer {layer} does not exist: the model has {self.num_layers} blocks",
                                   hint=f"use layer indices from 0 to {self.num_layers - 1} (or negative ones)")
            blocks.append(block)
        kinds = pooling.split(",")
        if not kinds or any(k not in self.feature_poolings for k in kinds):
            raise BackendError(f"unknown pooling {pooling!r}", hint="use 'mean', 'last' or 'mean,last'")
        half = FEATURE_TOKENS // 2
        seqs = [(ids[:half] + ids[-half:]) if len(ids) > FEATURE_TOKENS else (ids or [0])
                for ids in self.tokenizer.encode_batch(list(texts))]
        out = np.zeros((len(seqs), len(blocks), len(kinds) * self.net.config.hidden_size), dtype=np.float32)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        with self._lock, device_scope(self.device):
            for chunk in self._chunks(order, [len(s) for s in seqs]):
                ids, valid = self._padded([seqs[i] for i in chunk])
                pooled: dict = dict.fromkeys(blocks)
                self.net.forward(ids, valid, None, self._gemm["score"], pooled=pooled, pooling=pooling)
                for j, block in enumerate(blocks):
                    out[chunk, j] = pooled[block].float().cpu().numpy()
        return out

    def _check_length(self, n_tokens: int) -> None:
        if n_tokens > self.max_context:
            raise BackendError(
                f"prompt of {n_tokens} tokens exceeds the model's context of {self.max_context}",
                hint="shorten the input or the few-shot examples",
            )


def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
