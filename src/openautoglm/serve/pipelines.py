"""Pipelines the server knows: YAML files in a folder, validation with line numbers, and
:class:`~openautoglm.core.pipeline.Pipeline` objects bound to the server's one model.

The server runs every pipeline on the model it serves (as ``openautoglm run --model``
does), so one copy of the model is loaded and all requests share its micro-batcher.

YAML that reaches the server is data: every pipeline is built under
:meth:`LoadPolicy.untrusted <openautoglm.core.policy.LoadPolicy.untrusted>`, so ``call:``
steps and ``python`` verifiers may only name the callables the operator allowed at
start-up (``--allow-call``) and ``pipeline:`` steps only files inside the pipelines
folder.  Validation builds the pipeline too, so a forbidden reference is reported as a
problem of the YAML (with its line), never run.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ..backends.base import Backend
from ..core.config import PipelineConfig, parse_pipeline_yaml
from ..core.pipeline import BackendPool, Pipeline
from ..core.policy import LoadPolicy
from ..errors import ConfigError, OpenAutoGLMError, TemplateError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class PipelineNotFound(OpenAutoGLMError):
    pass


class SharedPool(BackendPool):
    """A backend pool that answers every model spec with the server's backend."""

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.backend = backend

    def get(self, spec: Any) -> Backend:  # noqa: ARG002 - every step runs on the served model
        return self.backend

    def close(self) -> None:  # the server owns the backend
        pass


def _problem(exc: OpenAutoGLMError, line: int | None = None) -> dict[str, Any]:
    """A problem entry (line, field, message, hint) for a configuration error."""
    return {"line": getattr(exc, "line", None) or line, "field": getattr(exc, "field", None),
            "message": exc.message.split(": ", 1)[-1], "hint": exc.hint}


def field_line(text: str, config: PipelineConfig, field: str | None) -> int | None:
    """The YAML line of a build error's ``field`` (``steps.<step name>.call`` ...), if found."""
    if not field:
        return None
    parts = field.split(".")
    if parts[0] != "steps" or len(parts) < 2:
        return None
    index = next((i for i, s in enumerate(config.steps) if s.name == parts[1]), None)
    candidates = [("steps", index, *parts[2:])] if index is not None else []
    if len(parts) > 2 and parts[2] == "task":
        candidates.append(("task", *parts[3:]))
    for path in candidates:
        line = _yaml_line(text, path)
        if line is not None:
            return line
    return None


