"""Reasoning strategies as plug-ins: how a task gets from a record to an answer.

A strategy is a class with a ``name``, a pydantic ``Settings`` model (its fields in the
task's ``strategy:`` block) and ``run()``; it is registered by name in
:data:`STRATEGIES`.  ``direct`` lives here; the others (``chain_of_thought``,
``self_consistency``, ``verify_revise``) live in :mod:`openautoglm.reasoning`, one
file each, and are found through the entry-point group ``openautoglm.strategies``
like a third party's.  A task holds a :class:`StrategySpec`: the name and validated
settings, plain data that round-trips through YAML::

    strategy: chain_of_thought
    strategy: {name: self_consistency, n: 5, temperature: 0.7}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

from pydantic import BaseModel, ConfigDict, SerializationInfo, model_serializer, model_validator

from .plugins import Registry
from .result import Result

if TYPE_CHECKING:  # pragma: no cover
    from .client import ModelClient
    from .task import Task

#: the context key under which per-record demonstrations (retrieved or given) reach the prompt
DEMOS_KEY = "__demos__"


class Strategy:
    """Base class of strategies.  ``Settings`` lists the options a task may set."""

    name: ClassVar[str] = "direct"

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    def __init__(self, settings: BaseModel | None = None) -> None:
        self.settings = settings if settings is not None else self.Settings()

    def run(self, task: "Task", client: "ModelClient", contexts: Sequence[dict[str, Any]], *, step: str,
            record_keys: Sequence[str]) -> list[Result]:
        raise NotImplementedError

    @classmethod
    def callable_refs(cls, settings: BaseModel) -> dict[str, str]:
        """``{settings field path: "module:function"}`` this strategy would import (checked by
        the pipeline's load policy); ``with_callables`` gets them back resolved."""
        return {}

    @classmethod
    def with_callables(cls, settings: BaseModel, resolved: dict[str, Callable[..., Any]]) -> BaseModel:
        return settings


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", "openautoglm.strategies")


@STRATEGIES.register("direct")
class Direct(Strategy):
    """One prompt per record, answered under the output kind (with the task's label head
    and retrieved demonstrations when it has them)."""

    name = "direct"

    def run(self, task: "Task", client: "ModelClient", contexts: Sequence[dict[str, Any]], *, step: str,
            record_keys: Sequence[str]) -> list[Result]:
        head_probs, skipped = None, None
        if task.head is not None:  # a validator makes this a direct label task
            from .head import HeadNotApplicable

            assert task.labels
            try:
                head = task.label_head(client.backend)
            except HeadNotApplicable as exc:  # a shipped head fitted for another model: label scores only
                skipped = f"+head-skipped({task.head.shipped}: {exc.message})"
            else:
                head_probs = head.predict(client.backend, [task.head_input(c) for c in contexts])
                if task.head.weight >= 1.0:  # the head alone: no prompt, no label scoring
                    return [Result.of_labels(task.labels, p, head.describe()) for p in head_probs]
        neighbours = None
        if task.retrieval is not None:
            neighbours = task.retriever.query(contexts, task.labels or [])
            contexts = [{**c, DEMOS_KEY: n.examples} for c, n in zip(contexts, neighbours)]
        prompts = [task.build_prompt(c) for c in contexts]
        results = task.kind.answer(task, client, prompts, step=step, record_keys=record_keys, neighbours=neighbours,
                                   head_probs=head_probs, fields=contexts)
        if skipped:
            for result in results:
                if isinstance(result, dict) and "method" in result:
                    result["method"] = str(result["method"]) + skipped
        return results


class StrategySpec(BaseModel):
    """A task's strategy: its name and validated settings (``spec.n`` reads a setting)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str = "direct"
    settings: Any = None

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        if value is None:
            value = "direct"
        if isinstance(value, str):
            value = {"name": value}
        if isinstance(value, dict) and "settings" not in value:
            name = value.get("name", "direct")
            options = {k: v for k, v in value.items() if k != "name"}
            return {"name": name, "settings": STRATEGIES.get(name).Settings.model_validate(options)}
        if isinstance(value, dict) and value.get("settings") is None:
            return {**value, "settings": STRATEGIES.get(value.get("name", "direct")).Settings()}
        return value

    @property
    def cls(self) -> type[Strategy]:
        return STRATEGIES.get(self.name)

    def build(self) -> Strategy:
        return self.cls(self.settings)

    def __getattr__(self, item: str) -> Any:
        settings = self.__dict__.get("settings")
        if settings is not None and not item.startswith("_") and item in type(settings).model_fields:
            return getattr(settings, item)
        raise AttributeError(item)

    def replace(self, **changes: Any) -> "StrategySpec":
        """A copy with some settings changed."""
        return StrategySpec(name=self.name, settings=self.settings.model_copy(update=changes))

    @model_serializer(mode="plain")
    def _dump(self, info: SerializationInfo) -> Any:
        return self.to_config(identify=bool(info.context and info.context.get("identify")))

    def to_config(self, *, identify: bool = False) -> str | dict[str, Any]:
        """The YAML form: the bare name when no setting differs from its default.

        ``identify=True`` is for fingerprints (resume, cache keys): settings that cannot be saved
        to YAML, such as a lambda verifier, are named instead of refused.  A Settings class with
        its own ``to_config`` receives ``identify`` when it accepts that keyword.
        """
        to_config = getattr(self.settings, "to_config", None)
        if callable(to_config):
            data = to_config(identify=True) if identify and _accepts(to_config, "identify") else to_config()
        else:
            data = self.settings.model_dump(mode="json", exclude_defaults=True)
        return self.name if not data else {"name": self.name, **data}


def _accepts(function: Callable[..., Any], keyword: str) -> bool:
    import inspect

    return keyword in inspect.signature(function).parameters


def run_task(task: "Task", client: "ModelClient", contexts: Sequence[dict[str, Any]], *, step: str,
             record_keys: Sequence[str]) -> list[Result]:
    """Run ``task`` on a batch of records with its strategy."""
    return task.runner.run(task, client, contexts, step=step, record_keys=record_keys)
