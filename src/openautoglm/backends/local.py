"""The local backend: runs a model in-process on CPU (or GPU) with PyTorch.

``LocalBackend()`` loads the embedded SmolLM2-135M-Instruct with no network access.
Scoring is batched and reuses the KV cache of the prompt prefix that all requests in
a batch share (instructions, few-shot demonstrations, the chat header), so only each
input's own tokens are computed.  Generation is a tight loop over the same cache.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import OrderedDict
from typing import Callable, Sequence

from ..errors import BackendError
from . import constrained
from .base import CONSTRAINT_KINDS, Backend, Completion, GenerationRequest, ScoreRequest, ScoreResult, TokenLogprob
from .device import device_scope, resolve_device
from .weights import ModelFiles, resolve_model_files

#: generation steps with at most this many rows use fp16 weight copies (memory-bound GEMV);
#: measured on an AVX2-only EPYC: fp16 2.3x faster at 1 row, equal at 8, fp32 1.3-1.8x faster at 16-32
FP16_DECODE_ROWS = 8
#: generation decodes at most this many prompts' rows in one step (their KV caches side by side)
MAX_DECODE_ROWS = 32
#: a separate batch-1 pass over a batch's shared, uncached prompt prefix costs about as much as
#: this many extra row-tokens (one read of every weight), so it runs only when it saves more
PREFIX_PASS_TOKENS = 32
#: features() reads at most this many tokens of a text (its first and last halves)
FEATURE_TOKENS = 256
#: hidden states projected onto the vocabulary at once when scoring continuations
LOGIT_ROWS = 256


class LocalBackend(Backend):
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

    # -- scoring -------------------------------------------------------------
    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        if not requests:
            return []
        prompts = self.tokenizer.encode_batch([self.tokenizer.render(r.prompt) for r in requests])
        conts = [[self.tokenizer.encode(c) for c in r.continuations] for r in requests]
        for i, r in enumerate(requests):
            if any(len(c) == 0 for c in conts[i]):
                raise BackendError(f"empty continuation in score request {i}: {r.continuations!r}")
            self._check_length(len(prompts[i]) + max(len(c) for c in conts[i]))
        results: list[ScoreResult | None] = [None] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: len(prompts[i]))
        with self._lock, device_scope(self.device):
            tries = [_continuation_trie(c) for c in conts]
            for chunk in self._chunks(order, [len(p) + len(t[0]) for p, t in zip(prompts, tries)]):
                t0 = time.perf_counter()
                scores = self._score_chunk([prompts[i] for i in chunk], [conts[i] for i in chunk],
                                           [tries[i] for i in chunk])
                dt = (time.perf_counter() - t0) / len(chunk)
                for j, i in enumerate(chunk):
                    results[i] = ScoreResult(
                        logprobs=scores[j],
                        lengths=[len(c) for c in conts[i]],
                        prompt_tokens=len(prompts[i]),
                        latency_s=dt,
                    )
        return [r for r in results if r is not None]

    def _score_chunk(self, prompts: list[list[int]], conts: list[list[list[int]]],
                     tries: list["Trie"]) -> list[list[float]]:
        torch = self._torch
        gemm = self._gemm["score"]
        last_hidden, cache = self._prefill(prompts, gemm)
        first_lp = torch.log_softmax(self.net.logits(last_hidden, gemm), dim=-1)  # [B, V]
        scores = [[float(first_lp[b, c[0]]) for c in cs] for b, cs in enumerate(conts)]
        # continuations longer than one token: each prompt's continuations, as a trie of their
        # distinct prefixes, run in one row on top of that prompt's cache (labels sharing
        # leading tokens, e.g. "card arrival" / "card linking", compute them once)
        width = max(len(nodes) for nodes, _ in tries)
        if width == 0:
            return scores
        depth = max((d for nodes, _ in tries for _, _, d in nodes), default=0) + 1
        ids = torch.zeros(len(conts), width, dtype=torch.long)
        valid = torch.zeros(len(conts), width, dtype=torch.bool)
        depths = torch.zeros(len(conts), width, dtype=torch.long)
        paths = torch.full((len(conts), width, depth), -1, dtype=torch.long)  # each node's ancestors, root first
        picks: list[tuple[int, int, int, int]] = []  # (prompt, continuation, flat node, target token)
        for b, (nodes, index) in enumerate(tries):
            for i, (token, parent, d) in enumerate(nodes):
                ids[b, i], depths[b, i] = token, d
                if parent >= 0:
                    paths[b, i] = paths[b, parent]
                paths[b, i, d] = i
            valid[b, : len(nodes)] = True
            picks += [(b, k, b * width + index[tuple(c[:j])], c[j])
                      for k, c in enumerate(conts[b]) for j in range(1, len(c))]
        hidden, _ = self.net.forward(ids, valid, cache, gemm, tree=(depths, paths))
        flat = hidden.reshape(-1, hidden.shape[-1])
        rows = torch.tensor([p[2] for p in picks])
        targets = torch.tensor([p[3] for p in picks])
        used, inverse = torch.unique(rows, return_inverse=True)
        values = torch.empty(len(picks))
        for lo in range(0, len(used), LOGIT_ROWS):  # full-vocabulary logits only where a target is read
            logits = self.net.logits(flat[used[lo:lo + LOGIT_ROWS]], gemm).float()
            lse = torch.logsumexp(logits, dim=-1)
            here = (inverse >= lo) & (inverse < lo + LOGIT_ROWS)
            local = inverse[here] - lo
            values[here] = logits[local, targets[here]] - lse[local]
        for (b, k, _, _), value in zip(picks, values.tolist()):
            scores[b][k] += value
        return scores

    def _check_length(self, n_tokens: int) -> None:
        if n_tokens > self.max_context:
            raise BackendError(
                f"prompt of {n_tokens} tokens exceeds the model's context of {self.max_context}",
                hint="shorten the input or the few-shot examples",
            )

    # -- generation ------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        if not requests:
            return []
        texts = [self.tokenizer.render(r.prompt) for r in requests]
        prompts = self.tokenizer.encode_batch(texts)
        for p, r in zip(prompts, requests):
            self._check_length(len(p) + r.max_tokens)
        out: list[Completion | None] = [None] * len(requests)
        # requests with equal sampling settings run together as one batch
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.temperature, r.top_p, r.max_tokens, r.stop, r.logprobs, r.seed), []).append(i)
        with self._lock, device_scope(self.device):
            for idxs in groups.values():
                order = sorted(idxs, key=lambda i: len(prompts[i]))
                for start in range(0, len(order), MAX_DECODE_ROWS):  # prefill is chunked inside
                    chunk = order[start:start + MAX_DECODE_ROWS]
                    t0 = time.perf_counter()
                    done = self._generate_chunk([prompts[i] for i in chunk], [requests[i] for i in chunk])
                    dt = (time.perf_counter() - t0) / len(chunk)
                    for comp, i in zip(done, chunk):
                        comp.latency_s = dt
                        out[i] = comp
        return [c for c in out if c is not None]

    def _generate_chunk(self, prompts: list[list[int]], reqs: list[GenerationRequest]) -> list[Completion]:
        torch = self._torch
        req = reqs[0]  # all requests in a chunk share sampling settings
        n_rows = [r.n for r in reqs]
        row_src = [i for i, n in enumerate(n_rows) for _ in range(n)]
        from .llama_lite import KVCache

        # prefill in chunks of at most max_batch_tokens, then decode every row together: a
        # decode step reads all weights once however many rows it carries
        parts = [self._prefill([prompts[i] for i in part], self._gemm["prefill"])
                 for part in self._chunks(list(range(len(prompts))), [len(p) for p in prompts])]
        last_hidden = torch.cat([hidden for hidden, _ in parts])
        cache = KVCache.concat([c for _, c in parts])
        if len(row_src) != len(prompts):
            index = torch.tensor(row_src)
            last_hidden, cache = last_hidden.index_select(0, index), cache.select(index)
        generator = self._generator
        if req.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(req.seed)
        n = len(row_src)
        tokens: list[list[int]] = [[] for _ in range(n)]
        lps: list[list[TokenLogprob]] = [[] for _ in range(n)]
        finish = ["length"] * n
        streams = [_TextStream(reqs[src].on_text, row_src[:row].count(src), self.tokenizer.decode, reqs[src].stop)
                   if reqs[src].on_text else None for row, src in enumerate(row_src)]
        active = list(range(n))  # row ids still generating, aligned with cache rows
        logits = self.net.logits(last_hidden, self._gemm["prefill"])
        guide = self.guide().rows([reqs[src].constraint for src in row_src]) \
            if self.constraints and any(r.constraint is not None for r in reqs) else None
        for _step in range(req.max_tokens):
            if guide is not None:  # each constrained row's mask on its own logits
                logits = guide.mask(logits, active)
            next_ids = self._sample(logits, req, generator)
            logprobs = torch.log_softmax(logits, dim=-1) if req.logprobs else None
            keep = []
            for j, row in enumerate(active):
                tid = int(next_ids[j])
                if guide is not None and guide.failed(row):
                    finish[row] = "error"
                    continue
                if tid in self.tokenizer.eos_ids:
                    finish[row] = "stop"
                    continue
                tokens[row].append(tid)
                if guide is not None:
                    guide.advance(row, tid)
                if logprobs is not None:
                    lps[row].append(self._token_logprob(logprobs[j], tid))
                if req.stop and self._hit_stop(tokens[row], req.stop):
                    finish[row] = "stop"
                    continue
                if streams[row] is not None:
                    streams[row].update(tokens[row])
                keep.append(j)
            if not keep:
                break
            if len(keep) != len(active):
                sel = torch.tensor(keep)
                cache = cache.select(sel)
                next_ids = next_ids.index_select(0, sel)
                active = [active[j] for j in keep]
            if _step == req.max_tokens - 1:
                break
            ids = next_ids[:, None]
            gemm = self._gemm["decode"]
            if gemm == "fp16" and len(active) > FP16_DECODE_ROWS:
                # many rows: compute-bound again.  The one place where a row's result depends
                # on its batch (fp16 vs fp32 weights); a fixed decode precision would cost 2x
                # at 32 rows (fp16) or 3x at one row (fp32), measured
                gemm = self._gemm["prefill"]
            # each row's token goes to the slot of its position, its attention runs over
            # exactly its own keys: the step's result for a row is the row's alone
            hidden, cache = self.net.forward(ids, torch.ones_like(ids, dtype=torch.bool), cache, gemm, decode=True)
            logits = self.net.logits(hidden[:, -1], gemm)
        completions = []
        for i, r in enumerate(reqs):
            rows = [row for row, src in enumerate(row_src) if src == i]
            outs = [self._finish_text(tokens[row], r.stop) for row in rows]
            for row, text in zip(rows, outs):
                if streams[row] is not None:
                    streams[row].finish(text)
            completions.append(
                Completion(
                    texts=outs,
                    finish_reasons=[finish[row] for row in rows],
                    prompt_tokens=len(prompts[i]),
                    completion_tokens=sum(len(tokens[row]) for row in rows),
                    logprobs=[lps[row] for row in rows] if r.logprobs else None,
                )
            )
        for i, comp in enumerate(completions):
            constrained.annotate(comp, guide, [row for row, src in enumerate(row_src) if src == i])
        return completions

    def _sample(self, logits, req: GenerationRequest, generator):  # type: ignore[no-untyped-def]
        torch = self._torch
        if req.temperature <= 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits / req.temperature, dim=-1)
        if req.top_p < 1.0:
            sorted_p, sorted_i = probs.sort(dim=-1, descending=True)
            cum = sorted_p.cumsum(dim=-1)
            sorted_p[(cum - sorted_p) > req.top_p] = 0.0
            probs = torch.zeros_like(probs).scatter(-1, sorted_i, sorted_p)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    def _token_logprob(self, logprobs, tid: int) -> TokenLogprob:  # type: ignore[no-untyped-def]
        top_v, top_i = logprobs.topk(5)
        # a token a constraint masked out has no probability: it is not an alternative (and -inf is no JSON)
        top = {self.tokenizer.decode([int(i)]): float(v) for v, i in zip(top_v, top_i) if math.isfinite(float(v))}
        return TokenLogprob(self.tokenizer.decode([tid]), float(logprobs[tid]), top)

    def _hit_stop(self, tokens: list[int], stops: tuple[str, ...]) -> bool:
        tail = self.tokenizer.decode(tokens[-16:])
        return any(s in tail for s in stops)

    def _finish_text(self, tokens: list[int], stops: tuple[str, ...]) -> str:
        text = self.tokenizer.decode(tokens)
        cut = min((text.find(s) for s in stops if s in text), default=-1)
        return text[:cut] if cut >= 0 else text


class _TextStream:
    """Sends one generated row's text to ``on_text`` as it grows.

    The last ``len(longest stop) - 1`` characters are held back until the row ends, so
    a stop string is never sent, and so is a trailing incomplete UTF-8 character.
    """

    def __init__(self, callback: Callable[[int, str], None], index: int, decode: Callable[[list[int]], str],
                 stops: tuple[str, ...]) -> None:
        self.callback, self.index, self.decode = callback, index, decode
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.sent = ""

    def update(self, tokens: list[int]) -> None:
        text = self.decode(tokens)
        if text.endswith("\ufffd"):
            return
        ready = text[: len(text) - self.hold] if self.hold else text
        if len(ready) > len(self.sent) and ready.startswith(self.sent):
            self.callback(self.index, ready[len(self.sent):])
            self.sent = ready

    def finish(self, text: str) -> None:
        if len(text) > len(self.sent) and text.startswith(self.sent):
            self.callback(self.index, text[len(self.sent):])
            self.sent = text


#: trie nodes ``(token, parent or -1, depth)`` and the node of each token prefix
Trie = tuple[list[tuple[int, int, int]], dict[tuple[int, ...], int]]


def _continuation_trie(conts: Sequence[Sequence[int]]) -> Trie:
    """The tokens to run to score continuations past their first token, shared as a trie.

    Continuation ``c`` reads ``c[j]`` (j >= 1) from the state after its prefix ``c[:j]``:
    each distinct such prefix is one node ``(its last token, parent node or -1, depth)``,
    parents before children; ``index`` maps a prefix to its node.
    """
    nodes: list[tuple[int, int, int]] = []
    index: dict[tuple[int, ...], int] = {}
    for c in conts:
        for j in range(1, len(c)):
            key = tuple(c[:j])
            if key not in index:
                index[key] = len(nodes)
                nodes.append((c[j - 1], index[key[:-1]] if j > 1 else -1, j - 1))
    return nodes, index


def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
