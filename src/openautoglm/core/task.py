"""Declarative tasks: a prompt template plus an output spec.

>>> task = Task(name="sentiment", prompt_template="Review: {text}", labels=["positive", "negative"])

Output kinds (inferred from the fields given):

* ``labels`` – a probability distribution over the labels.  Backends that can score
  get one batched scoring pass (softmax over label log-probs, optional contextual
  calibration); others are sampled ``n`` times and the vote share is used.
* ``json`` – generate, parse, validate against ``schema`` (Pydantic model or JSON
  schema); on failure re-ask with the validation errors, up to ``max_retries``.
* ``text`` – free generation.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ..backends.base import GenerationRequest, Message, Prompt, ScoreRequest
from ..errors import OpenAutoGLMError, TemplateError
from .client import ModelClient
from .head import HeadConfig, LabelHead
from .labels import calibrate, distribution_from_logprobs, distribution_from_votes
from .prompt import Template
from .retrieval import Neighbours, RetrievalConfig, mix
from ..reasoning.config import StrategyConfig
from .schema import OutputSchema, extract_json

CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")
#: the most tokens one answer may ask for (larger values are typos, e.g. ``1e23``)
MAX_TOKENS = 131_072
#: the most samples one answer may ask for (votes, self-consistency)
MAX_SAMPLES = 64
#: context key under which retrieved demonstrations travel to the prompt builder
DEMOS_KEY = "__demos__"


class Task(BaseModel):
    """A unit of LLM work, serialisable to YAML."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, populate_by_name=True)

    name: str = "task"
    prompt_template: str = Field(alias="template")
    labels: list[str] | None = None
    #: label -> the word the model is scored on (defaults to the label itself)
    verbalizers: dict[str, str] | None = None
    schema_: Any = Field(default=None, alias="schema")
    output: Literal["labels", "json", "text"] | None = None
    system: str | None = None
    examples: list[dict[str, Any]] = Field(default_factory=list)
    #: "chat": messages through the model's chat template; "text": a plain completion prompt
    format: Literal["chat", "text"] = "chat"
    #: text format: what precedes the answer ("" when the template ends with its own cue)
    answer_prefix: str = "Answer:"
    #: append "Answer with one of: ..." (None: yes for chat, no for text — measured best on SmolLM2)
    list_labels: bool | None = None
    calibrate: bool = False
    #: label -> additive log-space bias (learned calibration, e.g. by the optimizer)
    label_bias: dict[str, float] | None = None
    #: demonstrations retrieved per input by embedding similarity (and an optional kNN prior)
    retrieval: RetrievalConfig | None = None
    #: a linear classifier over features of the input, fitted on labelled examples (see core.head)
    head: HeadConfig | None = None
    #: samples for vote-share confidence when the backend cannot score
    n_votes: int = Field(default=5, ge=1, le=MAX_SAMPLES)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=256, ge=1, le=MAX_TOKENS)
    stop: list[str] = Field(default_factory=list)  # text outputs: cut generation at these strings
    seed: int | None = None  # text outputs: sampling seed (temperature > 0 answers become reproducible)
    max_retries: int = Field(default=2, ge=0, le=10)
    model: str | None = None
    #: "direct", "chain_of_thought", "self_consistency", "verify_revise" or a settings block
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    _heads: dict[str, LabelHead] = PrivateAttr(default_factory=dict)  # fitted heads, per backend identity

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_ok(cls, value: Any) -> StrategyConfig:
        return StrategyConfig.coerce(value)

    @field_validator("labels")
    @classmethod
    def _labels_ok(cls, labels: list[str] | None) -> list[str] | None:
        if labels is not None:
            if len(labels) < 2:
                raise ValueError("a classification task needs at least two labels")
            if len(set(labels)) != len(labels):
                raise ValueError(f"labels must be unique, got {labels}")
        return labels

    @model_validator(mode="after")
    def _infer_output(self) -> "Task":
        if self.output is None:
            self.output = "labels" if self.labels else "json" if self.schema_ is not None else "text"
        if self.output == "labels" and not self.labels:
            raise ValueError("output 'labels' needs a non-empty `labels` list")
        if self.output == "json" and self.schema_ is None:
            raise ValueError("output 'json' needs a `schema` (pydantic model or JSON schema)")
        for field_name in ("verbalizers", "label_bias"):
            unknown = set(getattr(self, field_name) or {}) - set(self.labels or [])
            if unknown:
                raise ValueError(f"{field_name} for unknown labels: {sorted(unknown)}")
        if self.retrieval is not None and self.output != "labels" and (
                self.retrieval.knn_weight or self.retrieval.candidates):
            raise ValueError("retrieval.knn_weight/candidates need a label task")
        if self.head is not None and (self.output != "labels" or self.strategy.name != "direct"):
            raise ValueError("a `head` needs a label task with the direct strategy")
        try:  # syntax check now, so a config error names the file and line
            Template(self.prompt_template, where=f"task {self.name!r} template").variables  # noqa: B018
        except TemplateError as exc:
            raise ValueError(str(exc)) from None
        return self

    # -- derived ---------------------------------------------------------------
    @cached_property
    def template(self) -> Template:
        return Template(self.prompt_template, where=f"task {self.name!r} template")

    @cached_property
    def output_schema(self) -> OutputSchema | None:
        return OutputSchema(self.schema_) if self.schema_ is not None else None

    @cached_property
    def retriever(self) -> Any:
        """The retrieval index over ``retrieval.pool`` (built on first use)."""
        assert self.retrieval is not None
        from .retrieval import Retriever

        return Retriever(self.retrieval, self.render_input, self._example_answer_label)

    def label_head(self, backend: Any) -> LabelHead:
        """The head fitted on ``head.pool`` for ``backend`` (fitted on first use)."""
        assert self.head is not None and self.labels
        key = backend.identity()
        if key not in self._heads:
            self._heads[key] = LabelHead(self.head, self.labels, self.head_input, self._example_answer_label,
                                         backend)
        return self._heads[key]

    def adopt_head(self, backend: Any, head: LabelHead) -> None:
        """Use ``head``, already fitted on this task's ``head.pool`` for ``backend``, instead of
        fitting it again (tasks whose heads differ only in ``weight`` share one fit)."""
        assert self.head is not None
        if self.head.model_dump(exclude={"weight"}) != head.config.model_dump(exclude={"weight"}):
            raise ValueError("adopt_head: the fitted head's settings or pool differ from this task's head")
        self._heads[backend.identity()] = head

    def _example_answer_label(self, example: dict[str, Any]) -> str:
        return str(example.get("output", example.get("label", example.get("answer"))))

    @property
    def input_variables(self) -> set[str]:
        return set(self.template.variables)

    def verbalized(self) -> list[str]:
        assert self.labels
        return [(self.verbalizers or {}).get(label, label) for label in self.labels]

    def to_config(self) -> dict[str, Any]:
        data = self.model_dump(by_alias=True, exclude_defaults=True, exclude={"schema_", "strategy"})
        if self.strategy.name != "direct":
            data["strategy"] = self.strategy.to_config()
        if self.schema_ is not None:
            data["schema"] = self.output_schema.json_schema if self.output_schema else self.schema_
        data["template"] = self.prompt_template
        return data

    # -- prompt building ---------------------------------------------------------
    def _instruction_suffix(self) -> str:
        if self.output == "labels":
            show = self.list_labels if self.list_labels is not None else self.format == "chat"
            return ("Answer with one of: " + ", ".join(self.verbalized()) + ".") if show else ""
        if self.output == "json":
            assert self.output_schema is not None
            return "Respond with only a JSON object that matches this JSON schema:\n" + self.output_schema.describe()
        return ""

    def _user_text(self, context: dict[str, Any], note: str | None = None) -> str:
        body = self.template.render(context)
        suffix = self._instruction_suffix()
        text = f"{body}\n{suffix}" if suffix else body
        return f"{text}\n{note}" if note else text

    def render_input(self, context: dict[str, Any]) -> str:
        """The record's text as the task shows it (template filled in, no instructions)."""
        return self.template.render(context)

    def head_input(self, context: dict[str, Any], features: str | None = None) -> str:
        """The text a head featurises: the record as shown; for model features followed by
        the answer cue, so that the last token's state is where the model answers."""
        features = features or (self.head.features if self.head is not None else "model")
        return self.render_input(context) + (self._cue() if features == "model" else "")

    def _example_answer(self, example: dict[str, Any]) -> str:
        answer = example.get("output", example.get("label", example.get("answer")))
        if answer is None:
            raise OpenAutoGLMError(f"task {self.name!r}: few-shot example lacks an 'output' (or 'label') field")
        if self.output == "labels":
            return (self.verbalizers or {}).get(answer, answer)
        if not isinstance(answer, str):
            import json

            return json.dumps(answer, ensure_ascii=False)
        return answer

    def _cue(self) -> str:
        return f"\n{self.answer_prefix}" if self.answer_prefix else ""

    def build_prompt(self, context: dict[str, Any], *, note: str | None = None, cue: bool = True,
                     examples: Sequence[dict[str, Any]] | None = None) -> Prompt:
        """The prompt for one record, ready for the backend (the answer comes next).

        ``note`` is appended to the record's instructions (strategies use it for
        reasoning cues and verifier feedback); ``cue=False`` leaves out the text-format
        answer prefix; ``examples`` overrides the task's few-shot examples (retrieval).
        """
        if examples is None:
            examples = context.get(DEMOS_KEY)
        shots = self.examples if examples is None else examples
        if self.format == "text":
            parts = [self.system] if self.system else []
            for ex in shots:
                parts.append(f"{self._user_text(ex)}{self._cue()} {self._example_answer(ex)}")
            parts.append(f"{self._user_text(context, note)}{self._cue() if cue else ''}")
            return "\n\n".join(parts)
        messages: list[Message] = []
        if self.system:
            messages.append({"role": "system", "content": self.system})
        for ex in shots:
            messages.append({"role": "user", "content": self._user_text(ex)})
            messages.append({"role": "assistant", "content": self._example_answer(ex)})
        messages.append({"role": "user", "content": self._user_text(context, note)})
        return messages

    def _continuations(self) -> tuple[str, ...]:
        words = self.verbalized()
        return tuple((" " + w) if self.format == "text" else w for w in words)

    # -- execution -------------------------------------------------------------------
    def run_many(
        self, client: ModelClient, contexts: Sequence[dict[str, Any]], *, step: str, record_keys: Sequence[str]
    ) -> list[dict[str, Any]]:
        """Run the task on a batch of records (batching is the backend's business)."""
        head_probs = None
        if self.head is not None:  # a validator makes this a direct label task
            assert self.labels
            head = self.label_head(client.backend)
            head_probs = head.predict(client.backend, [self.head_input(c) for c in contexts])
            if self.head.weight >= 1.0:  # the head alone: no prompt, no label scoring
                return [_label_result(self.labels, p, head.describe()) for p in head_probs]
        neighbours = None
        if self.retrieval is not None:
            neighbours = self.retriever.query(contexts, self.labels or [])
            contexts = [{**c, DEMOS_KEY: n.examples} for c, n in zip(contexts, neighbours)]
        if self.strategy.name != "direct":
            from ..reasoning import run_strategy

            return run_strategy(self, client, contexts, step=step, record_keys=record_keys)
        prompts = [self.build_prompt(c) for c in contexts]
        return self.answer(client, prompts, step=step, record_keys=record_keys, neighbours=neighbours,
                           head_probs=head_probs)

    def answer(self, client: ModelClient, prompts: Sequence[Prompt], *, step: str,
               record_keys: Sequence[str], attempt: int = 0,
               neighbours: Sequence[Neighbours] | None = None,
               head_probs: Sequence[Sequence[float]] | None = None) -> list[dict[str, Any]]:
        """Answer ready-made prompts under the output spec (labels scored, JSON validated)."""
        prompts = list(prompts)
        if self.output == "labels":
            if client.backend.can_score:
                return self._classify_by_scoring(client, prompts, step, record_keys, attempt, neighbours,
                                                 head_probs)
            return self._classify_by_votes(client, prompts, step, record_keys, attempt)
        if self.output == "json":
            return self._extract(client, prompts, step, record_keys, attempt)
        reqs = [GenerationRequest(p, max_tokens=self.max_tokens, temperature=self.temperature, stop=tuple(self.stop),
                                  seed=self.seed) for p in prompts]
        comps = client.generate(reqs, step=step, record_keys=record_keys, attempt=attempt)
        return [{"text": c.text.strip(), "tokens": c.prompt_tokens + c.completion_tokens} for c in comps]

    def _content_free(self, client: ModelClient, step: str) -> list[float]:
        conts = self._continuations()
        reqs = [
            ScoreRequest(self.build_prompt({v: cf for v in self.input_variables}, examples=[]
                                           if self.retrieval else None), conts)
            for cf in CONTENT_FREE_INPUTS
        ]
        results = client.score(reqs, step=f"{step}:calibration")
        dists = [distribution_from_logprobs(r.logprobs, r.lengths)[0] for r in results]
        return [sum(d[i] for d in dists) / len(dists) for i in range(len(conts))]

    def _classify_by_scoring(
        self, client: ModelClient, prompts: list[Prompt], step: str, record_keys: Sequence[str], attempt: int = 0,
        neighbours: Sequence[Neighbours] | None = None, head_probs: Sequence[Sequence[float]] | None = None,
    ) -> list[dict[str, Any]]:
        labels = self.labels
        assert labels
        conts = self._continuations()
        every = list(range(len(labels)))
        prune = self.retrieval.candidates if self.retrieval and neighbours else None
        subsets = [every] * len(prompts)
        if prune and prune < len(labels):
            assert neighbours is not None
            subsets = [sorted(sorted(every, key=lambda j: -n.knn[labels[j]])[:prune]) for n in neighbours]
        reqs = [ScoreRequest(p, tuple(conts[j] for j in sub)) for p, sub in zip(prompts, subsets)]
        results = client.score(reqs, step=step, record_keys=record_keys, attempt=attempt)
        cf = self._content_free(client, step) if self.calibrate else None
        bias = [(self.label_bias or {}).get(lab, 0.0) for lab in labels]
        weight = self.retrieval.knn_weight if self.retrieval and neighbours else 0.0
        out = []
        for i, (res, sub) in enumerate(zip(results, subsets)):
            probs, normalised = distribution_from_logprobs(res.logprobs, res.lengths)
            method = getattr(client.backend, "score_method", "logprob") + ("-length-normalised" if normalised else "")
            if not res.exact:
                method += "-first-token-estimate"
            if cf is not None:
                probs = calibrate(probs, [cf[j] for j in sub])
                method += "+contextual-calibration"
            if self.label_bias:
                probs = apply_bias(probs, [bias[j] for j in sub])
                method += "+label-bias"
            full = [0.0] * len(labels)
            for j, p in zip(sub, probs):
                full[j] = p
            if len(sub) < len(labels):
                method += f"+knn-candidates({len(sub)})"
            if weight > 0 and neighbours is not None:
                full = mix(full, [neighbours[i].knn[lab] for lab in labels], weight)
                method += f"+knn(w={weight:g})"
            if head_probs is not None and self.head is not None:
                full = mix(full, head_probs[i], self.head.weight)
                method += f"+head(w={self.head.weight:g})"
            out.append(_label_result(labels, full, method))
        return out

    def _classify_by_votes(
        self, client: ModelClient, prompts: list[Prompt], step: str, record_keys: Sequence[str], attempt: int = 0
    ) -> list[dict[str, Any]]:
        assert self.labels
        reqs = [
            GenerationRequest(p, max_tokens=16, temperature=max(self.temperature, 0.7), n=self.n_votes)
            for p in prompts
        ]
        comps = client.generate(reqs, step=step, record_keys=record_keys, attempt=attempt)
        out = []
        for comp in comps:
            probs, unparsed = distribution_from_votes(comp.texts, self.verbalized())
            result = _label_result(self.labels, probs, f"vote-share(n={self.n_votes})")
            result["unparsed_votes"] = unparsed
            out.append(result)
        return out

    def _extract(
        self, client: ModelClient, prompts: list[Prompt], step: str, record_keys: Sequence[str], first_attempt: int = 0
    ) -> list[dict[str, Any]]:
        schema = self.output_schema
        assert schema is not None
        json_schema = schema.json_schema if client.backend.supports_json_schema else None
        results: list[dict[str, Any] | None] = [None] * len(prompts)
        conversations: list[Prompt] = list(prompts)
        history: list[list[dict[str, Any]]] = [[] for _ in prompts]
        pending = list(range(len(prompts)))
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            reqs = [
                GenerationRequest(conversations[i], max_tokens=self.max_tokens, temperature=self.temperature,
                                  json_schema=json_schema)
                for i in pending
            ]
            comps = client.generate(reqs, step=step, record_keys=[record_keys[i] for i in pending],
                                    attempt=first_attempt + attempt)
            still = []
            for i, comp in zip(pending, comps):
                value, error = extract_json(comp.text)
                errors = [error] if error else []
                validated = None
                if not errors:
                    validated, errors = schema.validate(value)
                history[i].append({"attempt": attempt, "output": comp.text, "errors": errors,
                                   "tokens": comp.prompt_tokens + comp.completion_tokens})
                if not errors:
                    data = validated.model_dump() if hasattr(validated, "model_dump") else validated
                    results[i] = {"output": data, "valid": True}
                    continue
                still.append(i)
                conversations[i] = _reask(conversations[i], comp.text, errors)
            pending = still
        out = []
        for i, res in enumerate(results):
            if res is None:
                res = {"output": None, "valid": False, "errors": history[i][-1]["errors"]}
            res["attempts"] = len(history[i])
            res["tokens"] = sum(h["tokens"] for h in history[i])
            if len(history[i]) > 1:
                res["failed_attempts"] = [
                    {"attempt": h["attempt"], "errors": h["errors"]} for h in history[i] if h["errors"]
                ]
            out.append(res)
        return out


def apply_bias(probs: Sequence[float], bias: Sequence[float]) -> list[float]:
    """Add ``bias`` to the log-probabilities and renormalise."""
    logs = [math.log(max(p, 1e-300)) + b for p, b in zip(probs, bias)]
    top = max(logs)
    exps = [math.exp(v - top) for v in logs]
    total = sum(exps)
    return [e / total for e in exps]


def _label_result(labels: Sequence[str], probs: Sequence[float], method: str) -> dict[str, Any]:
    best = max(range(len(labels)), key=lambda i: probs[i])
    return {
        "label": labels[best],
        "confidence": float(probs[best]),
        "scores": {label: float(p) for label, p in zip(labels, probs)},
        "method": method,
    }


def _reask(prompt: Prompt, answer: str, errors: list[str]) -> Prompt:
    """Append the invalid answer and a correction request (validation messages only)."""
    feedback = "Your previous answer was not valid:\n- " + "\n- ".join(e[:200] for e in errors[:5])
    feedback += "\nReply with only the corrected JSON object."
    if isinstance(prompt, str):
        return f"{prompt} {answer}\n\n{feedback}\n"
    return list(prompt) + [{"role": "assistant", "content": answer}, {"role": "user", "content": feedback}]

