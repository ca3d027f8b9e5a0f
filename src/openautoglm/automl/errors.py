"""AutoML errors: each names the place and the fix (the CLI prints them cleanly)."""

from __future__ import annotations

from typing import Sequence

from ..errors import OpenAutoGLMError


class PlanError(OpenAutoGLMError):
    """The instruction cannot be turned into a plan that fits the data."""


class AmbiguousInstruction(PlanError):
    """The instruction leaves a plan field open; ``question`` asks the user to settle it."""

    def __init__(self, question: str, *, field: str, candidates: Sequence[str], hint: str | None = None) -> None:
        self.question = question
        self.field = field
        self.candidates = list(candidates)
        super().__init__(question, hint=hint)
