"""Prompts shared by the reasoning strategies: ask for reasoning, then for the answer.

Reasoning is free text generated after a cue; the answer is then produced under the
task's output kind with the reasoning in context (labels scored, JSON validated), so the
final answer keeps a real probability and never needs to be parsed out of prose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ..backends.base import GenerationRequest, Prompt

if TYPE_CHECKING:  # pragma: no cover
    from ..core.client import ModelClient
    from ..core.task import Task

DEFAULT_COT_TRIGGER = "Let's think step by step."
FINAL_QUESTION = "So, what is the final answer?"


def reasoning_prompt(task: "Task", context: dict[str, Any], trigger: str, note: str | None = None) -> Prompt:
    """The prompt that asks for reasoning (before any answer)."""
    if task.format == "text":
        base = task.build_prompt(context, note=note, cue=False)
        assert isinstance(base, str)
        return f"{base}\nReasoning: {trigger}"
    return task.build_prompt(context, note=f"{note}\n{trigger}" if note else trigger)


def answer_prompt(task: "Task", context: dict[str, Any], reasoning: str, trigger: str,
                  note: str | None = None) -> Prompt:
    """The prompt that asks for the constrained answer, with the reasoning in context."""
    reasoning = reasoning.strip()
    if task.format == "text":
        cue = f"\n{task.answer_prefix}" if task.answer_prefix else "\n"
        return f"{reasoning_prompt(task, context, trigger, note)} {reasoning}{cue}"
    messages = list(reasoning_prompt(task, context, trigger, note))
    suffix = task.instruction()
    final = f"{FINAL_QUESTION}\n{suffix}" if suffix else FINAL_QUESTION
    return messages + [{"role": "assistant", "content": reasoning}, {"role": "user", "content": final}]


def generate_reasonings(task: "Task", client: "ModelClient", contexts: Sequence[dict[str, Any]], *, step: str,
                        record_keys: Sequence[str], trigger: str, max_tokens: int, n: int = 1,
                        temperature: float = 0.0, attempt: int = 0,
                        notes: Sequence[str | None] | None = None) -> list[list[str]]:
    """``n`` reasonings per record (one batched generation call)."""
    notes = list(notes) if notes is not None else [None] * len(contexts)
    # (no blank-line stop: small models often open with one, which would end the reasoning empty)
    stop = (f"\n{task.answer_prefix}",) if task.format == "text" and task.answer_prefix else ()
    reqs = [GenerationRequest(reasoning_prompt(task, c, trigger, note), max_tokens=max_tokens,
                              temperature=temperature, n=n, stop=stop)
            for c, note in zip(contexts, notes)]
    comps = client.generate(reqs, step=f"{step}:reasoning", record_keys=record_keys, attempt=attempt)
    return [[t.strip() for t in comp.texts] for comp in comps]
