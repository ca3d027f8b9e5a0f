"""A deterministic, dependency-free backend for unit tests and overhead benchmarks.

``fake`` answers by rules, never by a model: it is how the framework's own logic
is tested without paying for a forward pass.  It is not a stand-in for proving
that a feature works with a real model.

* ``generate``: returns ``responses[i % len(responses)]`` if ``responses`` is given,
  otherwise echoes the last user message (``"echo: ..."``).
* ``score_batch``: a continuation scores higher the more of its words occur in
  the prompt (plus a small length penalty), so tests can steer the label.
"""

from __future__ import annotations

import re
import time
from typing import Sequence

from .base import Backend, Completion, GenerationRequest, Prompt, ScoreRequest, ScoreResult


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
    ) -> None:
        self.model = model or "fake"
        self.responses = list(responses) if responses else None
        self.delay_s = delay_s
        self.can_score = can_score
        self.calls = 0

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        out = []
        for req in requests:
            if self.delay_s:
                time.sleep(self.delay_s)
            texts = []
            for _ in range(req.n):
                if self.responses is not None:
                    text = self.responses[self.calls % len(self.responses)]
                else:
                    lines = prompt_text(req.prompt).splitlines()
                    text = "echo: " + (lines[-1] if lines else "")
                self.calls += 1
                texts.append(text[: req.max_tokens * 8])
            out.append(
                Completion(
                    texts=texts,
                    finish_reasons=["stop"] * req.n,
                    prompt_tokens=self.count_tokens(prompt_text(req.prompt)),
                    completion_tokens=sum(self.count_tokens(t) for t in texts),
                )
            )
        return out

    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        if not self.can_score:
            return super().score_batch(requests)
        out = []
        for req in requests:
            if self.delay_s:
                time.sleep(self.delay_s)
            self.calls += 1
            words = _words(prompt_text(req.prompt))
            logprobs, lengths = [], []
            for cont in req.continuations:
                cw = _words(cont)
                hits = len(cw & words)
                length = max(1, len(cont.split()))
                logprobs.append(-2.0 * length + 1.5 * hits)
                lengths.append(length)
            out.append(
                ScoreResult(logprobs, lengths, prompt_tokens=self.count_tokens(prompt_text(req.prompt)))
            )
        return out

    def count_tokens(self, text: str) -> int:
        return max(1, len(text.split()))
