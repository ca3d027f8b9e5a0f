"""Prompt templates.

Two syntaxes, chosen per template:

* Python-format style, as in ``"判断以下句子的情感倾向：{text}"`` – variables are
  ``{name}`` (``{{``/``}}`` for literal braces);
* Jinja2, when the template contains ``{% ... %}``, or ``{{ ... }}`` and no
  single-brace ``{name}`` placeholder – loops, filters, ``{{ classify.label }}`` to
  read an earlier step's output.  (A template with ``{name}`` placeholders is
  format style, so its ``{{``/``}}`` stay literal braces, e.g. in a JSON example.)

A variable missing from the record is an error that names it and lists what
the record has: a silently empty prompt would produce confident nonsense.
"""

from __future__ import annotations

import re
import string
from functools import cached_property
from typing import Any, Mapping

from ..errors import TemplateError

_JINJA_MARKERS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_JINJA_BLOCK = re.compile(r"\{%.*?%\}", re.S)
#: a single-brace ``{name}`` / ``{step.field}`` / ``{x[0]:.2f}`` placeholder (not part of ``{{``/``}}``)
_FORMAT_FIELD = re.compile(r"(?<!\{)\{[A-Za-z_]\w*(?:\.\w+|\[\w+\])*(?:![rsa])?(?::[^{}]*)?\}(?!\})")


def _looks_like_jinja(source: str) -> bool:
    """``{% ... %}`` always means Jinja; ``{{ ... }}`` only when there is no format-style
    ``{name}`` placeholder (there ``{{``/``}}`` are literal braces, e.g. a JSON example)."""
    if _JINJA_BLOCK.search(source):
        return True
    return bool(_JINJA_MARKERS.search(source)) and not _FORMAT_FIELD.search(source)


class Template:
    def __init__(self, source: str, *, where: str = "template") -> None:
        if not isinstance(source, str):
            raise TemplateError(f"{where}: expected a string template, got {type(source).__name__}")
        self.source = source
        self.where = where
        self.is_jinja = _looks_like_jinja(source)
        if not self.is_jinja:
            try:
                self._fields = [f for _, f, _, _ in string.Formatter().parse(source) if f is not None]
            except ValueError as exc:
                raise TemplateError(
                    f"{where}: cannot parse template {source!r}: {exc}",
                    hint="write literal braces as {{ and }}, variables as {name}",
                ) from exc

    @cached_property
    def _jinja(self):  # type: ignore[no-untyped-def]
        from jinja2 import StrictUndefined
        from jinja2.sandbox import SandboxedEnvironment

        env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
        try:
            return env.from_string(self.source)
        except Exception as exc:  # jinja2.TemplateSyntaxError
            raise TemplateError(f"{self.where}: invalid Jinja2 template: {exc}") from exc

    @cached_property
    def variables(self) -> set[str]:
        """Top-level names the template reads."""
        if self.is_jinja:
            from jinja2 import meta
            from jinja2.sandbox import SandboxedEnvironment

            try:
                ast = SandboxedEnvironment().parse(self.source)
            except Exception as exc:  # jinja2.TemplateSyntaxError
                raise TemplateError(
                    f"{self.where}: invalid Jinja2 template: {exc}",
                    hint="in a {name}-style template write literal braces as {{ and }}",
                ) from None
            return set(meta.find_undeclared_variables(ast))
        names = set()
        for field in self._fields:
            if field == "":
                raise TemplateError(
                    f"{self.where}: positional placeholder '{{}}' in {self.source!r}",
                    hint="name the variable, e.g. {text}",
                )
            names.add(re.split(r"[.\[!:]", field, maxsplit=1)[0])
        return names

    def render(self, context: Mapping[str, Any]) -> str:
        missing = sorted(v for v in self.variables if v not in context)
        if missing:
            have = ", ".join(sorted(str(k) for k in context)) or "(nothing)"
            raise TemplateError(
                f"{self.where}: missing variable {', '.join(repr(m) for m in missing)}; the record has: {have}",
                hint="add the column/field to the input, or map it with the step's `inputs:`",
            )
        if self.is_jinja:
            try:
                return self._jinja.render(**context)
            except Exception as exc:
                raise TemplateError(f"{self.where}: rendering failed: {exc}") from exc
        return self.source.format_map(_AttrDict(context))


class _AttrDict(dict):
    """Lets ``{step.field}`` read dict values with attribute syntax in format templates."""

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        return _wrap(value)


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return _Namespace(value)
    return value


class _Namespace:
    def __init__(self, data: dict) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        try:
            return _wrap(self._data[name])
        except KeyError:
            raise TemplateError(f"no field {name!r}; available: {', '.join(self._data)}") from None

    def __getitem__(self, name: str) -> Any:
        return _wrap(self._data[name])

    def __format__(self, spec: str) -> str:
        return format(str(self._data), spec)
