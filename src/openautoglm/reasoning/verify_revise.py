"""``verify_revise``: answer, check, and backtrack with the checker's feedback.

Each attempt answers (directly or with chain of thought); a verifier judges the
answer; rejected records are retried with the feedback in their prompt, and the output
kind takes the rejected answers out of the answer space (for labels: the rejected
labels; backtracking), up to ``max_attempts``.  Every attempt's model calls carry their
attempt number in the trace, and every verdict is traced as a ``verify`` event.
Verifier failures become a plain "could not check" feedback: exception texts and stack
traces never reach a prompt.

Verifiers (``verifier:``):

* ``schema`` – the answer must be valid under the task's schema (JSON outputs);
* ``python`` – ``call: "package.module:function"``, called as ``fn(output, record)``;
  returns True/None (accept), False or a feedback string (reject), or ``(ok, feedback)``;
* ``llm`` – a judge prompt (``{input}``, ``{answer}`` and the record's fields), whose
  yes/no answer is scored; accepted when P(yes) >= ``threshold``;
* ``callable`` – a Python function given directly (Python API only).
"""

from __future__ import annotations

import hashlib

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..backends.base import ScoreRequest
from ..core.labels import distribution_from_logprobs
from ..core.prompt import Template
from ..core.result import Result
from ..core.strategy import STRATEGIES, Strategy
from ..errors import ConfigError, TemplateError
from .prompts import DEFAULT_COT_TRIGGER

if TYPE_CHECKING:  # pragma: no cover
    from ..core.client import ModelClient
    from ..core.task import Task

COULD_NOT_CHECK = "the checker could not verify this answer"
DEFAULT_JUDGE_PROMPT = "{input}\nProposed answer: {answer}\nIs the proposed answer correct?"


