"""Constrained choices by an LLM: score each candidate answer, never parse free JSON.

Backends that can score give an exact distribution (softmax over the candidates'
length-normalised log-probabilities); others vote over a few sampled answers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..backends.delegate import DelegatingBackend
from ..errors import OpenAutoGLMError

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


def choose(backend: Any, question: str, options: Sequence[str], *, samples: int = 5,
           content_free: str | None = None) -> Choice:
    """Ask ``backend`` to pick one of ``options`` for ``question``.

    With ``content_free`` (the same question with the task blanked out) scores are
    calibrated: each option's log-probability minus its log-probability under the
    content-free question (contextual calibration), which removes the model's
    preference for some options regardless of the task."""
    from ..backends.base import GenerationRequest, ScoreRequest
    from ..core.labels import distribution_from_logprobs, distribution_from_votes

    opts = [str(o) for o in options]
    listing = ", ".join(opts)

    def messages(q: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"{q}\nOptions: {listing}\nAnswer:"}]

    if getattr(backend, "can_score", False):
        reqs = [ScoreRequest(messages(question), tuple(opts))]
        if content_free is not None:
            reqs.append(ScoreRequest(messages(content_free), tuple(opts)))
        res = backend.score_batch(reqs)
        if content_free is not None:
            from ..core.labels import softmax

            probs = softmax([a - b for a, b in zip(res[0].logprobs, res[1].logprobs)])
            return Choice(opts, probs, "scored, calibrated")
        probs, _ = distribution_from_logprobs(res[0].logprobs, [max(1, n) for n in res[0].lengths])
        return Choice(opts, probs, "scored")
    comp = backend.generate([GenerationRequest(messages(question), max_tokens=24, temperature=0.7, n=samples)])[0]
    probs, _ = distribution_from_votes(comp.texts, opts)
    return Choice(opts, probs, "votes")


class PlanningTimeUp(OpenAutoGLMError):
    """The planning share of the time budget is spent: the heuristic planner decides the rest."""


class DeadlineBackend(DelegatingBackend):
    """The planning LLM, asked nothing more once ``deadline`` (on ``clock``) has passed.

    A question already under way (or the model's first load, which happens with it) is not
    interrupted; later ones raise :class:`PlanningTimeUp` and are counted in ``refused``."""

    def __init__(self, inner: Any, deadline: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(inner)
        self.deadline, self.clock, self.refused = deadline, clock, 0

    def _check(self) -> None:
        if self.clock() > self.deadline:
            self.refused += 1
            raise PlanningTimeUp("the planning share of the time budget is spent")

    def generate(self, requests: Sequence[Any]) -> list[Any]:
        self._check()
        return self.inner.generate(requests)

    def score_batch(self, requests: Sequence[Any]) -> list[Any]:
        self._check()
        return self.inner.score_batch(requests)

    def close(self) -> None:  # the owner closes the inner backend
        pass
