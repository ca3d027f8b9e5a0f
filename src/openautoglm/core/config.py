"""Pipeline configuration: YAML ⇄ validated objects.

Errors name the file, the line and the field, and say what was expected::

    examples/bad.yaml:7 [steps.0.task.labels]: a classification task needs at least two labels
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ConfigError
from .task import Task


class StepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    task: Task | None = None
    call: str | None = None  # "package.module:function"
    pipeline: str | None = None  # path of a sub-pipeline YAML (relative to this file)
    inputs: dict[str, str] = Field(default_factory=dict)  # template variable -> record field / "step.field"
    model: str | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "StepConfig":
        kinds = [k for k in ("task", "call", "pipeline") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a step needs exactly one of `task`, `call`, `pipeline` (got {kinds or 'none'})")
        if self.call is not None and ":" not in self.call:
            raise ValueError(f"`call` must look like 'package.module:function', got {self.call!r}")
        return self


class PipelineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "pipeline"
    description: str | None = None
    model: str | dict[str, Any] | None = None  # None: $OPENAUTOGLM_MODEL, else "local" (backends.registry)
    #: template variable -> record field, applied to every record before the steps run
    #: (``{text: sentence}``: a file whose column is ``sentence`` feeds ``{text}``)
    inputs: dict[str, str] = Field(default_factory=dict)
    steps: list[StepConfig] = Field(default_factory=list)
    output: str | None = None  # name of the step whose output is the result (default: last)
    batch_size: int = Field(default=64, ge=1, le=100_000)

    @model_validator(mode="before")
    @classmethod
    def _task_shorthand(cls, data: Any) -> Any:
        """A single ``task:`` at top level means a one-step pipeline."""
        if isinstance(data, dict) and "task" in data:
            data = dict(data)
            task = data.pop("task")
            if "steps" in data:
                raise ValueError("give either `task` or `steps`, not both")
            name = task.get("name", "task") if isinstance(task, dict) else "task"
            data["steps"] = [{"name": name, "task": task}]
        return data

    @model_validator(mode="after")
    def _check_steps(self) -> "PipelineConfig":
        if not self.steps:
            raise ValueError("a pipeline needs at least one step (`steps:` or `task:`)")
        names = [s.name for s in self.steps]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"step names must be unique; repeated: {dupes}")
        if self.output is not None and self.output not in names:
            raise ValueError(f"`output: {self.output}` names no step; steps are {names}")
        for var, field in self.inputs.items():
            if not var.isidentifier() or not field.strip():
                raise ValueError(f"`inputs: {{{var}: {field}}}` must map a variable name to a record field")
            if field.split(".")[0] in names:
                raise ValueError(f"`inputs: {{{var}: {field}}}`: the top-level mapping runs before any step; "
                                 "map a step's output in that step's own `inputs:`")
        return self

    def fingerprint(self) -> str:
        # an empty top-level ``inputs`` is left out, so configs written before it existed keep their hash
        # (runs in progress resume, evaluations keep their run ids)
        data = self.model_dump(mode="json", by_alias=True, exclude=None if self.inputs else {"inputs"},
                               context={"identify": True})
        blob = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _line_map(text: str) -> dict[tuple[Any, ...], int]:
    """Map each YAML path (keys / list indices) to its 1-based line number."""
    lines: dict[tuple[Any, ...], int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines[path + (key.value,)] = key.start_mark.line + 1
                walk(value, path + (key.value,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))

    if root is not None:
        walk(root, ())
    return lines


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (the YAML spec forbids
    it; PyYAML silently keeps the last value, so a typo'd second ``labels:`` would win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: let PyYAML report it
                continue
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {first})", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def parse_pipeline_yaml(text: str, source: str = "<string>") -> PipelineConfig:
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        message = f"malformed YAML: {getattr(exc, 'problem', None) or exc}"
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark is not None and (mark is None or context_mark.line != mark.line):
            message += f" ({context} that starts at line {context_mark.line + 1})"  # e.g. an unclosed quote
        raise ConfigError(
            message,
            source=source,
            line=mark.line + 1 if mark else None,
            hint="check indentation and quoting near that line (quote values containing ':' or '{')",
        ) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level (name:, model:, task: or steps:)", source=source)
    return validate_pipeline_dict(data, source=source, text=text)


def validate_pipeline_dict(data: dict[str, Any], *, source: str = "<config>", text: str | None = None) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in ("function-after", "Task")))
        if data.get("task") is not None and loc[:2] == ("steps", 0):
            loc = ("task",) + loc[3:] if len(loc) > 2 and loc[2] == "task" else loc
        line = None
        if text is not None:
            lines = _line_map(text)
            for cut in range(len(loc), -1, -1):
                if loc[:cut] in lines:
                    line = lines[loc[:cut]]
                    break
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = f"unknown field {loc[-1]!r}"
        elif err["type"] == "missing":
            message = f"required field {loc[-1]!r} is missing"
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise ConfigError(
            message + more,
            source=source,
            field=".".join(str(p) for p in loc) or None,
            line=line,
            hint=_hint_for(err),
        ) from None


def _hint_for(err: dict[str, Any]) -> str | None:
    if err["type"] == "extra_forbidden":
        return "see docs/pipelines.md for the fields a pipeline, step and task accept"
    if err["type"] == "missing" and err["loc"] and err["loc"][-1] == "template":
        return "give the task a prompt `template:` such as 'Review: {text}'"
    return None


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("pipeline file not found", source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not valid UTF-8 (byte {exc.start})", source=str(path), hint="save the file as UTF-8") from None
    return parse_pipeline_yaml(text, source=str(path))
