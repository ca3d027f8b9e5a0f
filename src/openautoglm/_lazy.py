"""Lazy attributes for packages: ``import openautoglm.x`` stays cheap, names load on first use."""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType
from typing import Any, Callable, Mapping


class _PackageKeepingItsNames(ModuleType):
    """A package whose public names win over its same-named submodules.

    Importing ``pkg.profile`` makes Python set ``pkg.profile = <module>``, which would shadow the
    function ``pkg.profile`` (so ``from pkg import profile`` depended on what was imported
    before).  Names listed in the package's lazy table are never replaced by a submodule.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        table = self.__dict__.get("_lazy_table", {})
        if isinstance(value, ModuleType) and name in table and value.__name__ == f"{self.__name__}.{name}":
            return  # the submodule stays reachable through sys.modules and `import pkg.name`
        super().__setattr__(name, value)


def lazy_attributes(package: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, loading ``name`` from ``table[name]`` (a module path).

    A loaded value is cached in the package's namespace, so later lookups are plain attribute reads.
    """
    module_object = sys.modules[package]
    namespace = module_object.__dict__
    namespace["_lazy_table"] = dict(table)
    module_object.__class__ = _PackageKeepingItsNames
    for name, source in table.items():  # a submodule imported before this line already shadows its name
        if isinstance(namespace.get(name), ModuleType) and source == f"{package}.{name}":
            del namespace[name]

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(namespace.get("__all__", table))

    return __getattr__, __dir__
