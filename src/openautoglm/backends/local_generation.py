"""Text generation on the local runtime: prompts prefilled in batches, then one decode
loop over all their rows (sampling, optional constraints, logprobs, stop strings and
streamed text).

A mixin of :class:`.local.LocalBackend` (it uses the backend's prefill, batching,
tokenizer and model); :class:`_TextStream` sends a row's text as it grows.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

from . import constrained
from .base import Completion, GenerationRequest, TokenLogprob
from .device import device_scope

#: generation steps with at most this many rows use fp16 weight copies (memory-bound GEMV);
#: measured on an AVX2-only EPYC: fp16 2.3x faster at 1 row, equal at 8, fp32 1.3-1.8x faster at 16-32
FP16_DECODE_ROWS = 8
#: generation decodes at most this many prompts' rows in one step (their KV caches side by side)
MAX_DECODE_ROWS = 32


class LocalGeneration:
    """``generate`` of :class:`.local.LocalBackend`."""

    if TYPE_CHECKING:  # provided by LocalBackend
        _torch: Any
        net: Any
        tokenizer: Any
        device: str
        constraints: frozenset[str]
        _gemm: dict[str, str]
        _lock: Any
        _generator: Any

        def _prefill(self, seqs: list[list[int]], gemm: str) -> Any: ...
        def _chunks(self, order: list[int], lengths: list[int]) -> list[list[int]]: ...
        def _check_length(self, n_tokens: int) -> None: ...
        def guide(self) -> constrained.Guide: ...

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
        from .lite_attention import KVCache

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
