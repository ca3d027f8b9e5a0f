"""The visual pipeline builder's model: pipeline YAML ⇄ a graph of step nodes.

The browser draws the graph (Drawflow); the server converts, so YAML is parsed and written
by one YAML library and validated by the same code as everywhere else.

* :func:`yaml_to_graph` - YAML text → ``{"pipeline": {...top-level fields}, "steps": [...]}``
  (one node per step: kind, template, labels, schema, strategy, model, call, sub-pipeline,
  ``inputs`` mapping, the YAML line it starts on, and what it reads: record fields and earlier
  steps).  Fields the builder has no control for stay in ``extra`` and are written back
  unchanged.  Malformed YAML raises :class:`YamlSyntaxError` with its line, so the browser keeps
  its last graph and marks the line.
* :func:`graph_to_yaml` - the graph → YAML text (one step and no wiring: the ``task:`` shorthand).
* :func:`problem_steps` - which node each validation problem belongs to (by field, else by line).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError, OpenAutoGLMError
from .validation import require_valid_unicode

MAX_STEPS = 100
#: task fields the builder edits; every other task field is kept in a node's ``extra``
TASK_FIELDS = ("template", "labels", "schema", "strategy")
#: top-level fields the builder writes before and after ``steps``
HEAD_FIELDS = ("name", "description", "model", "inputs")


class YamlSyntaxError(OpenAutoGLMError):
    """The YAML text cannot be read as a pipeline's shape at all (its line is in ``line``)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class BuilderStep(BaseModel):
    """One node: a task step, a ``call:`` step or a sub-pipeline."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    kind: Literal["task", "call", "pipeline"] = "task"
    template: str | None = Field(default=None, max_length=100_000)
    labels: list[str] | None = Field(default=None, max_length=200)
    #: JSON (or YAML) text of the output schema
    schema_text: str | None = Field(default=None, max_length=100_000)
    strategy: str | None = Field(default=None, max_length=64)
    model: str | None = Field(default=None, max_length=200)
    call: str | None = Field(default=None, max_length=300)
    pipeline: str | None = Field(default=None, max_length=300)
    inputs: dict[str, str] = Field(default_factory=dict, max_length=100)
    #: task fields without a control in the builder (examples, verbalizers, ...), written back as they are
    extra: dict[str, Any] = Field(default_factory=dict)


class BuilderGraph(BaseModel):
    """The builder's graph: top-level pipeline fields and the steps in order."""

    model_config = ConfigDict(extra="forbid")

    pipeline: dict[str, Any] = Field(default_factory=dict)
    steps: list[BuilderStep] = Field(min_length=1, max_length=MAX_STEPS)
    #: how the YAML spells the steps: ``task:`` (one plain step), ``steps:``, or "auto" (``task:`` when it can)
    form: Literal["auto", "task", "steps"] = "auto"

    @classmethod
    def checked(cls, data: Any) -> "BuilderGraph":
        return cls.model_validate(require_valid_unicode(data))


