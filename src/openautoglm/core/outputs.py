"""Output kinds: what a task's answer is, and everything that depends on it.

A task names its kind (``output: labels``, ``json``, ``text``; inferred from ``labels``
/ ``schema`` when not given).  The kind owns its prompt suffix, how an answer is
obtained and scored (label log-probabilities, validated JSON with re-ask, free text),
what counts as the same answer when samples vote, how an answer is shown to a checker,
and how a rejected answer is taken out of the answer space.  Strategies call these
methods; nothing else switches on the kind's name.

Adding a kind is one class registered under a name::

    @OUTPUTS.register("yesno")
    class YesNo(Text):
        name = "yesno"
        def instruction(self, task): return "Answer yes or no."

(or declared in the entry-point group ``openautoglm.outputs`` by another package).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..backends.base import Completion, Constraint, GenerationRequest, Prompt, ScoreRequest, ScoreResult
from ..backends.openai_wire import estimate_first_token_logprob
from ..errors import BackendError
from .labels import calibrate, distribution_from_logprobs, distribution_from_votes, softmax
from .plugins import Registry
from .result import Result
from .retrieval import mix
from .schema import extract_json

if TYPE_CHECKING:  # pragma: no cover
    from .client import ModelClient
    from .retrieval import Neighbours
    from .task import Task

#: inputs whose label distribution contextual calibration divides by
CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")
#: per language, neutral sentences used instead: with the embedded model on the natural English
#: sentiment task they correct the label prior where the symbolic inputs above did not (SST-2 dev
#: rows [200, 300): 0.81 vs 0.77, chosen there; rows [472, 572): 0.80 vs 0.76; BENCHMARKS.md, issue 19).
#: A language without a list (Chinese: not measured) keeps CONTENT_FREE_INPUTS.
NEUTRAL_INPUTS: dict[str, tuple[str, ...]] = {
    "en": ("This is a text.", "Here is something.", "It is what it is.", "The item is described here.",
           "Nothing to say.", "A sentence."),
}


def content_free_inputs(task: "Task") -> tuple[str, ...]:
    """The inputs whose mean label distribution contextual calibration divides by, for ``task``."""
    from .presets import language_of

    return NEUTRAL_INPUTS.get(task.language or language_of(task.prompt_template), CONTENT_FREE_INPUTS)
#: tokens a guided or voted label answer may take
LABEL_ANSWER_TOKENS = 16
#: why a record's first-token estimate was replaced (``Result["fallback"]``)
UNLISTED = "no label among the first token's listed alternatives"
#: what to do when no label can be measured
MEASURE_HINT = ("use score_mode='echo' for exact scores (vLLM, Open-AutoGLM's server), a server with guided "
                "choice (vLLM, Open-AutoGLM's server on a backend that enforces choice), score_mode='none' to "
                "vote over unconstrained samples, or verbalizers the model begins its answer with")


class OutputKind:
    """Base class: free text.  Subclasses override what their answers need."""

    name = "text"
    #: whether answers are probability distributions over the task's labels
    distribution = False

    def check(self, task: "Task") -> None:
        """Raise ``ValueError`` if ``task`` lacks what this kind needs."""

    def instruction(self, task: "Task") -> str:
        """Text appended to the user's instructions (``""``: none); a function of the task's
        fields (the task computes it once)."""
        return ""

    def answer(self, task: "Task", client: "ModelClient", prompts: Sequence[Prompt], *, step: str,
               record_keys: Sequence[str], attempt: int = 0, neighbours: Sequence["Neighbours"] | None = None,
               head_probs: Sequence[Sequence[float]] | None = None,
               fields: Sequence[Mapping[str, Any]] | None = None) -> list[Result]:
        """Answer ready-made prompts (one model call per prompt, batched); ``fields``: each prompt's
        record, for backends that read records rather than prompts."""
        reqs = [GenerationRequest(p, max_tokens=task.max_tokens, temperature=task.temperature, stop=tuple(task.stop),
                                  seed=task.seed, fields=_at(fields, i)) for i, p in enumerate(prompts)]
        comps = client.generate(reqs, step=step, record_keys=record_keys, attempt=attempt)
        return [Result.of_text(c.text.strip(), c.prompt_tokens + c.completion_tokens) for c in comps]

    def vote_key(self, task: "Task", result: Result) -> str | None:
        """What makes two sampled answers the same answer (``None``: no usable answer)."""
        return " ".join((result.text or "").split()).casefold() or None

    def shown(self, task: "Task", result: Result) -> str:
        """The answer as a checker or a feedback note sees it."""
        return str(result.text or "")

    def aggregate(self, task: "Task", outs: list[Result], reasonings: list[str]) -> Result:
        """Majority vote over sampled answers (self-consistency)."""
        n = len(outs)
        votes = Counter(k for k in (self.vote_key(task, o) for o in outs) if k is not None)
        method = f"self-consistency(n={n})"
        if not votes:
            return Result({**outs[-1], "agreement": 0.0, "votes": {}, "method": method, "reasonings": reasonings})
        key, count = votes.most_common(1)[0]
        chosen = next(o for o in outs if self.vote_key(task, o) == key)
        return Result({**chosen, "agreement": count / n, "votes": dict(votes), "method": method,
                       "reasonings": reasonings})

    def rejected_value(self, task: "Task", result: Result) -> str | None:
        """What a rejected answer takes out of the answer space (labels: the label)."""
        return None

    def exclude(self, task: "Task", result: Result, rejected: set[str]) -> Result:
        """``result`` with the rejected values taken out (backtracking); unchanged by default."""
        return result

    def exhausted(self, task: "Task", rejected: set[str]) -> bool:
        """Whether nothing is left to try once ``rejected`` is out."""
        return False


class Text(OutputKind):
    name = "text"


class Labels(OutputKind):
    """A probability distribution over the task's labels."""

    name = "labels"
    distribution = True

    def check(self, task: "Task") -> None:
        if not task.labels:
            raise ValueError("output 'labels' needs a non-empty `labels` list")

    def instruction(self, task: "Task") -> str:
        show = task.list_labels if task.list_labels is not None else task.format == "chat"
        return ("Answer with one of: " + ", ".join(task.verbalized()) + ".") if show else ""

    def answer(self, task: "Task", client: "ModelClient", prompts: Sequence[Prompt], *, step: str,
               record_keys: Sequence[str], attempt: int = 0, neighbours: Sequence["Neighbours"] | None = None,
               head_probs: Sequence[Sequence[float]] | None = None,
               fields: Sequence[Mapping[str, Any]] | None = None) -> list[Result]:
        if client.backend.can_score:
            return self._by_scoring(task, client, list(prompts), step, record_keys, attempt, neighbours, head_probs,
                                    fields)
        return self._by_votes(task, client, list(prompts), step, record_keys, attempt, fields)

    def _by_scoring(self, task: "Task", client: "ModelClient", prompts: list[Prompt], step: str,
                    record_keys: Sequence[str], attempt: int, neighbours: Sequence["Neighbours"] | None,
                    head_probs: Sequence[Sequence[float]] | None,
                    fields: Sequence[Mapping[str, Any]] | None) -> list[Result]:
        labels = task.labels
        assert labels
        conts = task.continuations()
        every = list(range(len(labels)))
        prune = task.retrieval.candidates if task.retrieval and neighbours else None
        subsets = [every] * len(prompts)
        if prune and prune < len(labels):
            assert neighbours is not None
            subsets = [sorted(sorted(every, key=lambda j: -n.knn[labels[j]])[:prune]) for n in neighbours]
        reqs = [ScoreRequest(p, conts if sub is every else tuple(conts[j] for j in sub), fields=_at(fields, i))
                for i, (p, sub) in enumerate(zip(prompts, subsets))]
        results = client.score(reqs, step=step, record_keys=record_keys, attempt=attempt)
        unlisted = [i for i, (res, sub) in enumerate(zip(results, subsets)) if unmeasured(res, len(sub))]
        measured = self._measure_unlisted(task, client, prompts, subsets, unlisted, step, record_keys, attempt,
                                          fields) if unlisted else {}
        cf = self._content_free(task, client, step) if task.calibrate else None
        bias = [task.label_bias.get(lab, 0.0) for lab in labels] if task.label_bias else []
        weight = task.retrieval.knn_weight if task.retrieval and neighbours else 0.0
        out = []
        for i, (res, sub) in enumerate(zip(results, subsets)):
            extra: dict[str, Any] = {}
            if i in measured:
                probs, method, extra = measured[i]
            else:
                probs, normalised = distribution_from_logprobs(res.logprobs, res.lengths)
                method = getattr(client.backend, "score_method", "logprob") + ("-length-normalised" if normalised
                                                                               else "")
                if not res.exact:
                    method += "-first-token-estimate"
                if cf is not None:
                    probs = calibrate(probs, [cf[j] for j in sub])
                    method += "+contextual-calibration"
                elif task.calibrate:
                    method += "+calibration-skipped(content-free-unmeasured)"
                if task.label_bias:
                    probs = apply_bias(probs, [bias[j] for j in sub])
                    method += "+label-bias"
            if sub is every:
                full = list(probs)
            else:
                full = [0.0] * len(labels)
                for j, p in zip(sub, probs):
                    full[j] = p
            if len(sub) < len(labels):
                method += f"+knn-candidates({len(sub)})"
            if weight > 0 and neighbours is not None:
                full = mix(full, [neighbours[i].knn[lab] for lab in labels], weight)
                method += f"+knn(w={weight:g})"
            if head_probs is not None and task.head is not None:
                full = mix(full, head_probs[i], task.head.weight)
                method += f"+head(w={task.head.weight:g})"
            result = Result.of_labels(labels, full, method)
            result.update(extra)
            out.append(result)
        return out

    def _measure_unlisted(self, task: "Task", client: "ModelClient", prompts: list[Prompt],
                          subsets: list[list[int]], todo: list[int], step: str, record_keys: Sequence[str],
                          attempt: int, fields: Sequence[Mapping[str, Any]] | None
                          ) -> dict[int, tuple[list[float], str, dict[str, Any]]]:
        """Distributions for the records whose first-token estimate measured nothing: from a
        choice-constrained answer's first-token logprobs where the backend returns them, else
        from a vote over ``n_votes`` choice-constrained samples; an error naming the fix when
        the backend cannot constrain an answer to the labels."""
        verbal = task.verbalized()
        options = {i: [verbal[j] for j in subsets[i]] for i in todo}
        if "choice" not in client.backend.constraints:
            shown = ", ".join(repr(o) for o in options[todo[0]])
            raise BackendError(f"{client.backend.name}: no label ({shown}) is among the first token's listed "
                               "alternatives, so their scores would be a constant, and the backend cannot "
                               "constrain an answer to the labels", hint=MEASURE_HINT)
        keys = [record_keys[i] for i in todo]
        guided = client.generate([GenerationRequest(prompts[i], max_tokens=LABEL_ANSWER_TOKENS, logprobs=True,
                                                    constraint=Constraint.choice(options[i]), fields=_at(fields, i))
                                  for i in todo], step=f"{step}:guided-choice", record_keys=keys, attempt=attempt)
        out: dict[int, tuple[list[float], str, dict[str, Any]]] = {}
        for i, comp in zip(todo, guided):
            logprobs = first_token_choice_logprobs(comp, options[i])
            if logprobs is not None:
                out[i] = (softmax(logprobs), "guided-choice-first-token-estimate", {"fallback": UNLISTED})
        rest = [i for i in todo if i not in out]
        if rest:
            votes = self._votes(task, client, [prompts[i] for i in rest], [options[i] for i in rest], step,
                                [record_keys[i] for i in rest], attempt, [_at(fields, i) for i in rest], True)
            for i, (probs, method, extra) in zip(rest, votes):
                out[i] = (probs, method, {**extra, "fallback": UNLISTED})
        return out

    def _content_free(self, task: "Task", client: "ModelClient", step: str) -> list[float] | None:
        conts = task.continuations()
        reqs = [ScoreRequest(task.build_prompt({v: cf for v in task.input_variables},
                                               examples=[] if task.retrieval else None), conts)
                for cf in content_free_inputs(task)]
        results = client.score(reqs, step=f"{step}:calibration")
        if any(unmeasured(r, len(conts)) for r in results):
            return None  # dividing by a constant would change nothing but the method's name
        dists = [distribution_from_logprobs(r.logprobs, r.lengths)[0] for r in results]
        return [sum(d[i] for d in dists) / len(dists) for i in range(len(conts))]

    def _by_votes(self, task: "Task", client: "ModelClient", prompts: list[Prompt], step: str,
                  record_keys: Sequence[str], attempt: int,
                  fields: Sequence[Mapping[str, Any]] | None) -> list[Result]:
        assert task.labels
        verbal = task.verbalized()
        votes = self._votes(task, client, prompts, [verbal] * len(prompts), step, record_keys, attempt,
                            [_at(fields, i) for i in range(len(prompts))],
                            "choice" in client.backend.constraints)
        out = []
        for probs, method, extra in votes:
            result = Result.of_labels(task.labels, probs, method)
            result.update(extra)
            out.append(result)
        return out

    def _votes(self, task: "Task", client: "ModelClient", prompts: list[Prompt], options: list[list[str]],
               step: str, record_keys: Sequence[str], attempt: int, fields: Sequence[Mapping[str, Any] | None],
               constrain: bool) -> list[tuple[list[float], str, dict[str, Any]]]:
        """Vote share over ``n_votes`` samples, constrained to ``options`` when ``constrain``
        (method ``+guided-choice``; ``+unconstrained`` when not, or when the backend fell back);
        an error for a record none of whose samples names a label."""
        reqs = [GenerationRequest(p, max_tokens=LABEL_ANSWER_TOKENS, temperature=max(task.temperature, 0.7),
                                  n=task.n_votes, fields=f, constraint=Constraint.choice(opts) if constrain else None)
                for p, opts, f in zip(prompts, options, fields)]
        comps = client.generate(reqs, step=step, record_keys=record_keys, attempt=attempt)
        out = []
        for comp, opts in zip(comps, options):
            probs, unparsed = distribution_from_votes(comp.texts, opts)
            if unparsed == len(comp.texts):
                raise BackendError(f"{client.backend.name}: none of the {len(comp.texts)} sampled answers names a "
                                   f"label ({', '.join(opts)}), so no distribution was measured", hint=MEASURE_HINT)
            guided = constrain and not constraint_fell_back(comp)
            method = f"vote-share(n={task.n_votes})" + ("+guided-choice" if guided else "+unconstrained")
            out.append((probs, method, {"unparsed_votes": unparsed}))
        return out

    def vote_key(self, task: "Task", result: Result) -> str | None:
        return result.label

    def shown(self, task: "Task", result: Result) -> str:
        return str(result.label)

    def aggregate(self, task: "Task", outs: list[Result], reasonings: list[str]) -> Result:
        assert task.labels
        n = len(outs)
        votes = Counter(o.label for o in outs if o.label is not None)
        mean = {lab: sum((o.scores or {})[lab] for o in outs) / n for lab in task.labels}
        # majority vote; ties go to the higher mean probability
        winner = max(task.labels, key=lambda lab: (votes.get(lab, 0), mean[lab]))
        shares = {lab: votes.get(lab, 0) / n for lab in task.labels}
        return Result(label=winner, confidence=shares[winner], scores=shares,
                      method=f"vote-share self-consistency(n={n})", agreement=shares[winner], mean_scores=mean,
                      votes=dict(votes), reasonings=reasonings)

    def rejected_value(self, task: "Task", result: Result) -> str | None:
        return str(result.label)

    def exclude(self, task: "Task", result: Result, rejected: set[str]) -> Result:
        """Renormalise the distribution without the rejected labels."""
        assert task.labels
        allowed = [lab for lab in task.labels if lab not in rejected]
        if not allowed or result.scores is None:
            return result
        total = sum(result.scores[lab] for lab in allowed)
        if total <= 0:
            scores = {lab: (1.0 / len(allowed) if lab in allowed else 0.0) for lab in task.labels}
        else:
            scores = {lab: (result.scores[lab] / total if lab in allowed else 0.0) for lab in task.labels}
        best = max(allowed, key=lambda lab: scores[lab])
        return Result({**result, "label": best, "confidence": scores[best], "scores": scores})

    def exhausted(self, task: "Task", rejected: set[str]) -> bool:
        return bool(task.labels) and len(rejected) >= len(task.labels or [])


