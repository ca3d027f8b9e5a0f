"""What a pipeline configuration may reach beyond its own data.

A pipeline's YAML can name Python callables (``call:`` steps, ``python`` verifiers) and
other YAML files (``pipeline:`` steps).  Whoever wrote the YAML decides what runs, so:

* library and CLI users run their own YAML: :class:`LoadPolicy` ``()`` trusts it (any
  importable callable, any sub-pipeline path);
* the server loads YAML that arrives over HTTP: ``LoadPolicy.untrusted(folder, allow)``
  allows only the callables its operator named at start-up (``--allow-call``) and only
  sub-pipelines inside its pipelines folder, and its errors never quote a file.

Every reference is checked when the pipeline is built, before any record runs (and before
any model is loaded: backends load on their first call).

Under the trusted policy a ``call:`` module is also looked up in the pipeline file's
folder, as ``python script.py`` looks beside the script: ``mypkg.routing:route`` next to
``pipeline.yaml`` imports without ``PYTHONPATH=.``.  The folder is on ``sys.path`` only
while the module is imported (the module and its package stay imported; a module that
imports a sibling of that folder lazily, inside a function, needs it installed or on
``PYTHONPATH``).  The untrusted policy never touches ``sys.path``.
"""

from __future__ import annotations

import importlib
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

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

    def import_callable(self, ref: str, *, source: str | None, field: str,
                        folder: str | Path | None = None) -> Callable[..., Any]:
        """Import ``"module:function"`` if this policy allows it; a trusted policy also looks in
        ``folder`` (the pipeline file's), put first on ``sys.path`` for the import only."""
        if self.allowed_calls is not None and ref not in self.allowed_calls:
            allowed = ", ".join(sorted(self.allowed_calls)) or "none"
            raise ConfigError(
                f"callable {ref!r} is not allowed here (allowed: {allowed})",
                source=source, field=field,
                hint=f"the operator can allow it when starting the server: --allow-call {ref}",
            )
        module_name, _, attr = ref.partition(":")
        where = folder if self.trusted and folder is not None else None
        try:
            with _on_path(where):
                func = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            place = f"the pipeline's folder ({where}), " if where is not None else ""
            raise ConfigError(
                f"cannot import {ref!r}: {exc}", source=source, field=field,
                hint=f"the module must be importable ({place}on PYTHONPATH or installed) and define the function",
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


_PATH_LOCK = threading.RLock()  # re-entrant: an imported module may build a pipeline itself


@contextmanager
def _on_path(folder: str | Path | None) -> Iterator[None]:
    """``folder`` first on ``sys.path`` while the block runs, then removed again (imports are
    serialised meanwhile, so two pipelines built in threads do not see each other's folder)."""
    if folder is None:
        yield
        return
    entry = str(Path(folder).resolve())
    with _PATH_LOCK:
        sys.path.insert(0, entry)
        try:
            yield
        finally:
            try:
                sys.path.remove(entry)  # the first occurrence: ours (unless the import moved it)
            except ValueError:
                pass
