"""Constraints without a grammar engine: checking a JSON Schema's shape (naming the path of
what is wrong), telling whether an answer satisfies a :class:`~.base.Constraint`, and
producing a minimal answer that does.

The HTTP backend uses :func:`satisfies` to tell whether a server honoured a constraint or
ignored it, the OpenAI-compatible server uses :func:`check_json_schema` to refuse a schema
it cannot take with the path of the problem, and the fake backend uses
:func:`minimal_instance` / :func:`regex_example` to answer within a constraint.  None of it
compiles a grammar: that is the local backend's engine.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from .base import Constraint

#: JSON Schema type names
SCHEMA_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
#: deeper schemas are refused (a fuzzer's 10,000-level nesting must not exhaust the stack)
MAX_SCHEMA_DEPTH = 64
_ONE_SCHEMA = ("additionalProperties", "not", "contains", "propertyNames", "if", "then", "else",
               "additionalItems", "unevaluatedProperties", "unevaluatedItems")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


class SchemaProblem(ValueError):
    """A JSON Schema that cannot be used; ``path`` names where (``schema.properties.age.type``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


def check_json_schema(schema: Any, where: str = "schema") -> None:
    """Raise :class:`SchemaProblem` naming the path of the first part of ``schema`` that is not
    a JSON Schema (wrong types of keywords, unknown type names, ``$ref`` that does not
    resolve, patterns that do not compile, nesting deeper than :data:`MAX_SCHEMA_DEPTH`)."""
    if not isinstance(schema, dict):
        raise SchemaProblem(where, f"must be a JSON object, got {type(schema).__name__}")
    _walk(schema, where, schema, 0)


def _walk(node: Any, path: str, root: dict[str, Any], depth: int) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        raise SchemaProblem(path, f"nested deeper than {MAX_SCHEMA_DEPTH} levels")
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        raise SchemaProblem(path, f"must be a schema (an object or a boolean), got {type(node).__name__}")
    kind = node.get("type")
    if kind is not None:
        for name in kind if isinstance(kind, list) else [kind]:
            if not isinstance(name, str) or name not in SCHEMA_TYPES:
                raise SchemaProblem(f"{path}.type", f"{name!r} is not a JSON Schema type ({', '.join(sorted(SCHEMA_TYPES))})")
    required = node.get("required")
    if required is not None and not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
        raise SchemaProblem(f"{path}.required", "must be a list of property names")
    enum = node.get("enum")
    if enum is not None and not (isinstance(enum, list) and enum):
        raise SchemaProblem(f"{path}.enum", "must be a non-empty list")
    pattern = node.get("pattern")
    if pattern is not None:
        _check_pattern(pattern, f"{path}.pattern")
    ref = node.get("$ref")
    if ref is not None:
        if not isinstance(ref, str):
            raise SchemaProblem(f"{path}.$ref", "must be a string")
        if ref.startswith("#") and resolve_ref(ref, root) is None:
            raise SchemaProblem(f"{path}.$ref", f"{ref!r} does not resolve inside the schema")
    items = node.get("items")
    if isinstance(items, list):  # draft-4 tuple form
        for i, sub in enumerate(items):
            _walk(sub, f"{path}.items[{i}]", root, depth + 1)
    elif items is not None:
        _walk(items, f"{path}.items", root, depth + 1)
    for key in _ONE_SCHEMA:
        if key in node:
            _walk(node[key], f"{path}.{key}", root, depth + 1)
    for key in _SCHEMA_MAPS:
        if key in node:
            if not isinstance(node[key], dict):
                raise SchemaProblem(f"{path}.{key}", "must be an object of schemas")
            for name, sub in node[key].items():
                _walk(sub, f"{path}.{key}.{name}", root, depth + 1)
    for key in _SCHEMA_LISTS:
        if key in node:
            if not isinstance(node[key], list) or not node[key]:
                raise SchemaProblem(f"{path}.{key}", "must be a non-empty list of schemas")
            for i, sub in enumerate(node[key]):
                _walk(sub, f"{path}.{key}[{i}]", root, depth + 1)


def _check_pattern(pattern: Any, path: str) -> None:
    if not isinstance(pattern, str):
        raise SchemaProblem(path, "must be a string (a regular expression)")
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise SchemaProblem(path, f"is not a regular expression: {exc}") from None


def resolve_ref(ref: str, root: dict[str, Any]) -> Any:
    """The part of ``root`` a local ``$ref`` (``#/$defs/Person``) points at, or ``None``."""
    node: Any = root
    for part in ref.lstrip("#").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# --------------------------------------------------------------------------- answers


def satisfies(constraint: Constraint, text: str) -> bool | None:
    """Whether ``text`` is an answer ``constraint`` allows; ``None`` when that cannot be told
    here (a context-free grammar, or a pattern Python's ``re`` cannot compile).  JSON answers
    are checked for what an ignoring server gets wrong: valid JSON, the top-level type and
    the required properties (not every keyword of the schema)."""
    if constraint.kind == "choice":
        return text.strip() in {c.strip() for c in constraint.value}
    if constraint.kind == "regex":
        try:
            return re.fullmatch(constraint.value, text) is not None
        except (re.error, RecursionError, OverflowError):
            return None
    if constraint.kind == "json_schema":
        try:
            value = json.loads(text)
        except ValueError:
            return False
        return _roughly_conforms(value, constraint.value)
    return None


def _roughly_conforms(value: Any, schema: Any) -> bool:
    if not isinstance(schema, dict):
        return True
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds else []
    if kinds and not any(_has_type(value, k) for k in kinds):
        return False
    if isinstance(value, dict):
        return all(name in value for name in schema.get("required") or [] if isinstance(name, str))
    return True


def _has_type(value: Any, kind: Any) -> bool:
    if kind in ("integer", "number"):
        return isinstance(value, int if kind == "integer" else (int, float)) and not isinstance(value, bool)
    checks: dict[str, Any] = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    return isinstance(value, checks[kind]) if kind in checks else True


def minimal_instance(schema: Any, root: dict[str, Any] | None = None, depth: int = 0) -> Any:
    """A small value valid under ``schema`` (required properties only, the first enum value or
    alternative, lower bounds); raises ``ValueError`` for a schema it cannot satisfy simply."""
    root = root if root is not None else schema if isinstance(schema, dict) else {}
    if depth > MAX_SCHEMA_DEPTH:
        raise ValueError("schema nested too deeply")
    if schema is True or schema == {}:
        return None
    if not isinstance(schema, dict):
        raise ValueError("schema `false` admits no value")
    if "$ref" in schema:
        target = resolve_ref(str(schema["$ref"]), root)
        if target is None:
            raise ValueError(f"$ref {schema['$ref']!r} does not resolve")
        return minimal_instance(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return minimal_instance(schema[key][0], root, depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part if isinstance(part, dict) else {})
        return minimal_instance({**merged, **{k: v for k, v in schema.items() if k != "allOf"}}, root, depth + 1)
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), "null") if isinstance(kind, list) else kind
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "null"
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: minimal_instance(props.get(name, {}), root, depth + 1) for name in schema.get("required") or []}
    if kind == "array":
        return [minimal_instance(schema.get("items", {}), root, depth + 1)
                for _ in range(int(schema.get("minItems", 0)))]
    if kind == "string":
        if "pattern" in schema:
            return regex_example(str(schema["pattern"]), search=True)
        return "a" * int(schema.get("minLength", 0))
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = 0 if low is None else int(low) + (1 if "exclusiveMinimum" in schema and low is not None else 0)
        return value if kind == "integer" else float(value)
    if kind == "boolean":
        return False
    return None


