"""Declarative tasks: a prompt template plus an output spec.

>>> task = Task(name="sentiment", prompt_template="Review: {text}", labels=["positive", "negative"])

A task is plain data (it round-trips through YAML): the template, the output kind
it names (:mod:`.outputs`: ``labels``, ``json``, ``text``, inferred from ``labels`` /
``schema``) and the strategy it names (:mod:`.strategy`: ``direct`` by default).  Running
it is the strategy's job (:func:`~.strategy.run_task`); answering under the spec is the
output kind's.  Prompt building lives here because it is a function of the task's data.
A task that gives no labels may take them from a preset (:mod:`.presets`: ``sentiment.v1``...),
resolved when it is validated and recorded in its fields.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ..backends.base import Message, Prompt
from ..errors import ConfigError, OpenAutoGLMError, TemplateError
from .client import ModelClient
from .head import HeadConfig, LabelHead, ShippedHead
from .outputs import CONTENT_FREE_INPUTS, OUTPUTS, OutputKind, output_kind  # noqa: F401 - re-exported
from .prompt import Template
from .result import Result
from .retrieval import RetrievalConfig
from .schema import OutputSchema
from .strategy import DEMOS_KEY, StrategySpec, run_task

#: the most tokens one answer may ask for (larger values are typos, e.g. ``1e23``)
MAX_TOKENS = 131_072
#: the most samples one answer may ask for (votes, self-consistency)
MAX_SAMPLES = 64


class Task(BaseModel):
    """A unit of LLM work, serialisable to YAML."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, populate_by_name=True)

    name: str = "task"
    prompt_template: str = Field(alias="template")
    #: a built-in or plug-in task preset (``sentiment.v1``; see :mod:`.presets`), set when one applied
    preset: str | None = None
    #: the preset's language (``zh``/``en``; detected from the template when not given)
    language: Literal["zh", "en"] | None = None
    #: what the task is (a preset writes what it supplied and why it applied)
    description: str | None = None
    labels: list[str] | None = None
    #: label -> the word the model is scored on (defaults to the label itself)
    verbalizers: dict[str, str] | None = None
    schema_: Any = Field(default=None, alias="schema")
    #: the output kind's name (``labels``, ``json``, ``text`` or a plug-in's)
    output: str | None = None
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
    #: a strategy's name ("direct", "chain_of_thought", ...) or a block with its settings
    strategy: StrategySpec = Field(default_factory=StrategySpec)
    _heads: dict[str, LabelHead | ShippedHead] = PrivateAttr(default_factory=dict)  # fitted heads, per backend identity
    _retriever: Any = PrivateAttr(default=None)
    _adapted: dict[str, "Task"] = PrivateAttr(default_factory=dict)  # per backend label_format (for_backend)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        from .presets import resolve

        try:
            return resolve(data)
        except ConfigError as exc:  # an unknown preset: a validation error at the field
            raise ValueError(exc.message) from None

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_ok(cls, value: Any) -> Any:
        try:
            return value if isinstance(value, StrategySpec) else StrategySpec.model_validate(value)
        except ConfigError as exc:  # an unknown name: a validation error at the field
            raise ValueError(exc.message) from None

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
        try:
            kind = output_kind(self.output)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        kind.check(self)
        for field_name in ("verbalizers", "label_bias"):
            unknown = set(getattr(self, field_name) or {}) - set(self.labels or [])
            if unknown:
                raise ValueError(f"{field_name} for unknown labels: {sorted(unknown)}")
        if self.retrieval is not None and not kind.distribution and (
                self.retrieval.knn_weight or self.retrieval.candidates):
            raise ValueError("retrieval.knn_weight/candidates need a label task")
        if self.head is not None and (not kind.distribution or self.strategy.name != "direct"):
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
    def kind(self) -> OutputKind:
        """The output kind this task names."""
        assert self.output is not None
        return output_kind(self.output)

    @cached_property
    def _instruction(self) -> str:
        return self.kind.instruction(self)

    @cached_property
    def runner(self) -> Any:
        """The task's strategy, built (strategies keep no state between calls)."""
        return self.strategy.build()

    @cached_property
    def _continuations(self) -> tuple[str, ...]:
        words = self.verbalized()
        return tuple((" " + w) if self.format == "text" else w for w in words)

    # Derived values above are cached; a copy with changed fields, or a changed field, drops them
    # (model_copy(update=...) would otherwise carry the old template, kind, retriever and heads).
    _DERIVED: ClassVar[tuple[str, ...]] = ("template", "output_schema", "kind", "_continuations", "_instruction",
                                           "runner")

    def _forget_derived(self) -> None:
        for name in self._DERIVED:
            self.__dict__.pop(name, None)
        if self.__pydantic_private__ is not None:
            self._retriever = None
            self._heads = {}
            self._adapted = {}

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> "Task":
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy._forget_derived()
        return copy

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in type(self).model_fields:
            self._forget_derived()

    @property
    def retriever(self) -> Any:
        """The retrieval index over ``retrieval.pool`` (built on first use)."""
        assert self.retrieval is not None
        if self._retriever is None:
            from .retrieval import Retriever

            self._retriever = Retriever(self.retrieval, self.render_input, self._example_answer_label)
        return self._retriever

    @property
    def has_retriever(self) -> bool:
        """Whether the retrieval index is built (or was given with :meth:`use_retriever`)."""
        return self._retriever is not None

    def use_retriever(self, retriever: Any) -> None:
        """Use ``retriever`` (an index over this task's ``retrieval.pool``, e.g. another task's,
        reconfigured) instead of building one."""
        self._retriever = retriever

    def label_head(self, backend: Any) -> LabelHead | ShippedHead:
        """The head fitted on ``head.pool`` for ``backend`` (fitted on first use), or the shipped
        one (``head.shipped``; :class:`~.head.HeadNotApplicable` when fitted for another model)."""
        assert self.head is not None and self.labels
        key = backend.identity()
        if key not in self._heads and self.head.shipped is not None:
            self._heads[key] = ShippedHead(self.head, self.labels, backend)
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
        if self.strategy.to_config() != "direct":
            data["strategy"] = self.strategy.to_config()
        if self.schema_ is not None:
            data["schema"] = self.output_schema.json_schema if self.output_schema else self.schema_
        for chosen in ("format", "answer_prefix"):  # set by the user, even to the default: not the backend's
            if chosen in self.model_fields_set:
                data[chosen] = getattr(self, chosen)
        data["template"] = self.prompt_template
        return data

    # -- the backend's prompt form ---------------------------------------------------
    def for_backend(self, backend: Any) -> "Task":
        """This task in the prompt form ``backend`` answers labels best in (its ``label_format``)
        where the task leaves the form open: a direct label task that does not set ``format``
        (nor, for text, ``answer_prefix``, which becomes :meth:`label_cue`).  Otherwise ``self``.
        The copy is kept per form, so heads and retrieval fitted on it are reused."""
        style = getattr(backend, "label_format", None)
        if (style not in ("chat", "text") or style == self.format or "format" in self.model_fields_set
                or not self.kind.distribution or self.strategy.name != "direct"):
            return self
        if style not in self._adapted:
            update: dict[str, Any] = {"format": style}
            if style == "text" and "answer_prefix" not in self.model_fields_set:
                update["answer_prefix"] = self.label_cue()
            self._adapted[style] = self.model_copy(update=update)
        return self._adapted[style]

    def label_cue(self) -> str:
        """The plain-text answer cue for this task: its preset's (``Sentiment:``, ``情感：``), or
        that of the preset its name or template matches, else ``Answer:``."""
        from .presets import get_preset, language_of, match

        found = None
        if self.preset:
            try:
                found = get_preset(self.preset)
            except ConfigError:
                found = None
        if found is None:
            matched = match(self.name, self.prompt_template)
            found = matched[0] if matched else None
        language = self.language or language_of(self.prompt_template)
        cue = found.cues.get(language) if found is not None else None
        return cue or "Answer:"

    # -- prompt building ---------------------------------------------------------
    def instruction(self) -> str:
        """What the output kind appends to the user's instructions (``""``: nothing; computed once:
        an output kind's instruction is a function of the task)."""
        return self._instruction

    def _user_text(self, context: dict[str, Any], note: str | None = None) -> str:
        body = self.template.render(context)
        suffix = self.instruction()
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
        if self.kind.distribution:
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

    def continuations(self) -> tuple[str, ...]:
        """The label words as scored after the prompt (text format: with a leading space)."""
        return self._continuations

    # -- execution -------------------------------------------------------------------
    def run_many(
        self, client: ModelClient, contexts: Sequence[dict[str, Any]], *, step: str, record_keys: Sequence[str]
    ) -> list[Result]:
        """Run the task on a batch of records with its strategy (batching is the backend's business).
        A preset task's results name the preset (``result["preset"]``)."""
        task = self.for_backend(client.backend)
        results = [Result.wrap(r) for r in run_task(task, client, contexts, step=step, record_keys=record_keys)]
        if self.preset is not None:
            for result in results:
                result.setdefault("preset", self.preset)
        return results

    def answer(self, client: ModelClient, prompts: Sequence[Prompt], *, step: str, record_keys: Sequence[str],
               attempt: int = 0) -> list[Result]:
        """Answer ready-made prompts under the output kind (labels scored, JSON validated)."""
        return self.kind.answer(self, client, prompts, step=step, record_keys=record_keys, attempt=attempt)
