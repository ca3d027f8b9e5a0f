"""The result of a task on one record: typed attributes that still read like a dict.

>>> r = Result.of_labels(["positive", "negative"], [0.9, 0.1], "logprob")
>>> r.label, r["label"], r.confidence
('positive', 'positive', 0.9)

A result *is* a ``dict`` (so ``result["label"]``, ``"label" in result``, ``json.dumps``
and ``{**result}`` keep working in user code and in the store), with attributes for
the fields every output kind shares.  A field the kind does not produce reads as
``None``; strategies add their own keys (``reasoning``, ``votes``, ``verified``...).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence


class Result(dict):  # type: ignore[type-arg]
    """One record's answer.  Attributes: ``label``, ``confidence``, ``scores``, ``method``
    (labels); ``output``, ``valid``, ``errors`` (structured output); ``text``; and
    ``attempts``, ``tokens``, ``reasoning`` where the kind or strategy records them."""

    __slots__ = ()

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def of_labels(cls, labels: Sequence[str], probs: Sequence[float], method: str) -> "Result":
        """A distribution over ``labels``; the most probable one is the answer."""
        best = list(probs).index(max(probs))  # the first of equal maxima
        return cls(label=labels[best], confidence=float(probs[best]),
                   scores={label: float(p) for label, p in zip(labels, probs)}, method=method)

    @classmethod
    def of_text(cls, text: str, tokens: int) -> "Result":
        return cls(text=text, tokens=tokens)

    @classmethod
    def wrap(cls, value: Mapping[str, Any] | "Result") -> "Result":
        """``value`` as a :class:`Result` (e.g. an output read back from the store)."""
        return value if isinstance(value, Result) else cls(value)

    # -- typed views -----------------------------------------------------------------------
    @property
    def label(self) -> str | None:
        return self.get("label")

    @property
    def confidence(self) -> float | None:
        return self.get("confidence")

    @property
    def scores(self) -> dict[str, float] | None:
        return self.get("scores")

    @property
    def method(self) -> str | None:
        return self.get("method")

    @property
    def output(self) -> Any:
        return self.get("output")

    @property
    def valid(self) -> bool | None:
        return self.get("valid")

    @property
    def errors(self) -> list[str] | None:
        return self.get("errors")

    @property
    def text(self) -> str | None:
        return self.get("text")

    @property
    def attempts(self) -> int | None:
        return self.get("attempts")

    @property
    def tokens(self) -> int | None:
        return self.get("tokens")

    @property
    def reasoning(self) -> str | None:
        return self.get("reasoning")