def regex_example(pattern: str, search: bool = False) -> str:
    """A short string that ``pattern`` matches in full (``search``: that it is found in);
    ``ValueError`` for what this simple generator cannot handle (lookarounds, back-references)."""
    import re._parser as sre_parse  # the stdlib's own regex parser

    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    text = _emit(list(parsed), 0)
    matcher = re.search if search else re.fullmatch
    if matcher(pattern, text) is None:
        raise ValueError(f"cannot produce an example of the pattern {pattern!r}")
    return text


_CATEGORY_CHARS = {"CATEGORY_DIGIT": "0", "CATEGORY_SPACE": " ", "CATEGORY_WORD": "a",
                   "CATEGORY_NOT_DIGIT": "a", "CATEGORY_NOT_SPACE": "a", "CATEGORY_NOT_WORD": " "}


def _emit(items: Sequence[Any], depth: int) -> str:
    if depth > MAX_SCHEMA_DEPTH:
        raise ValueError("pattern nested too deeply")
    out = []
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "ANY":
            out.append("a")
        elif name == "IN":
            out.append(_first_in(arg))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, _high, sub = arg
            out.append(_emit(list(sub), depth + 1) * int(low))
        elif name == "SUBPATTERN":
            out.append(_emit(list(arg[-1]), depth + 1))
        elif name == "ATOMIC_GROUP":
            out.append(_emit(list(arg), depth + 1))
        elif name == "BRANCH":
            out.append(_emit(list(arg[1][0]), depth + 1))
        elif name == "AT":
            continue
        else:
            raise ValueError(f"cannot produce text for {name}")
    return "".join(out)


def _first_in(items: Sequence[Any]) -> str:
    if items and str(items[0][0]) == "NEGATE":
        for candidate in "a0 _-x":  # a character the negated set does not list
            if not re.fullmatch(_class_pattern(items[1:]), candidate):
                return candidate
        raise ValueError("cannot produce a character for a negated set")
    op, arg = items[0]
    name = str(op)
    if name == "LITERAL":
        return chr(arg)
    if name == "RANGE":
        return chr(arg[0])
    if name == "CATEGORY":
        return _CATEGORY_CHARS.get(str(arg), "a")
    raise ValueError(f"cannot produce a character for {name}")


def _class_pattern(items: Sequence[Any]) -> str:
    parts = []
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            parts.append(re.escape(chr(arg)))
        elif name == "RANGE":
            parts.append(f"{re.escape(chr(arg[0]))}-{re.escape(chr(arg[1]))}")
        elif name == "CATEGORY":
            parts.append({"CATEGORY_DIGIT": r"\d", "CATEGORY_SPACE": r"\s", "CATEGORY_WORD": r"\w",
                          "CATEGORY_NOT_DIGIT": r"\D", "CATEGORY_NOT_SPACE": r"\S",
                          "CATEGORY_NOT_WORD": r"\W"}.get(str(arg), ""))
    return "[" + "".join(parts) + "]" if parts else "[^\\s\\S]"


def gbnf_choice(options: Sequence[str]) -> str:
    """A llama.cpp (GBNF) grammar whose only sentences are ``options``."""
    def literal(text: str) -> str:
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        return f'"{escaped}"'

    return "root ::= " + " | ".join(literal(o) for o in options)