class Json(OutputKind):
    """A JSON value valid under the task's schema; invalid answers are re-asked."""

    name = "json"

    def check(self, task: "Task") -> None:
        if task.schema_ is None:
            raise ValueError("output 'json' needs a `schema` (pydantic model or JSON schema)")

    def instruction(self, task: "Task") -> str:
        assert task.output_schema is not None
        return "Respond with only a JSON object that matches this JSON schema:\n" + task.output_schema.describe()

    def answer(self, task: "Task", client: "ModelClient", prompts: Sequence[Prompt], *, step: str,
               record_keys: Sequence[str], attempt: int = 0, neighbours: Sequence["Neighbours"] | None = None,
               head_probs: Sequence[Sequence[float]] | None = None,
               fields: Sequence[Mapping[str, Any]] | None = None) -> list[Result]:
        schema = task.output_schema
        assert schema is not None
        backend = client.backend
        enforced = "json_schema" in backend.constraints or backend.supports_json_schema
        constraint = Constraint.json(schema.json_schema) if enforced else None
        results: list[Result | None] = [None] * len(prompts)
        conversations: list[Prompt] = list(prompts)
        history: list[list[dict[str, Any]]] = [[] for _ in prompts]
        pending = list(range(len(prompts)))
        for retry in range(task.max_retries + 1):
            if not pending:
                break
            reqs = [GenerationRequest(conversations[i], max_tokens=task.max_tokens, temperature=task.temperature,
                                      constraint=constraint, fields=_at(fields, i)) for i in pending]
            comps = client.generate(reqs, step=step, record_keys=[record_keys[i] for i in pending],
                                    attempt=attempt + retry)
            still = []
            for i, comp in zip(pending, comps):
                value, error = extract_json(comp.text)
                errors = [error] if error else []
                validated = None
                if not errors:
                    validated, errors = schema.validate(value)
                history[i].append({"attempt": retry, "output": comp.text, "errors": errors,
                                   "tokens": comp.prompt_tokens + comp.completion_tokens,
                                   "method": json_method(comp) if constraint is not None else "validate-and-re-ask"})
                if not errors:
                    data = validated.model_dump() if hasattr(validated, "model_dump") else validated
                    results[i] = Result(output=data, valid=True)
                    continue
                still.append(i)
                conversations[i] = reask(conversations[i], comp.text, errors)
            pending = still
        out = []
        for i, res in enumerate(results):
            if res is None:
                res = Result(output=None, valid=False, errors=history[i][-1]["errors"])
            res["attempts"] = len(history[i])
            res["tokens"] = sum(h["tokens"] for h in history[i])
            res["method"] = history[i][-1]["method"]
            if len(history[i]) > 1:
                res["failed_attempts"] = [{"attempt": h["attempt"], "errors": h["errors"]}
                                          for h in history[i] if h["errors"]]
            out.append(res)
        return out

    def vote_key(self, task: "Task", result: Result) -> str | None:
        return json.dumps(result.output, sort_keys=True, ensure_ascii=False) if result.valid else None

    def shown(self, task: "Task", result: Result) -> str:
        return json.dumps(result.output, ensure_ascii=False) if result.output is not None else "(invalid JSON)"

    def aggregate(self, task: "Task", outs: list[Result], reasonings: list[str]) -> Result:
        result = super().aggregate(task, outs, reasonings)
        if result.get("votes"):
            result["tokens"] = sum(o.tokens or 0 for o in outs)
        return result


