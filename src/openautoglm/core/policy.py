"""What a pipeline configuration may reach beyond its own data.

A pipeline's YAML can name Python callables (``call:`` steps, ``python`` verifiers) and
other YAML files (``pipeline:`` steps).  Whoever wrote the YAML decides what runs, so:

* library and CLI users run their own YAML: :class:`LoadPolicy` ``()`` trusts it (any
  importable callable, any sub-pipeline path);
* the server loads YAML that arrives over HTTP: ``LoadPolicy.untrusted(folder, allow)``
  allows only the callables its operator named at start-up (``--allow-call``) and only
  sub-pipelines inside its pipelines folder, and its errors never quote a file.

Every reference is checked when the pipeline is built, before any record runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import ConfigError

#: largest sub-pipeline file read (a pipeline is a few KB; a bigger file is not one)
MAX_PIPELINE_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class LoadPolicy:
    """``allowed_calls``: ``"module:function"`` names that may run (``None``: any);
    ``pipelines_root``: the folder sub-pipelines must resolve inside (``None``: anywhere);
    ``max_depth``: how deeply sub-pipelines may nest."""

    allowed_calls: frozenset[str] | None = None
    pipelines_root: Path | None = None
    max_depth: int = 8

    @classmethod
    def untrusted(cls, pipelines_root: str | Path, allowed_calls: Iterable[str] = ()) -> "LoadPolicy":
        """The policy for YAML from untrusted hands: nothing runs unless the operator allowed it."""
        return cls(allowed_calls=frozenset(allowed_calls), pipelines_root=Path(pipelines_root).resolve())

    @property
    def trusted(self) -> bool:
        return self.allowed_calls is None and self.pipelines_root is None

    def import_callable(self, ref: str, *, source: str | None, field: str) -> Callable[..., Any]:
        """Import ``"module:function"`` if this policy allows it."""
        if self.allowed_calls is not None and ref not in self.allowed_calls:
            allowed = ", ".join(sorted(self.allowed_calls)) or "none"
            raise ConfigError(
                f"callable {ref!r} is not allowed here (allowed: {allowed})",
                source=source, field=field,
                hint=f"the operator can allow it when starting the server: --allow-call {ref}",
            )
        module_name, _, attr = ref.partition(":")
        try:
            func = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"cannot import {ref!r}: {exc}", source=source, field=field,
                hint="the module must be importable (on PYTHONPATH or installed) and define the function",
            ) from None
        if not callable(func):
            raise ConfigError(f"{ref!r} is not callable", source=source, field=field)
        return func

    def resolve_pipeline(self, base_dir: Path, ref: str, *, source: str | None, field: str) -> Path:
        """The file a ``pipeline:`` reference names, checked against ``pipelines_root``."""
        root = self.pipelines_root
        if root is None:
            return (base_dir / ref).resolve()
        base = base_dir.resolve()
        if not base.is_relative_to(root):
            base = root
        path = (base / ref).resolve()
        if not path.is_relative_to(root) or path.suffix.lower() not in (".yaml", ".yml"):
            raise ConfigError(
                f"sub-pipeline {ref!r} is outside the pipelines folder or not a .yaml file",
                source=source, field=field,
                hint="name a pipeline file of the server's pipelines folder, e.g. `pipeline: other.yaml`",
            )
        if not path.is_file():
            raise ConfigError(f"sub-pipeline {ref!r} not found in the pipelines folder", source=source, field=field,
                              hint="save it first (PUT /api/pipelines/NAME) or fix the name")
        if path.stat().st_size > MAX_PIPELINE_FILE_BYTES:
            raise ConfigError(f"sub-pipeline {ref!r} is larger than {MAX_PIPELINE_FILE_BYTES} bytes",
                              source=source, field=field)
        return path
