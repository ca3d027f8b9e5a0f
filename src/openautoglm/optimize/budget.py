"""The optimizer's call budget: a backend wrapper that counts (and caps) model calls.

Features of hidden states are remembered, so a text featurised once costs nothing again.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..backends.base import Backend, GenerationRequest, ScoreRequest
from ..backends.delegate import DelegatingBackend
from ..errors import StopRun


class BudgetExhausted(StopRun):
    """The optimizer spent its budget of model calls."""


class CountingBackend(DelegatingBackend):
    """Delegates to a backend and counts the requests that reach it.

    Hidden-state features are remembered per (text, layer, pooling), every pooling the inner
    backend offers being computed in the same pass, so a text featurised once
    (e.g. for choosing a head's layers) costs nothing when a candidate task asks again.
    """

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.calls = 0
        self.limit: int | None = None
        self._features: dict[tuple[str, int, str], Any] = {}

    def _spend(self, n: int) -> None:
        if self.limit is not None and self.calls + n > self.limit:
            raise BudgetExhausted(f"budget of {self.limit} model calls spent")
        self.calls += n

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Any]:
        self._spend(len(requests))
        return self.inner.generate(requests)

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[Any]:
        self._spend(len(requests))
        return self.inner.score_batch(requests)

    def features(self, texts: Sequence[str], layers: Sequence[int], pooling: str = "mean") -> Any:
        import numpy as np

        seen = self._features
        missing = list(dict.fromkeys(t for t in texts if any((t, layer, pooling) not in seen for layer in layers)))
        if missing:
            self._spend(len(missing))
            kinds = list(self.feature_poolings) if pooling in self.feature_poolings else [pooling]
            fresh = self.inner.features(missing, list(layers), ",".join(kinds))
            width = fresh.shape[-1] // len(kinds)
            for row, text in zip(fresh, missing):
                for j, layer in enumerate(layers):
                    for k, kind in enumerate(kinds):
                        seen[(text, layer, kind)] = row[j, k * width:(k + 1) * width]
        return np.stack([np.stack([seen[(t, layer, pooling)] for layer in layers]) for t in texts])

    def close(self) -> None:  # the owner closes the inner backend
        pass