def _yaml_line(text: str, path: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest node along ``path`` (mapping keys / list indices) that exists."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if k.value == part), None)
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def task_yaml(name: str, labels: list[str], instruction: str, model: str | None = None,
              input_field: str = "text") -> str:
    """The YAML of a one-step classification pipeline built from the editor's form."""
    clean = [lab.strip() for lab in labels if lab.strip()]
    instruction = instruction.strip() or "Classify the text."
    if "{" + input_field + "}" not in instruction:
        instruction = f"{instruction}\n\nText: {{{input_field}}}"
    config: dict[str, Any] = {"name": name.strip() or "task"}
    if model:
        config["model"] = model
    config["task"] = {"name": name.strip() or "task", "template": instruction, "labels": clean}
    return yaml.dump(config, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100,
                     default_flow_style=None)


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (prompt templates) as ``|`` blocks, as people write them."""


def _str_block(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not value.endswith((" ", "\t")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_block)


class PipelineRegistry:
    """YAML pipelines in ``directory``; builds pipelines on ``backend`` (cached by text) under
    the untrusted-YAML policy: only ``allowed_calls`` may run, sub-pipelines only from ``directory``."""

    def __init__(self, directory: str | Path, backend: Backend, cache_size: int = 32,
                 allowed_calls: Iterable[str] = ()) -> None:
        self.directory = Path(directory)
        self.backend = backend
        self.policy = LoadPolicy.untrusted(self.directory, allowed_calls)
        self._pool = SharedPool(backend)
        self._cache: OrderedDict[str, Pipeline] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # -- files -------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        if not NAME_RE.match(name or ""):
            raise PipelineNotFound(
                f"invalid pipeline name {name!r}",
                hint="use letters, digits, '_', '-' or '.', starting with a letter or digit (max 64)",
            )
        return self.directory / f"{name}.yaml"

    def list(self) -> list[dict[str, Any]]:
        out = []
        if self.directory.is_dir():
            for path in sorted(self.directory.glob("*.y*ml")):
                if not NAME_RE.match(path.stem):
                    continue
                try:
                    text = path.read_text(encoding="utf-8")
                    found = self.problems(text, path.name)
                    config = parse_pipeline_yaml(text, source=path.name) if not found else None
                except (OSError, UnicodeDecodeError) as exc:
                    found = [{"line": None, "field": None, "hint": None,
                              "message": f"cannot read the file: {type(exc).__name__}"}]
                    config = None
                out.append({
                    "name": path.stem,
                    "path": str(path),
                    "valid": not found,
                    "problems": found,
                    "description": config.description if config else None,
                    "inputs": sorted(self.pipeline(text, path.name).required_inputs) if config else [],
                    "labels": _labels(config) if config else [],
                })
        return out

    def read(self, name: str) -> str:
        path = self._path(name)
        if not path.is_file():
            alt = path.with_suffix(".yml")
            if not alt.is_file():
                raise PipelineNotFound(f"no pipeline named {name!r} in {self.directory}",
                                       hint="GET /api/pipelines lists them")
            path = alt
        return path.read_text(encoding="utf-8")

    def save(self, name: str, text: str) -> Path:
        path = self._path(name)
        found = self.problems(text, f"{name}.yaml")
        if found:
            first = found[0]
            raise ConfigError(first["message"], source=f"{name}.yaml", line=first["line"], field=first["field"],
                              hint=first["hint"])
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        return path

    # -- pipelines ---------------------------------------------------------------------
    def config(self, text: str, source: str = "pipeline.yaml") -> PipelineConfig:
        return parse_pipeline_yaml(text, source=source)

    def build_config(self, config: PipelineConfig, **kwargs: Any) -> Pipeline:
        """``config`` as a pipeline on the served model, its references checked against the policy."""
        return Pipeline.from_config(config, model=self.backend, _pool=self._pool, policy=self.policy,
                                    base_dir=self.directory, **{"store": False, "cache": False, **kwargs})

    def problems(self, text: str, source: str = "pipeline.yaml") -> list[dict[str, Any]]:
        """Problems of a pipeline YAML text - its schema, then what building it finds (forbidden or
        missing callables and sub-pipelines, invalid templates): ``[]`` when it is valid."""
        try:
            config = self.config(text, source)
        except ConfigError as exc:
            return [_problem(exc)]
        try:
            self.pipeline(text, source)
        except (ConfigError, TemplateError) as exc:
            return [_problem(exc, field_line(text, config, getattr(exc, "field", None)))]
        return []

    def pipeline(self, text: str, source: str = "pipeline.yaml") -> Pipeline:
        """A store-less pipeline for ``text`` (reused while the text is unchanged)."""
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        with self._lock:
            pipe = self._cache.get(key)
            if pipe is not None:
                self._cache.move_to_end(key)
                return pipe
        pipe = self.build_config(self.config(text, source))
        with self._lock:
            self._cache[key] = pipe
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return pipe


def _labels(config: PipelineConfig) -> list[str]:
    final = config.output or config.steps[-1].name
    step = next((s for s in config.steps if s.name == final), None)
    if step is not None and step.task is not None and step.task.kind.distribution:
        return list(step.task.labels or [])
    return []


def final_labels(config: PipelineConfig) -> list[str]:
    """The labels of the pipeline's final step when it classifies, else ``[]``."""
    return _labels(config)


def missing_inputs(pipe: Pipeline, record: Mapping[str, Any]) -> list[str]:
    return sorted(f for f in pipe.required_inputs if f not in record)
