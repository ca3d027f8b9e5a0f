"""Verify and revise: answer, check, and backtrack with the checker's feedback.

Each attempt answers (directly or with chain of thought); a verifier judges the
answer; rejected records are retried with the feedback in their prompt, and for label
tasks the rejected labels are taken out of the answer space (backtracking), up to
``max_attempts``.  Every attempt's model calls carry their attempt number in the
trace, and every verdict is traced as a ``verify`` event.  Verifier failures become a
plain "could not check" feedback: exception texts and stack traces never reach a prompt.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..backends.base import ScoreRequest
from ..core.labels import distribution_from_logprobs
from ..core.prompt import Template
from ..errors import ConfigError, TemplateError
from .config import VerifierConfig

if TYPE_CHECKING:  # pragma: no cover
    from ..core.client import ModelClient
    from ..core.task import Task

COULD_NOT_CHECK = "the checker could not verify this answer"


@dataclass
class Verdict:
    ok: bool
    feedback: str = ""
    score: float | None = None  # e.g. the judge's P(correct)
    error: str | None = None  # what went wrong inside the verifier (traced, never prompted)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "feedback": self.feedback}
        if self.score is not None:
            out["score"] = round(self.score, 4)
        if self.error:
            out["error"] = self.error
        return out


def answer_text(task: "Task", output: dict[str, Any]) -> str:
    """A short rendering of an answer, for feedback and judges."""
    import json

    if task.output == "labels":
        return str(output.get("label"))
    if task.output == "json":
        value = output.get("output")
        return json.dumps(value, ensure_ascii=False) if value is not None else "(invalid JSON)"
    return str(output.get("text", ""))


def _import(path: str) -> Callable[..., Any]:
    module_name, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import verifier {path!r}: {exc}", field="strategy.verifier.call",
                          hint="the module must be importable (on PYTHONPATH or installed) and define the function") from None


def _from_return(value: Any) -> Verdict:
    if isinstance(value, Verdict):
        return value
    if value is None or value is True:
        return Verdict(True)
    if value is False:
        return Verdict(False, "the answer did not pass the check")
    if isinstance(value, str):
        return Verdict(not value.strip(), value.strip())
    if isinstance(value, tuple) and len(value) == 2:
        return Verdict(bool(value[0]), str(value[1] or ""))
    if isinstance(value, dict) and "ok" in value:
        return Verdict(bool(value["ok"]), str(value.get("feedback", "")))
    raise TypeError(f"a verifier returned {type(value).__name__}; expected bool, str, (ok, feedback) or dict")


def check_with_function(func: Callable[..., Any], outputs: Sequence[dict[str, Any]],
                        contexts: Sequence[dict[str, Any]]) -> list[Verdict]:
    verdicts = []
    for out, ctx in zip(outputs, contexts):
        try:
            verdicts.append(_from_return(func(out, ctx)))
        except Exception as exc:  # noqa: BLE001 - a verifier bug must not kill the run
            verdicts.append(Verdict(False, COULD_NOT_CHECK, error=f"{type(exc).__name__}: {str(exc)[:200]}"))
    return verdicts


def check_schema(task: "Task", outputs: Sequence[dict[str, Any]]) -> list[Verdict]:
    verdicts = []
    for out in outputs:
        if task.output != "json" or out.get("valid"):
            verdicts.append(Verdict(True))
        else:
            errors = out.get("errors") or ["the answer is not valid JSON for the schema"]
            verdicts.append(Verdict(False, "; ".join(str(e)[:200] for e in errors[:3])))
    return verdicts


def check_with_judge(task: "Task", cfg: VerifierConfig, client: "ModelClient", outputs: Sequence[dict[str, Any]],
                     contexts: Sequence[dict[str, Any]], *, step: str, record_keys: Sequence[str],
                     attempt: int) -> list[Verdict]:
    """An LLM judge: P(yes) of the judge prompt, scored (or voted when the backend cannot score)."""
    template = Template(cfg.prompt, where=f"task {task.name!r} verifier prompt")
    prompts: list[Any] = []
    for out, ctx in zip(outputs, contexts):
        variables = {**ctx, "input": task.render_input(ctx), "answer": answer_text(task, out)}
        text = template.render(variables)
        prompts.append(f"{text}\nAnswer (yes or no):" if task.format == "text" else
                       [{"role": "user", "content": f"{text}\nAnswer with yes or no."}])
    conts = (" yes", " no") if task.format == "text" else ("yes", "no")
    if not client.backend.can_score:
        raise ConfigError("an llm verifier needs a backend that can score yes/no",
                          field="strategy.verifier", hint="use a python verifier, or a local/logprobs backend")
    results = client.score([ScoreRequest(p, conts) for p in prompts], step=f"{step}:verify",
                           record_keys=record_keys, attempt=attempt)
    verdicts = []
    for out, res in zip(outputs, results):
        p_yes = distribution_from_logprobs(res.logprobs, res.lengths)[0][0]
        ok = p_yes >= cfg.threshold
        feedback = "" if ok else f"a reviewer judged the answer {answer_text(task, out)!r} to be wrong"
        verdicts.append(Verdict(ok, feedback, score=p_yes))
    return verdicts


def run_verifier(task: "Task", client: "ModelClient", outputs: Sequence[dict[str, Any]],
                 contexts: Sequence[dict[str, Any]], *, step: str, record_keys: Sequence[str],
                 attempt: int) -> list[Verdict]:
    cfg = task.strategy.verifier
    assert cfg is not None
    if cfg.type == "schema":
        return check_schema(task, outputs)
    if cfg.type == "llm":
        return check_with_judge(task, cfg, client, outputs, contexts, step=step, record_keys=record_keys,
                                attempt=attempt)
    # a pipeline resolves ``call`` under its load policy when it is built (core.policy)
    func = cfg.function if cfg.function is not None else _import(cfg.call or "")
    assert func is not None
    return check_with_function(func, outputs, contexts)


def feedback_note(task: "Task", rejected: list[tuple[str, str]]) -> str:
    """What the next attempt is told about the rejected answers."""
    lines = [f"- {answer!r}: {feedback}" if feedback else f"- {answer!r}" for answer, feedback in rejected]
    return "Earlier answers were checked and rejected:\n" + "\n".join(lines) + "\nGive a different, corrected answer."


def _exclude(task: "Task", out: dict[str, Any], rejected_labels: set[str]) -> dict[str, Any]:
    """Backtrack in the label space: renormalise the distribution without rejected labels."""
    assert task.labels
    allowed = [lab for lab in task.labels if lab not in rejected_labels]
    if not allowed or task.output != "labels" or "scores" not in out:
        return out
    total = sum(out["scores"][lab] for lab in allowed)
    if total <= 0:
        scores = {lab: (1.0 / len(allowed) if lab in allowed else 0.0) for lab in task.labels}
    else:
        scores = {lab: (out["scores"][lab] / total if lab in allowed else 0.0) for lab in task.labels}
    best = max(allowed, key=lambda lab: scores[lab])
    return {**out, "label": best, "confidence": scores[best], "scores": scores}


def verify_revise(task: "Task", client: "ModelClient", contexts: Sequence[dict[str, Any]], *, step: str,
                  record_keys: Sequence[str]) -> list[dict[str, Any]]:
    cfg = task.strategy
    n = len(contexts)
    final: list[dict[str, Any] | None] = [None] * n
    last: list[dict[str, Any]] = [{} for _ in range(n)]
    rejected: list[list[tuple[str, str]]] = [[] for _ in range(n)]
    rejected_labels: list[set[str]] = [set() for _ in range(n)]
    history: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    since = len(client.calls)
    pending = list(range(n))
    for attempt in range(cfg.max_attempts):
        if not pending:
            break
        ctxs = [contexts[i] for i in pending]
        keys = [record_keys[i] for i in pending]
        notes = [feedback_note(task, rejected[i]) if rejected[i] else None for i in pending]
        if cfg.inner == "chain_of_thought":
            from .chain import chain_of_thought

            outs = chain_of_thought(task, client, ctxs, step=step, record_keys=keys, attempt=attempt, notes=notes)
        else:
            prompts = [task.build_prompt(c, note=note) for c, note in zip(ctxs, notes)]
            outs = task.answer(client, prompts, step=step, record_keys=keys, attempt=attempt)
        if task.output == "labels":
            outs = [_exclude(task, o, rejected_labels[i]) for o, i in zip(outs, pending)]
        try:
            verdicts = run_verifier(task, client, outs, ctxs, step=step, record_keys=keys, attempt=attempt)
        except TemplateError as exc:  # a judge prompt naming a missing field: same for every record
            verdicts = [Verdict(False, COULD_NOT_CHECK, error=str(exc)[:200]) for _ in outs]
        still = []
        for i, out, verdict, key in zip(pending, outs, verdicts, keys):
            answer = answer_text(task, out)
            client.note("verify", source=f"verifier:{cfg.verifier.type if cfg.verifier else '?'}", prompt=answer,
                        response=verdict.to_dict(), step=f"{step}:verify", record_key=key, attempt=attempt,
                        error=verdict.error)
            history[i].append({"attempt": attempt, "answer": answer, **verdict.to_dict()})
            last[i] = out
            if verdict.ok:
                final[i] = out
                continue
            rejected[i].append((answer, verdict.feedback))
            if task.output == "labels":
                rejected_labels[i].add(str(out.get("label")))
                if task.labels and len(rejected_labels[i]) >= len(task.labels):
                    continue  # every label was rejected: nothing left to try
            still.append(i)
        pending = still
    tokens = client.tokens_by_record(since) if client.trace else {}
    results = []
    for i in range(n):
        out = dict(final[i] if final[i] is not None else last[i])
        out["verified"] = final[i] is not None
        out["attempts"] = len(history[i])
        failed = [h for h in history[i] if not h["ok"]]
        if failed:
            out["failed_attempts"] = failed
        if record_keys[i] in tokens:
            out["tokens"] = tokens[record_keys[i]]
        out["method"] = f"verify-revise({cfg.verifier.type if cfg.verifier else '?'})+{out.get('method', task.output)}"
        results.append(out)
    return results
