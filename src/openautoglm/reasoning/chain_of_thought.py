"""``chain_of_thought``: greedy free-text reasoning, then the answer under the output kind."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from pydantic import Field

from ..core.result import Result
from ..core.strategy import STRATEGIES, Strategy
from .prompts import DEFAULT_COT_TRIGGER, answer_prompt, generate_reasonings

if TYPE_CHECKING:  # pragma: no cover
    from ..core.client import ModelClient
    from ..core.task import Task


@STRATEGIES.register("chain_of_thought")
class ChainOfThought(Strategy):
    name = "chain_of_thought"

    class Settings(Strategy.Settings):
        #: the cue that starts the reasoning, and its length
        trigger: str = DEFAULT_COT_TRIGGER
        max_reasoning_tokens: int = Field(default=96, ge=1, le=131_072)

    def run(self, task: "Task", client: "ModelClient", contexts: Sequence[dict[str, Any]], *, step: str,
            record_keys: Sequence[str], attempt: int = 0,
            notes: Sequence[str | None] | None = None) -> list[Result]:
        s = self.settings
        notes = list(notes) if notes is not None else [None] * len(contexts)
        reasonings = [r[0] for r in generate_reasonings(
            task, client, contexts, step=step, record_keys=record_keys, trigger=s.trigger,
            max_tokens=s.max_reasoning_tokens, attempt=attempt, notes=notes)]
        prompts = [answer_prompt(task, c, r, s.trigger, note) for c, r, note in zip(contexts, reasonings, notes)]
        outs = task.kind.answer(task, client, prompts, step=step, record_keys=record_keys, attempt=attempt,
                                fields=contexts)
        for out, reasoning in zip(outs, reasonings):
            out["reasoning"] = reasoning
            out["method"] = f"chain-of-thought+{out.get('method', task.output)}"
        return outs
