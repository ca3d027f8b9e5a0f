"""Constrained choices by an LLM: score each candidate answer, never parse free JSON.

Backends that can score give an exact distribution (softmax over the candidates'
length-normalised log-probabilities); others vote over a few sampled answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

SYSTEM = ("You are an expert data scientist. You plan supervised machine-learning tasks on tables. "
          "Answer with one of the options, nothing else.")


@dataclass
class Choice:
    """The LLM's distribution over ``options`` and how it was obtained."""

    options: list[str]
    probs: list[float]
    method: str  # "scored" | "votes"

    @property
    def best(self) -> str:
        return self.options[max(range(len(self.probs)), key=self.probs.__getitem__)]

    @property
    def p_best(self) -> float:
        return max(self.probs)

    def prob(self, option: str) -> float:
        return self.probs[self.options.index(option)] if option in self.options else 0.0

    def margin(self) -> float:
        """Ratio of the best to the second-best probability (inf for one option)."""
        ranked = sorted(self.probs, reverse=True)
        return float("inf") if len(ranked) < 2 or ranked[1] <= 0 else ranked[0] / ranked[1]

    def to_dict(self) -> dict[str, Any]:
        top = sorted(zip(self.options, self.probs), key=lambda t: -t[1])[:5]
        return {"method": self.method, "top": [[o, round(p, 4)] for o, p in top]}


def choose(backend: Any, question: str, options: Sequence[str], *, samples: int = 5) -> Choice:
    """Ask ``backend`` to pick one of ``options`` for ``question``."""
    from ..backends.base import GenerationRequest, ScoreRequest
    from ..core.labels import distribution_from_logprobs, distribution_from_votes

    opts = [str(o) for o in options]
    listing = "\n".join(f"- {o}" for o in opts)
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"{question}\n\nOptions:\n{listing}\n\nAnswer:"}]
    if getattr(backend, "can_score", False):
        res = backend.score_batch([ScoreRequest(messages, tuple(opts))])[0]
        probs, _ = distribution_from_logprobs(res.logprobs, [max(1, n) for n in res.lengths])
        return Choice(opts, probs, "scored")
    comp = backend.generate([GenerationRequest(messages, max_tokens=24, temperature=0.7, n=samples)])[0]
    probs, _ = distribution_from_votes(comp.texts, opts)
    return Choice(opts, probs, "votes")
