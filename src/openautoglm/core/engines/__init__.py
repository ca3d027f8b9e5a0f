"""Execution engines for batch runs: where ``Pipeline.process`` runs on each chunk.

* ``inprocess`` (the default): in this process, one chunk at a time.
* ``ray``: on a pool of Ray actors, each holding its own backend (the model loaded once
  per actor), local or on a cluster (``address``); see :mod:`.ray_engine`.

Both share one driver (:mod:`.driver`): what to skip, committing each chunk, the output
file and the summary; only the driver writes the store.  Ray is imported only when the
Ray engine runs, so ``import openautoglm`` never imports it.  Work that is not a pipeline
(the data toolkit's per-row steps) runs on Ray through the ordered chunk map of
:mod:`.ray_map`; inputs stream from :mod:`.sources`.

:func:`engine_scope` sets the engine for every batch run started inside it (the CLI's
``--engine`` for ``eval``, ``distill`` and ``data llm-label``, which call ``run_batch``
deep inside their subsystems).
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from ...errors import ConfigError, OpenAutoGLMError

ENGINES = ("inprocess", "ray")
RAY_INSTALL_HINT = "pip install 'openautoglm[ray]'"


class EngineUnavailable(OpenAutoGLMError):
    """The chosen engine cannot run here (not installed, cluster unreachable)."""


@dataclass(frozen=True)
class EngineConfig:
    """Which engine runs batch work, and its options (``address``, ``workers``, ...)."""

    name: str = "inprocess"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_engine(self.name)


def check_engine(name: str) -> str:
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}", source="--engine", hint=f"use one of: {', '.join(ENGINES)}")
    return name


_CURRENT: contextvars.ContextVar[EngineConfig | None] = contextvars.ContextVar("openautoglm_engine", default=None)


@contextmanager
def engine_scope(name: str = "inprocess", **options: Any) -> Iterator[EngineConfig]:
    """Run the batch runs started inside the ``with`` block on engine ``name`` (options as
    for ``run_batch``: ``address``, ``workers``, ``worker_cpus``)."""
    config = EngineConfig(name, {k: v for k, v in options.items() if v is not None})
    token = _CURRENT.set(config)
    try:
        yield config
    finally:
        _CURRENT.reset(token)


def current_engine() -> EngineConfig:
    """The engine of the innermost :func:`engine_scope`, else in-process."""
    return _CURRENT.get() or EngineConfig()
