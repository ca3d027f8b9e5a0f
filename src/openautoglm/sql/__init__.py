"""Text-to-SQL: ``SemanticParser`` with schema/value linking, example retrieval,
execution-guided correction, result voting, read-only safety and a Spider evaluator.

Heavy libraries (sqlglot, SQLAlchemy, the model) load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "SemanticParser": ".parser",
    "ParseResult": ".parser",
    "Conversation": ".parser",
    "Database": ".database",
    "QueryResult": ".database",
    "DatabaseError": ".database",
    "QueryTimeout": ".database",
    "check_select": ".safety",
    "transpile": ".safety",
    "UnsafeQueryError": ".safety",
    "ExamplePool": ".examples",
    "SpiderEvaluator": ".evaluator",
    "load_spider": ".evaluator",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'openautoglm.sql' has no attribute {name!r}")
    return getattr(import_module(module, __name__), name)
