"""Reasoning strategies: how a task gets from a record to an answer.

* ``direct`` – one prompt, the answer constrained to the output spec;
* ``chain_of_thought`` – free-text reasoning first, then the constrained answer;
* ``self_consistency`` – n sampled reasonings, majority vote, confidence = vote share;
* ``verify_revise`` – answer, check with a verifier, retry with its feedback (and,
  for labels, without the rejected answers) up to a limit.

Selected per task: ``Task(..., strategy="chain_of_thought")`` or ``strategy:`` in YAML.
This module stays import-light: :mod:`openautoglm.core.task` imports its config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from ..core.client import ModelClient
    from ..core.task import Task


def run_strategy(task: "Task", client: "ModelClient", contexts: Sequence[dict[str, Any]], *, step: str,
                 record_keys: Sequence[str]) -> list[dict[str, Any]]:
    """Run ``task`` on ``contexts`` with its configured (non-direct) strategy."""
    name = task.strategy.name
    if name == "chain_of_thought":
        from .chain import chain_of_thought

        return chain_of_thought(task, client, contexts, step=step, record_keys=record_keys)
    if name == "self_consistency":
        from .chain import self_consistency

        return self_consistency(task, client, contexts, step=step, record_keys=record_keys)
    if name == "verify_revise":
        from .verify import verify_revise

        return verify_revise(task, client, contexts, step=step, record_keys=record_keys)
    prompts = [task.build_prompt(c) for c in contexts]
    return task.answer(client, prompts, step=step, record_keys=record_keys)