OUTPUTS: Registry[type[OutputKind]] = Registry("output kind", "openautoglm.outputs")
for _kind in (Labels, Json, Text):
    OUTPUTS.register(_kind.name)(_kind)


def output_kind(name: str) -> OutputKind:
    """The kind registered as ``name``."""
    return OUTPUTS.get(name)()


def _at(fields: Sequence[Mapping[str, Any]] | None, i: int) -> Mapping[str, Any] | None:
    return fields[i] if fields is not None else None


def json_method(comp: Completion) -> str:
    """How a JSON answer's constraint was applied: ``constrained-decoding`` (with the HTTP
    method used), or ``validate-and-re-ask`` with why the endpoint did not apply it."""
    how = getattr(comp, "constraint_method", None)
    if constraint_fell_back(comp):
        return f"validate-and-re-ask (constraint not applied: {str(how)[len('none: '):]})"
    return f"constrained-decoding ({how})" if how else "constrained-decoding"


def unmeasured(result: ScoreResult, n_labels: int) -> bool:
    """Whether a score estimate measured nothing: an estimate (``exact`` false) that gives every
    label the same value, as the top-k estimate does when none of them is listed (each gets
    the same floor) or when they share the one listed first token."""
    return not result.exact and n_labels > 1 and len(set(result.logprobs)) == 1


