"""A backend that wraps another and forwards everything it does not override.

Wrappers (the optimizer's call counter, the server's micro-batcher) used to copy
capability attributes by hand and dropped some (``score_method``: a student served
through the batcher reported its confidences as ``logprob``).  Subclass
:class:`DelegatingBackend` instead: every public attribute and method of the
:class:`~.base.Backend` contract reads through to ``inner`` unless the subclass
defines it.
"""

from __future__ import annotations

from typing import Any, Sequence

from .base import Backend, Completion, GenerationRequest, ScoreRequest, ScoreResult

#: attributes of the contract (capability flags and names), forwarded as read-through properties
CONTRACT_ATTRIBUTES = tuple(
    name for name, value in vars(Backend).items()
    if not name.startswith("_") and not callable(value) and not isinstance(value, (property, classmethod))
)


def _forward(name: str) -> property:
    return property(lambda self: getattr(self.inner, name), doc=f"``inner.{name}``")


class DelegatingBackend(Backend):
    """Forwards the Backend contract to ``inner``; override what the wrapper changes."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return self.inner.generate(requests)

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        return self.inner.score_batch(requests)

    def check_request(self, request: GenerationRequest | ScoreRequest) -> None:
        self.inner.check_request(request)

    def features(self, texts: Sequence[str], layers: Sequence[int], pooling: str = "mean") -> Any:
        return self.inner.features(texts, layers, pooling)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def identity(self) -> str:
        return self.inner.identity()

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # anything a concrete backend adds (files, tokenizer...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


for _name in CONTRACT_ATTRIBUTES:
    setattr(DelegatingBackend, _name, _forward(_name))
