"""Chain of thought and self-consistency: let the model reason, constrain only the answer.

Reasoning is free text generated after a cue; the answer is then produced under the
task's output spec with the reasoning in context (labels scored, JSON validated), so
the final answer keeps a real probability and never needs to be parsed out of prose.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any, Sequence

from ..backends.base import GenerationRequest, Prompt

if TYPE_CHECKING:  # pragma: no cover
    from ..core.client import ModelClient
    from ..core.task import Task

FINAL_QUESTION = "So, what is the final answer?"


def reasoning_prompt(task: "Task", context: dict[str, Any], note: str | None = None) -> Prompt:
    """The prompt that asks for reasoning (before any answer)."""
    trigger = task.strategy.trigger
    if task.format == "text":
        base = task.build_prompt(context, note=note, cue=False)
        assert isinstance(base, str)
        return f"{base}\nReasoning: {trigger}"
    return task.build_prompt(context, note=f"{note}\n{trigger}" if note else trigger)


def answer_prompt(task: "Task", context: dict[str, Any], reasoning: str, note: str | None = None) -> Prompt:
    """The prompt that asks for the constrained answer, with the reasoning in context."""
    reasoning = reasoning.strip()
    if task.format == "text":
        cue = f"\n{task.answer_prefix}" if task.answer_prefix else "\n"
        return f"{reasoning_prompt(task, context, note)} {reasoning}{cue}"
    messages = list(reasoning_prompt(task, context, note))
    suffix = task._instruction_suffix()
    final = f"{FINAL_QUESTION}\n{suffix}" if suffix else FINAL_QUESTION
    return messages + [{"role": "assistant", "content": reasoning}, {"role": "user", "content": final}]


def generate_reasonings(task: "Task", client: "ModelClient", contexts: Sequence[dict[str, Any]], *, step: str,
                        record_keys: Sequence[str], n: int = 1, temperature: float = 0.0, attempt: int = 0,
                        notes: Sequence[str | None] | None = None) -> list[list[str]]:
    """``n`` reasonings per record (one batched generation call)."""
    cfg = task.strategy
    notes = list(notes) if notes is not None else [None] * len(contexts)
    # (no blank-line stop: small models often open with one, which would end the reasoning empty)
    stop = (f"\n{task.answer_prefix}",) if task.format == "text" and task.answer_prefix else ()
    reqs = [
        GenerationRequest(reasoning_prompt(task, c, note), max_tokens=cfg.max_reasoning_tokens,
                          temperature=temperature, n=n, stop=stop)
        for c, note in zip(contexts, notes)
    ]
    comps = client.generate(reqs, step=f"{step}:reasoning", record_keys=record_keys, attempt=attempt)
    return [[t.strip() for t in comp.texts] for comp in comps]


def chain_of_thought(task: "Task", client: "ModelClient", contexts: Sequence[dict[str, Any]], *, step: str,
                     record_keys: Sequence[str], attempt: int = 0,
                     notes: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
    """Greedy reasoning, then the constrained answer."""
    notes = list(notes) if notes is not None else [None] * len(contexts)
    reasonings = [r[0] for r in generate_reasonings(task, client, contexts, step=step, record_keys=record_keys,
                                                     attempt=attempt, notes=notes)]
    prompts = [answer_prompt(task, c, r, note) for c, r, note in zip(contexts, reasonings, notes)]
    outs = task.answer(client, prompts, step=step, record_keys=record_keys, attempt=attempt)
    for out, reasoning in zip(outs, reasonings):
        out["reasoning"] = reasoning
        out["method"] = f"chain-of-thought+{out.get('method', task.output)}"
    return outs


def _vote_key(task: "Task", out: dict[str, Any]) -> str | None:
    if task.output == "labels":
        return out["label"]
    if task.output == "json":
        return json.dumps(out["output"], sort_keys=True, ensure_ascii=False) if out.get("valid") else None
    return " ".join(out["text"].split()).casefold() or None


def self_consistency(task: "Task", client: "ModelClient", contexts: Sequence[dict[str, Any]], *, step: str,
                     record_keys: Sequence[str]) -> list[dict[str, Any]]:
    """``n`` sampled reasonings per record, each answered under the spec; majority vote."""
    cfg = task.strategy
    samples = generate_reasonings(task, client, contexts, step=step, record_keys=record_keys, n=cfg.n,
                                  temperature=cfg.temperature)
    flat_prompts, flat_keys, owner = [], [], []
    for i, (ctx, reasonings) in enumerate(zip(contexts, samples)):
        for r in reasonings:
            flat_prompts.append(answer_prompt(task, ctx, r))
            flat_keys.append(record_keys[i])
            owner.append(i)
    answers = task.answer(client, flat_prompts, step=step, record_keys=flat_keys)
    per_record: list[list[dict[str, Any]]] = [[] for _ in contexts]
    for i, out in zip(owner, answers):
        per_record[i].append(out)
    return [_aggregate(task, outs, reasonings) for outs, reasonings in zip(per_record, samples)]


def _aggregate(task: "Task", outs: list[dict[str, Any]], reasonings: list[str]) -> dict[str, Any]:
    n = len(outs)
    votes = Counter(k for k in (_vote_key(task, o) for o in outs) if k is not None)
    method = f"self-consistency(n={n})"
    if task.output == "labels":
        assert task.labels
        mean = {lab: sum(o["scores"][lab] for o in outs) / n for lab in task.labels}
        # majority vote; ties go to the higher mean probability
        winner = max(task.labels, key=lambda lab: (votes.get(lab, 0), mean[lab]))
        shares = {lab: votes.get(lab, 0) / n for lab in task.labels}
        return {"label": winner, "confidence": shares[winner], "scores": shares, "method": f"vote-share {method}",
                "agreement": shares[winner], "mean_scores": mean, "votes": dict(votes), "reasonings": reasonings}
    if not votes:
        best = outs[-1]
        return {**best, "agreement": 0.0, "votes": {}, "method": method, "reasonings": reasonings}
    key, count = votes.most_common(1)[0]
    chosen = next(o for o in outs if _vote_key(task, o) == key)
    result = {**chosen, "agreement": count / n, "votes": dict(votes), "method": method, "reasonings": reasonings}
    if task.output == "json":
        result["tokens"] = sum(o.get("tokens", 0) for o in outs)
    return result
