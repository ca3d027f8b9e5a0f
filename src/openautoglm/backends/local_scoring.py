"""Label scoring on the local runtime: each continuation's log-probability after its
prompt, batched, with the prompt prefix a batch shares computed once and each prompt's
multi-token continuations run as one trie of their distinct prefixes.

A mixin of :class:`.local.LocalBackend` (it uses the backend's prefill, batching and
model); :func:`_continuation_trie` builds the tries.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import BackendError
from .base import ScoreRequest, ScoreResult
from .device import device_scope

#: hidden states projected onto the vocabulary at once when scoring continuations
LOGIT_ROWS = 256

#: trie nodes ``(token, parent or -1, depth)`` and the node of each token prefix
Trie = tuple[list[tuple[int, int, int]], dict[tuple[int, ...], int]]


class LocalScoring:
    """``score_batch`` of :class:`.local.LocalBackend`."""

    if TYPE_CHECKING:  # provided by LocalBackend
        _torch: Any
        net: Any
        tokenizer: Any
        device: str
        _gemm: dict[str, str]
        _lock: Any

        def _prefill(self, seqs: list[list[int]], gemm: str) -> Any: ...
        def _chunks(self, order: list[int], lengths: list[int]) -> list[list[int]]: ...
        def _check_length(self, n_tokens: int) -> None: ...

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
