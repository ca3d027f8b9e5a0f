"""A deterministic, dependency-free backend for unit tests and overhead benchmarks.

``fake`` answers by rules, never by a model: it is how the framework's own logic
is tested without paying for a forward pass.  It is not a stand-in for proving
that a feature works with a real model.

* ``generate``: returns ``responses[i % len(responses)]`` if ``responses`` is given,
  otherwise echoes the last user message (``"echo: ..."``).  Text is reported through
  ``on_text`` word by word, as a streaming backend does.
* ``score_batch``: a continuation scores higher the more of its words occur in
  the prompt (plus a small length penalty), so tests can steer the label.
* constraints (answering by rules, declared unless ``responses`` scripts the answers):
  ``choice`` picks the option the score rule favours (at temperature > 0 it samples from
  the rule's softmax, seeded by the prompt, so it stays deterministic) and, with
  ``logprobs``, reports the options' log-probabilities as the first token's
  alternatives; ``json_schema`` answers a minimal valid instance; ``regex`` a short match.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
from typing import Sequence

from ..errors import BackendError
from .base import Backend, Completion, Constraint, GenerationRequest, Prompt, ScoreRequest, ScoreResult, TokenLogprob

#: what the rule-following fake enforces
FAKE_CONSTRAINTS = frozenset({"choice", "json_schema", "regex"})
_PIECE = re.compile(r"\s*\S+|\s+")


def prompt_text(prompt: Prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(m.get("content", "") for m in prompt)


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


class FakeBackend(Backend):
    name = "fake"
    can_score = True
    supports_json_schema = False
    max_context = 100_000

    def __init__(
        self,
        model: str = "fake",
        responses: Sequence[str] | None = None,
        delay_s: float = 0.0,
        can_score: bool = True,
        constraints: Sequence[str] | None = None,
    ) -> None:
        self.model = model or "fake"
        self.responses = list(responses) if responses else None
        self.delay_s = delay_s
        self.can_score = can_score
        self.calls = 0
        default = FAKE_CONSTRAINTS if self.responses is None else frozenset()
        self.constraints = frozenset(constraints) if constraints is not None else default

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        out = []
        for req in requests:
            if self.delay_s:
                time.sleep(self.delay_s)
            constraint = req.constraint if req.constraint is not None and req.constraint.kind in self.constraints \
                else None
            texts, logprobs = [], []
            for i in range(req.n):
                if constraint is not None:
                    text, first = self._constrained(req, constraint, i)
                    logprobs.append([first] if first is not None else [])
                elif self.responses is not None:
                    text = self.responses[self.calls % len(self.responses)][: req.max_tokens * 8]
                else:
                    lines = prompt_text(req.prompt).splitlines()
                    text = ("echo: " + (lines[-1] if lines else ""))[: req.max_tokens * 8]
                self.calls += 1
                texts.append(text)
                if req.on_text is not None:
                    for piece in _PIECE.findall(text):
                        req.on_text(i, piece)
            out.append(
                Completion(
                    texts=texts,
                    finish_reasons=["stop"] * req.n,
                    prompt_tokens=self.count_tokens(prompt_text(req.prompt)),
                    completion_tokens=sum(self.count_tokens(t) for t in texts),
                    logprobs=logprobs if req.logprobs and any(logprobs) else None,
                )
            )
        return out

    def _constrained(self, req: GenerationRequest, c: Constraint, sample: int) -> tuple[str, TokenLogprob | None]:
        """An answer within ``c`` (and, for a choice, the options as the first token's alternatives)."""
        from .structured import minimal_instance, regex_example

        if c.kind == "choice":
            options = list(c.value)
            raw = self._rule_scores(prompt_text(req.prompt), options)
            norm = math.log(sum(math.exp(x) for x in raw))
            top = {o: x - norm for o, x in zip(options, raw)}
            if req.temperature > 0:
                seed = hashlib.sha256(f"{req.seed}|{sample}|{prompt_text(req.prompt)}".encode()).digest()
                weights = [math.exp((x - max(raw)) / req.temperature) for x in raw]
                pick = random.Random(seed).choices(options, weights)[0]
            else:
                pick = max(options, key=top.__getitem__)
            return pick, TokenLogprob(pick, top[pick], top)
        try:
            if c.kind == "json_schema":
                return json.dumps(minimal_instance(c.value)), None
            if c.kind == "regex":
                return regex_example(c.value), None
        except ValueError as exc:
            raise BackendError(f"the fake backend cannot answer within this {c.kind} constraint: {exc}") from None
        raise BackendError(f"the fake backend does not enforce {c.kind} constraints")

    def _rule_scores(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        words = _words(prompt)
        return [-2.0 * max(1, len(c.split())) + 1.5 * len(_words(c) & words) for c in continuations]

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        if not self.can_score:
            return super().score_batch(requests)
        out = []
        for req in requests:
            if self.delay_s:
                time.sleep(self.delay_s)
            self.calls += 1
            text = prompt_text(req.prompt)
            logprobs = self._rule_scores(text, req.continuations)
            lengths = [max(1, len(c.split())) for c in req.continuations]
            out.append(ScoreResult(logprobs, lengths, prompt_tokens=self.count_tokens(text)))
        return out

    def count_tokens(self, text: str) -> int:
        return max(1, len(text.split()))