# -- YAML → graph -------------------------------------------------------------------------------
def _load(text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)  # duplicate keys and the rest: the validation reports them
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise YamlSyntaxError(f"malformed YAML: {getattr(exc, 'problem', None) or exc}",
                              line=mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise YamlSyntaxError("expected a mapping at the top level (name:, task: or steps:)", line=1)
    return data


def _step_lines(text: str, shorthand: bool) -> list[int]:
    """The line each step starts on (the ``task:`` key for the shorthand)."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if shorthand and key.value == "task":
            return [key.start_mark.line + 1]
        if not shorthand and key.value == "steps" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _reads(step: dict[str, Any], earlier: list[str]) -> tuple[list[str], list[str]]:
    """(earlier steps, record fields) a step reads: its template's variables and ``inputs`` sources."""
    from ..core.prompt import Template
    from ..errors import TemplateError

    heads: set[str] = set()
    mapped = step.get("inputs") if isinstance(step.get("inputs"), dict) else {}
    heads |= {str(expr).split(".")[0] for expr in mapped.values()}
    task = step.get("task")
    if isinstance(task, dict) and isinstance(task.get("template"), str):
        try:
            variables = Template(task["template"]).variables
        except TemplateError:
            variables = set()
        heads |= {v for v in variables if v not in mapped}
    steps = [h for h in earlier if h in heads]
    return steps, sorted(h for h in heads if h not in earlier)


def _node(raw: Any, index: int) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise YamlSyntaxError(f"step {index + 1} is not a mapping (name:, task: / call: / pipeline:)")
    node: dict[str, Any] = {"name": str(raw.get("name") or f"step{index + 1}"), "kind": "task", "inputs": {},
                            "extra": {}}
    if isinstance(raw.get("inputs"), dict):
        node["inputs"] = {str(k): str(v) for k, v in raw["inputs"].items()}
    if raw.get("model") is not None:
        node["model"] = raw["model"] if isinstance(raw["model"], str) else json.dumps(raw["model"])
    if raw.get("call") is not None:
        node.update(kind="call", call=str(raw["call"]))
    elif raw.get("pipeline") is not None:
        node.update(kind="pipeline", pipeline=str(raw["pipeline"]))
    task = raw.get("task")
    if isinstance(task, dict):
        node["template"] = task.get("template") if isinstance(task.get("template"), str) else None
        if isinstance(task.get("labels"), list):
            node["labels"] = [str(lab) for lab in task["labels"]]
        if task.get("schema") is not None:
            schema = task["schema"]
            node["schema_text"] = schema if isinstance(schema, str) else json.dumps(schema, indent=2,
                                                                                    ensure_ascii=False)
        strategy = task.get("strategy")
        if isinstance(strategy, str):
            node["strategy"] = strategy
        elif isinstance(strategy, dict):
            node["strategy"] = str(strategy.get("name", "direct"))
            options = {k: v for k, v in strategy.items() if k != "name"}
            if options:
                node["extra"]["strategy_options"] = options
        node["extra"].update({k: v for k, v in task.items() if k not in TASK_FIELDS})
    return node


def yaml_to_graph(text: str) -> dict[str, Any]:
    """The builder's graph of a pipeline YAML text (see the module docstring)."""
    data = _load(text)
    shorthand = "task" in data and "steps" not in data
    raw_steps = [{"name": (data["task"] or {}).get("name", "task") if isinstance(data["task"], dict) else "task",
                  "task": data["task"]}] if shorthand else data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise YamlSyntaxError("the pipeline needs `steps:` (a list) or `task:`", line=1)
    if len(raw_steps) > MAX_STEPS:
        raise YamlSyntaxError(f"more than {MAX_STEPS} steps")
    lines = _step_lines(text, shorthand)
    nodes, earlier = [], []
    for i, raw in enumerate(raw_steps):
        node = _node(raw, i)
        if shorthand:
            node["extra"].pop("name", None)
        node["line"] = lines[i] if i < len(lines) else None
        node["reads_steps"], node["reads_fields"] = _reads(raw, earlier)
        earlier.append(node["name"])
        nodes.append(node)
    pipeline = {k: v for k, v in data.items() if k not in ("steps", "task")}
    return {"pipeline": pipeline, "steps": nodes, "shorthand": shorthand, "form": "task" if shorthand else "steps"}


# -- graph → YAML -------------------------------------------------------------------------------
class _Dumper(yaml.SafeDumper):
    """Multi-line strings (templates, schemas) as ``|`` blocks, short lists in flow style."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not value.endswith((" ", "\t")) and not re.search(r"\s\n", value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _schema(text: str, step: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"step {step!r}: the schema is not valid JSON or YAML", field=f"steps.{step}.schema",
                          hint='e.g. {"type": "object", "properties": {"city": {"type": "string"}}}') from None
    return value


def _task(step: BuilderStep) -> dict[str, Any]:
    extra = dict(step.extra)
    options = extra.pop("strategy_options", None)
    task: dict[str, Any] = {}
    if "name" in extra:
        task["name"] = extra.pop("name")
    task["template"] = step.template or ""
    if step.labels:
        task["labels"] = [lab.strip() for lab in step.labels if lab.strip()]
    if step.schema_text and step.schema_text.strip():
        task["schema"] = _schema(step.schema_text, step.name)
    if step.strategy and (step.strategy != "direct" or options):
        task["strategy"] = {"name": step.strategy, **options} if isinstance(options, dict) and options \
            else step.strategy
    task.update(extra)
    return task


def graph_dict(graph: BuilderGraph) -> dict[str, Any]:
    """The pipeline configuration (as plain data) the graph describes."""
    steps = []
    for step in graph.steps:
        out: dict[str, Any] = {"name": step.name}
        if step.kind == "task":
            out["task"] = _task(step)
        elif step.kind == "call":
            out["call"] = step.call or ""
        else:
            out["pipeline"] = step.pipeline or ""
        if step.inputs:
            out["inputs"] = dict(step.inputs)
        if step.model:
            out["model"] = step.model
        steps.append(out)
    head = {k: graph.pipeline[k] for k in HEAD_FIELDS if graph.pipeline.get(k) not in (None, {}, "")}
    tail = {k: v for k, v in graph.pipeline.items() if k not in HEAD_FIELDS and k not in ("steps", "task")}
    only = steps[0] if len(steps) == 1 else None
    plain = only is not None and "task" in only and set(only) == {"name", "task"} and "name" not in only["task"]
    if plain and graph.form != "steps":
        return {**head, "task": {"name": only["name"], **only["task"]}, **tail}
    return {**head, "steps": steps, **tail}


def graph_to_yaml(graph: BuilderGraph) -> str:
    """YAML text of the graph's pipeline (the ``task:`` shorthand for one plain task step)."""
    return yaml.dump(graph_dict(graph), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100,
                     default_flow_style=None)


# -- problems → nodes ---------------------------------------------------------------------------
def problem_steps(problems: list[dict[str, Any]], graph: dict[str, Any]) -> list[dict[str, Any]]:
    """``problems`` with ``step``: the index of the node each belongs to (None: the pipeline)."""
    names = [s["name"] for s in graph["steps"]]
    lines = [s.get("line") for s in graph["steps"]]
    out = []
    for p in problems:
        step = None
        parts = (p.get("field") or "").split(".")
        if parts[0] == "task" and graph.get("shorthand"):
            step = 0
        elif parts[0] == "steps" and len(parts) > 1:
            step = int(parts[1]) if parts[1].isdigit() and int(parts[1]) < len(names) else \
                (names.index(parts[1]) if parts[1] in names else None)
        if step is None and p.get("line") and any(lines):
            starts = [(ln, i) for i, ln in enumerate(lines) if ln is not None and ln <= p["line"]]
            step = max(starts)[1] if starts else None
        out.append({**p, "step": step})
    return out
