"""Few-shot demonstrations retrieved per input by embedding similarity.

A task with ``retrieval:`` picks, for each record, the ``k`` most similar examples of
its pool (sentence embeddings; character n-grams for Chinese) as its demonstrations.
The neighbours' labels also give a similarity-weighted kNN distribution, which can

* prune the label set the model scores to the ``candidates`` most likely labels (many
  labels, e.g. 77 intents: the model scores 10 instead of 77), and
* be mixed with the model's distribution (``knn_weight``: p ∝ p_LM^(1-w) · p_kNN^w).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

#: probability floor for labels no neighbour votes for (keeps log-mixing finite)
KNN_FLOOR = 1e-3


class RetrievalConfig(BaseModel):
    """``retrieval:`` block of a task."""

    model_config = ConfigDict(extra="forbid")

    #: labelled examples to draw demonstrations from (input fields + ``output``/``label``)
    pool: list[dict[str, Any]] = Field(min_length=1)
    k: int = Field(default=4, ge=0)
    embedder: str = "auto"
    #: neighbours that vote for the kNN distribution (default: max(k, 8))
    neighbours: int | None = Field(default=None, ge=1)
    knn_weight: float = Field(default=0.0, ge=0.0, le=1.0)
    candidates: int | None = Field(default=None, ge=2)


@dataclass
class Neighbours:
    examples: list[dict[str, Any]]  # demonstrations, most similar last (closest to the input)
    knn: dict[str, float]  # label -> kNN probability


class Retriever:
    """Embeds the pool once; answers nearest-neighbour queries."""

    def __init__(self, config: RetrievalConfig, render: Callable[[dict[str, Any]], str],
                 answer_of: Callable[[dict[str, Any]], str]) -> None:
        from ..embeddings import get_embedder

        self.config = config
        self.render = render
        self.pool = list(config.pool)
        texts = [render(ex) for ex in self.pool]
        self.labels = [answer_of(ex) for ex in self.pool]
        self.embedder = get_embedder(config.embedder, corpus=texts)
        self.matrix = self.embedder.encode(texts)

    def reconfigured(self, config: RetrievalConfig) -> "Retriever":
        """This index (same pool, same embeddings) answering with ``config``'s k, neighbours and weights."""
        import copy

        clone = copy.copy(self)
        clone.config = config
        return clone

    def query(self, contexts: Sequence[dict[str, Any]], labels: Sequence[str]) -> list[Neighbours]:
        import numpy as np

        q = self.embedder.encode([self.render(c) for c in contexts])
        sims = q @ self.matrix.T  # rows are L2-normalised: cosine similarity
        k = min(self.config.k, len(self.pool))
        m = min(self.config.neighbours or max(k, 8), len(self.pool))
        out = []
        for i, row in enumerate(sims):
            text = self.render(contexts[i])
            order = np.argsort(-row)
            # never show a record itself as its own demonstration (e.g. pool == data)
            order = [j for j in order[: m + 1] if self.render(self.pool[j]) != text][:m]
            votes = dict.fromkeys(labels, 0.0)
            for j in order:
                if self.labels[j] in votes:
                    votes[self.labels[j]] += math.exp(10.0 * float(row[j]))  # sharp similarity weighting
            total = sum(votes.values())
            knn = {lab: ((v / total) if total else 1.0 / len(labels)) for lab, v in votes.items()}
            knn = {lab: (p + KNN_FLOOR) / (1 + KNN_FLOOR * len(labels)) for lab, p in knn.items()}
            demos = [self.pool[j] for j in reversed(order[:k])]
            out.append(Neighbours(demos, knn))
        return out


def mix(lm: Sequence[float], knn: Sequence[float], weight: float) -> list[float]:
    """p ∝ lm^(1-w) · knn^w over the same labels."""
    if weight <= 0:
        return list(lm)
    logs = [(1 - weight) * math.log(max(a, 1e-12)) + weight * math.log(max(b, 1e-12)) for a, b in zip(lm, knn)]
    m = max(logs)
    exps = [math.exp(v - m) for v in logs]
    total = sum(exps)
    return [e / total for e in exps]
