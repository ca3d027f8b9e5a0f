"""Structured outputs: one schema language (Pydantic / JSON Schema), parse and validate.

``OutputSchema`` wraps either a Pydantic model class or a JSON-schema dict.  Pydantic
models validate with Pydantic; dict schemas are validated for the subset that
extraction tasks use (type, properties, required, enum, items, additionalProperties)
and the error messages are short, model-readable and never contain tracebacks.
"""

from __future__ import annotations

import json
import re
from typing import Any

_TYPES = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
    "null": type(None),
}


class OutputSchema:
    def __init__(self, schema: Any) -> None:
        self.model: Any = None
        if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
            self.model = schema
            self.json_schema: dict[str, Any] = schema.model_json_schema()
        elif isinstance(schema, dict):
            self.json_schema = schema
        else:
            raise TypeError("schema must be a pydantic model class or a JSON-schema dict")

    def describe(self) -> str:
        """Compact schema text for the prompt."""
        return json.dumps(self.json_schema, ensure_ascii=False)

    def example_keys(self) -> list[str]:
        return list(self.json_schema.get("properties", {}))

    def validate(self, data: Any) -> tuple[Any, list[str]]:
        """Return (value, errors).  ``value`` is a model instance for Pydantic schemas."""
        if self.model is not None:
            from pydantic import ValidationError

            try:
                return self.model.model_validate(data), []
            except ValidationError as exc:
                return None, [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()]
        errors: list[str] = []
        _check(data, self.json_schema, "(root)", errors, self.json_schema)
        return (data if not errors else None), errors


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part, {})
        return node
    return schema


def _check(value: Any, schema: dict[str, Any], path: str, errors: list[str], root: dict[str, Any]) -> None:
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        for option in schema["anyOf"]:
            sub: list[str] = []
            _check(value, option, path, sub, root)
            if not sub:
                return
        errors.append(f"{path}: does not match any allowed type")
        return
    expected = schema.get("type")
    if expected:
        types = expected if isinstance(expected, list) else [expected]
        ok = any(
            isinstance(value, _TYPES.get(t, object)) and not (t in ("integer", "number") and isinstance(value, bool))
            for t in types
        )
        if not ok:
            errors.append(f"{path}: expected {' or '.join(types)}, got {type(value).__name__}")
            return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: must be one of {schema['enum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}.{key}: required field missing")
        for key, sub_value in value.items():
            if key in props:
                _check(sub_value, props[key], f"{path}.{key}", errors, root)
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}.{key}: unexpected field")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _check(item, schema["items"], f"{path}[{i}]", errors, root)


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def extract_json(text: str) -> tuple[Any, str | None]:
    """Find the first JSON object/array in ``text``; return (value, error)."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        for i, ch in enumerate(candidate):
            if ch in "{[":
                try:
                    value, _ = decoder.raw_decode(candidate[i:])
                    return value, None
                except json.JSONDecodeError:
                    continue
    snippet = text.strip().replace("\n", " ")[:80]
    return None, f"no valid JSON object found in the answer (starts: {snippet!r})"
