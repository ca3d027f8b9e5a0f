"""``self_consistency``: ``n`` sampled reasonings per record, each answered under the output
kind; the majority answer wins and its vote share is the confidence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from pydantic import Field

from ..core.result import Result
from ..core.strategy import STRATEGIES, Strategy
from .prompts import DEFAULT_COT_TRIGGER, answer_prompt, generate_reasonings

if TYPE_CHECKING:  # pragma: no cover
    from ..core.client import ModelClient
    from ..core.task import Task


@STRATEGIES.register("self_consistency")
class SelfConsistency(Strategy):
    name = "self_consistency"

    class Settings(Strategy.Settings):
        trigger: str = DEFAULT_COT_TRIGGER
        max_reasoning_tokens: int = Field(default=96, ge=1, le=131_072)
        #: samples and their temperature
        n: int = Field(default=5, ge=1, le=64)
        temperature: float = Field(default=0.7, ge=0.0, le=2.0)

    def run(self, task: "Task", client: "ModelClient", contexts: Sequence[dict[str, Any]], *, step: str,
            record_keys: Sequence[str]) -> list[Result]:
        s = self.settings
        samples = generate_reasonings(task, client, contexts, step=step, record_keys=record_keys, trigger=s.trigger,
                                      max_tokens=s.max_reasoning_tokens, n=s.n, temperature=s.temperature)
        flat_prompts, flat_keys, flat_fields, owner = [], [], [], []
        for i, (ctx, reasonings) in enumerate(zip(contexts, samples)):
            for r in reasonings:
                flat_prompts.append(answer_prompt(task, ctx, r, s.trigger))
                flat_keys.append(record_keys[i])
                flat_fields.append(ctx)
                owner.append(i)
        answers = task.kind.answer(task, client, flat_prompts, step=step, record_keys=flat_keys, fields=flat_fields)
        per_record: list[list[Result]] = [[] for _ in contexts]
        for i, out in zip(owner, answers):
            per_record[i].append(out)
        return [task.kind.aggregate(task, outs, reasonings) for outs, reasonings in zip(per_record, samples)]
