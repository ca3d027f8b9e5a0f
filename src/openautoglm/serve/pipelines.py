"""Pipelines the server knows: YAML files in a folder, validation with line numbers, and
:class:`~openautoglm.core.pipeline.Pipeline` objects bound to the server's one model.

The server runs every pipeline on the model it serves (as ``openautoglm run --model``
does), so one copy of the model is loaded and all requests share its micro-batcher.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..backends.base import Backend
from ..core.config import PipelineConfig, parse_pipeline_yaml
from ..core.pipeline import BackendPool, Pipeline
from ..errors import ConfigError, OpenAutoGLMError

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


def problems(text: str, source: str = "pipeline.yaml") -> list[dict[str, Any]]:
    """Validation problems of a pipeline YAML text: ``[]`` when it is valid."""
    try:
        parse_pipeline_yaml(text, source=source)
    except ConfigError as exc:
        return [{"line": exc.line, "field": exc.field, "message": exc.message.split(": ", 1)[-1],
                 "hint": exc.hint}]
    return []


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
    """YAML pipelines in ``directory``; builds pipelines on ``backend`` (cached by text)."""

    def __init__(self, directory: str | Path, backend: Backend, cache_size: int = 32) -> None:
        self.directory = Path(directory)
        self.backend = backend
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
                    found = problems(text, path.name)
                    config = parse_pipeline_yaml(text, source=path.name) if not found else None
                except (OSError, UnicodeDecodeError) as exc:
                    found, config = [{"line": None, "field": None, "message": str(exc), "hint": None}], None
                out.append({
                    "name": path.stem,
                    "path": str(path),
                    "valid": not found,
                    "problems": found,
                    "description": config.description if config else None,
                    "inputs": sorted(self.build_config(config).required_inputs) if config else [],
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
        found = problems(text, f"{name}.yaml")
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
        return Pipeline.from_config(config, model=self.backend, _pool=self._pool,
                                    **{"store": False, "cache": False, **kwargs})

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
    if step is not None and step.task is not None and step.task.output == "labels":
        return list(step.task.labels or [])
    return []


def final_labels(config: PipelineConfig) -> list[str]:
    """The labels of the pipeline's final step when it classifies, else ``[]``."""
    return _labels(config)


def missing_inputs(pipe: Pipeline, record: Mapping[str, Any]) -> list[str]:
    return sorted(f for f in pipe.required_inputs if f not in record)
