"""Turning model evidence into a probability distribution over labels.

* ``distribution_from_logprobs`` – softmax over the labels' log-probabilities,
  length-normalised (mean log-prob per token) when labels differ in token length;
* ``calibrate`` – contextual calibration (Zhao et al., 2021): divide by the
  distribution the model gives a content-free input, renormalise;
* ``distribution_from_votes`` – vote share over sampled answers, for backends
  that cannot score.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence


def softmax(values: Sequence[float]) -> list[float]:
    m = max(values)
    exps = [math.exp(v - m) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def distribution_from_logprobs(
    logprobs: Sequence[float], lengths: Sequence[int]
) -> tuple[list[float], bool]:
    """Return (probabilities, length_normalised)."""
    normalise = len(set(lengths)) > 1
    values = [lp / n for lp, n in zip(logprobs, lengths)] if normalise else list(logprobs)
    return softmax(values), normalise


def calibrate(probs: Sequence[float], content_free: Sequence[float]) -> list[float]:
    adjusted = [p / max(c, 1e-12) for p, c in zip(probs, content_free)]
    total = sum(adjusted)
    return [a / total for a in adjusted]


def _normalise_answer(text: str) -> str:
    return re.sub(r"[\s\W_]+", " ", text.casefold()).strip()


def match_label(answer: str, labels: Sequence[str]) -> str | None:
    """Map a free-text answer onto one of ``labels`` (exact, then prefix, then mention)."""
    norm = _normalise_answer(answer)
    table = {_normalise_answer(label): label for label in labels}
    if norm in table:
        return table[norm]
    prefixes = [key for key in table if key and norm.startswith(key)]
    if prefixes:  # the longest: "negative sentiment" is "negative", not "neg"
        return table[max(prefixes, key=len)]
    mentioned = [key for key in table if key and re.search(rf"(?<!\w){re.escape(key)}(?!\w)", norm)]
    # "very negative" also mentions "negative": a label inside a longer mentioned one does not count
    mentioned = [k for k in mentioned if not any(k != other and k in other for other in mentioned)]
    if len(mentioned) == 1:
        return table[mentioned[0]]
    return None


def distribution_from_votes(answers: Sequence[str], labels: Sequence[str]) -> tuple[list[float], int]:
    """Vote share of each label over ``answers``; returns (probs, n_unparsed)."""
    votes = Counter(match_label(a, labels) for a in answers)
    unparsed = votes.pop(None, 0)
    total = sum(votes.values())
    if total == 0:
        return [1.0 / len(labels)] * len(labels), unparsed
    return [votes.get(label, 0) / total for label in labels], unparsed
