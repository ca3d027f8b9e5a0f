"""Named plug-ins: reasoning strategies and output kinds, found by name like backends.

A registry maps names to classes.  Names come from two places:

* ``@REGISTRY.register("name")`` on a class (code that is imported: built-ins, your
  notebook);
* the package entry-point group (``openautoglm.strategies``, ``openautoglm.outputs``),
  loaded the first time a name is not already known, so start-up stays fast.  The
  built-in strategies are declared there too (``pyproject.toml``), exactly as a
  third-party package declares its own::

      [project.entry-points."openautoglm.strategies"]
      my_strategy = "my_package.strategy:MyStrategy"
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, TypeVar

from ..errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes of one kind of plug-in, by name."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, T] = {}
        self._entry_points: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: make ``cls`` available as ``name``."""

        def add(cls: T) -> T:
            with self._lock:
                self._items[name] = cls
            return cls

        return add

    def _discover(self) -> dict[str, Any]:
        if self._entry_points is None:
            from importlib.metadata import entry_points

            self._entry_points = {ep.name: ep for ep in entry_points(group=self.group)}
        return self._entry_points

    def get(self, name: str) -> T:
        """The class registered as ``name`` (``ConfigError`` naming the known ones if none)."""
        found = self._items.get(name)
        if found is not None:
            return found
        ep = self._discover().get(name)
        if ep is None:
            known = ", ".join(self.names()) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {known}",
                              hint=f"a package can add one through the entry-point group {self.group!r}")
        cls = ep.load()
        with self._lock:
            self._items.setdefault(name, cls)
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._discover()))