def constraint_fell_back(comp: Completion) -> bool:
    """Whether a backend sent a request without its constraint (an HTTP endpoint that refused or
    ignored every method it was tried with: ``constraint_method`` starts with ``none``)."""
    return str(getattr(comp, "constraint_method", "") or "").startswith("none")


def first_token_choice_logprobs(comp: Completion, options: Sequence[str]) -> list[float] | None:
    """Each option's log-probability estimated from a choice-constrained answer's first token
    and its listed alternatives; ``None`` when that measures nothing (no logprobs, the
    constraint was not applied, or every option gets the same value)."""
    if constraint_fell_back(comp) or not comp.logprobs or not comp.logprobs[0]:
        return None
    first = comp.logprobs[0][0]
    top = {first.token: first.logprob, **first.top}
    logprobs = [estimate_first_token_logprob(top, o) for o in options]
    return logprobs if len(set(logprobs)) > 1 else None


def apply_bias(probs: Sequence[float], bias: Sequence[float]) -> list[float]:
    """Add ``bias`` to the log-probabilities and renormalise."""
    logs = [math.log(max(p, 1e-300)) + b for p, b in zip(probs, bias)]
    top = max(logs)
    exps = [math.exp(v - top) for v in logs]
    total = sum(exps)
    return [e / total for e in exps]


def reask(prompt: Prompt, answer: str, errors: list[str], what: str = "JSON object") -> Prompt:
    """Append the invalid answer and a correction request (validation messages only)."""
    feedback = "Your previous answer was not valid:\n- " + "\n- ".join(e[:200] for e in errors[:5])
    feedback += f"\nReply with only the corrected {what}."
    if isinstance(prompt, str):
        return f"{prompt} {answer}\n\n{feedback}\n"
    return list(prompt) + [{"role": "assistant", "content": answer}, {"role": "user", "content": feedback}]
