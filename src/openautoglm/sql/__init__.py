"""Text-to-SQL: ``SemanticParser`` with schema/value linking, example retrieval,
execution-guided correction, result voting, read-only safety and a Spider evaluator.

Heavy libraries (sqlglot, SQLAlchemy, the model) load on first use.
"""

from __future__ import annotations

from .._lazy import lazy_attributes

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


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