class VerifierConfig(BaseModel):
    """What checks an answer in ``verify_revise``.

    * ``schema`` – the task's output schema (JSON outputs);
    * ``python`` – ``call: "package.module:function"``, called as ``fn(output, record)``;
      returns True/None (accept), False or a feedback string (reject), or ``(ok, feedback)``;
    * ``llm`` – a judge prompt (``{input}``, ``{answer}`` and the record's fields), whose
      yes/no answer is scored; accepted when P(yes) ≥ ``threshold``;
    * ``callable`` – a Python function given directly (Python API only).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    type: Literal["schema", "python", "llm", "callable"]
    call: str | None = None
    prompt: str = DEFAULT_JUDGE_PROMPT
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    function: Callable[..., Any] | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _complete(self) -> "VerifierConfig":
        if self.type == "python" and (not self.call or ":" not in self.call):
            raise ValueError("a python verifier needs `call: 'package.module:function'`")
        if self.type == "callable" and self.function is None:
            raise ValueError("a callable verifier needs `function`")
        return self

    @classmethod
    def coerce(cls, value: Any) -> "VerifierConfig":
        if isinstance(value, VerifierConfig):
            return value
        if callable(value):
            return cls(type="callable", function=value)
        if isinstance(value, str):
            if value in ("schema", "llm"):
                return cls(type=value)  # type: ignore[arg-type]
            if ":" in value:
                return cls(type="python", call=value)
            raise ValueError(f"unknown verifier {value!r}: use 'schema', 'llm', 'package.module:function' or a block")
        return cls.model_validate(value)


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
    return task.kind.shown(task, Result.wrap(output))


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
        if out.get("valid") is not False:
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


def run_verifier(task: "Task", cfg: "VerifierConfig", client: "ModelClient", outputs: Sequence[dict[str, Any]],
                 contexts: Sequence[dict[str, Any]], *, step: str, record_keys: Sequence[str],
                 attempt: int) -> list[Verdict]:
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


@STRATEGIES.register("verify_revise")
class VerifyRevise(Strategy):
    name = "verify_revise"

    class Settings(Strategy.Settings):
        #: the checker, the attempt limit and how each attempt answers
        verifier: VerifierConfig
        max_attempts: int = Field(default=3, ge=1, le=10)
        inner: Literal["direct", "chain_of_thought"] = "direct"
        #: the inner chain of thought's cue and length
        trigger: str = DEFAULT_COT_TRIGGER
        max_reasoning_tokens: int = Field(default=96, ge=1, le=131_072)

        @model_validator(mode="before")
        @classmethod
        def _needs_verifier(cls, data: Any) -> Any:
            if isinstance(data, dict) and data.get("verifier") is None:
                raise ValueError("strategy verify_revise needs a `verifier` (schema, llm, python or a callable)")
            return data

        @field_validator("verifier", mode="before")
        @classmethod
        def _coerce_verifier(cls, value: Any) -> VerifierConfig:
            return VerifierConfig.coerce(value)

        def to_config(self, *, identify: bool = False) -> dict[str, Any]:
            """The YAML form; ``identify`` names a lambda or nested verifier (for fingerprints) instead of refusing."""
            data = self.model_dump(mode="json", exclude_defaults=True, exclude={"verifier"})
            v = self.verifier
            data["verifier"] = {"type": v.type, **v.model_dump(mode="json", exclude_defaults=True,
                                                                 exclude={"function", "type"})}
            fn = v.function
            if v.type == "callable" and fn is not None:
                name = getattr(fn, "__qualname__", "<")
                if "<" in name and identify:
                    code = getattr(fn, "__code__", None)
                    digest = hashlib.sha256(code.co_code if code is not None else repr(fn).encode()).hexdigest()[:12]
                    data["verifier"] = {"type": "callable", "call": f"{fn.__module__}:{name}", "code": digest}
                    return data
                if "<" in name:
                    raise ValueError("a lambda or nested verifier cannot be saved to YAML; "
                                     "use a module-level function (it is saved as `call: module:function`)")
                data["verifier"] = {"type": "python", "call": f"{fn.__module__}:{name}"}
            return data

    @classmethod
    def callable_refs(cls, settings: BaseModel) -> dict[str, str]:
        v = settings.verifier  # type: ignore[attr-defined]
        return {"verifier.call": v.call} if v.type == "python" and v.function is None and v.call else {}

    @classmethod
    def with_callables(cls, settings: BaseModel, resolved: dict[str, Callable[..., Any]]) -> BaseModel:
        if "verifier.call" not in resolved:
            return settings
        verifier = settings.verifier.model_copy(update={"function": resolved["verifier.call"]})  # type: ignore[attr-defined]
        return settings.model_copy(update={"verifier": verifier})

    def run(self, task: "Task", client: "ModelClient", contexts: Sequence[dict[str, Any]], *, step: str,
            record_keys: Sequence[str]) -> list[Result]:
        cfg = self.settings
        kind = task.kind
        n = len(contexts)
        final: list[Result | None] = [None] * n
        last: list[Result] = [Result() for _ in range(n)]
        rejected: list[list[tuple[str, str]]] = [[] for _ in range(n)]
        rejected_values: list[set[str]] = [set() for _ in range(n)]
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
                from .chain_of_thought import ChainOfThought

                inner = ChainOfThought(ChainOfThought.Settings(trigger=cfg.trigger,
                                                               max_reasoning_tokens=cfg.max_reasoning_tokens))
                outs = inner.run(task, client, ctxs, step=step, record_keys=keys, attempt=attempt, notes=notes)
            else:
                prompts = [task.build_prompt(c, note=note) for c, note in zip(ctxs, notes)]
                outs = kind.answer(task, client, prompts, step=step, record_keys=keys, attempt=attempt, fields=ctxs)
            outs = [kind.exclude(task, o, rejected_values[i]) for o, i in zip(outs, pending)]
            try:
                verdicts = run_verifier(task, cfg.verifier, client, outs, ctxs, step=step, record_keys=keys,
                                        attempt=attempt)
            except TemplateError as exc:  # a judge prompt naming a missing field: same for every record
                verdicts = [Verdict(False, COULD_NOT_CHECK, error=str(exc)[:200]) for _ in outs]
            still = []
            for i, out, verdict, key in zip(pending, outs, verdicts, keys):
                answer = answer_text(task, out)
                client.note("verify", source=f"verifier:{cfg.verifier.type}", prompt=answer,
                            response=verdict.to_dict(), step=f"{step}:verify", record_key=key, attempt=attempt,
                            error=verdict.error)
                history[i].append({"attempt": attempt, "answer": answer, **verdict.to_dict()})
                last[i] = out
                if verdict.ok:
                    final[i] = out
                    continue
                rejected[i].append((answer, verdict.feedback))
                value = kind.rejected_value(task, out)
                if value is not None:
                    rejected_values[i].add(value)
                    if kind.exhausted(task, rejected_values[i]):
                        continue  # every answer was rejected: nothing left to try
                still.append(i)
            pending = still
        tokens = client.tokens_by_record(since) if client.trace else {}
        results = []
        for i in range(n):
            out = Result(final[i] if final[i] is not None else last[i])
            out["verified"] = final[i] is not None
            out["attempts"] = len(history[i])
            failed = [h for h in history[i] if not h["ok"]]
            if failed:
                out["failed_attempts"] = failed
            if record_keys[i] in tokens:
                out["tokens"] = tokens[record_keys[i]]
            out["method"] = f"verify-revise({cfg.verifier.type})+{out.get('method', task.output)}"
            results.append(out)
        return results
