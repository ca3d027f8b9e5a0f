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

Templates may come from untrusted hands (YAML posted to the server), so rendering is
data, never code: Jinja2 runs sandboxed, format-style fields may read only record
fields (never ``{x.__class__}``-style attributes), and every render is capped in output
size (``max_chars``) and, for Jinja2, in loop iterations and time.  A record whose
prompt would exceed the cap fails alone with a :class:`TemplateError`.
"""

from __future__ import annotations

import re
import string
import time
from functools import cached_property
from typing import Any, Iterable, Iterator, Mapping

from ..errors import TemplateError

#: the longest prompt a template may render (characters; ~250k tokens, beyond any model's context)
MAX_PROMPT_CHARS = 1_000_000
#: Jinja2 rendering limits: wall-clock seconds, and loop iterations in all loops together
MAX_RENDER_SECONDS = 2.0
MAX_LOOP_ITERATIONS = 100_000
#: the widest format-spec field (``{x:>99999999}`` would build a huge string)
MAX_FORMAT_WIDTH = 10_000
_BUDGET_KEY = "__openautoglm_render_budget__"
_LOOP_GUARD = "__openautoglm_loop__"

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
                parts = list(string.Formatter().parse(source))
                self._fields = [f for _, f, _, _ in parts if f is not None]
                # only bare names, no conversion or spec: str.format_map is then as safe as our
                # reader (it reads no attribute) and renders at C speed
                self._plain = all(f is None or (f.isidentifier() and not spec and not conv)
                                  for _, f, spec, conv in parts)
            except ValueError as exc:
                raise TemplateError(
                    f"{where}: cannot parse template {source!r}: {exc}",
                    hint="write literal braces as {{ and }}, variables as {name}",
                ) from exc

    @cached_property
    def _jinja(self):  # type: ignore[no-untyped-def]
        from jinja2 import StrictUndefined

        env = _limited_environment()(undefined=StrictUndefined, keep_trailing_newline=True)
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

    def render(self, context: Mapping[str, Any], *, max_chars: int = MAX_PROMPT_CHARS) -> str:
        """The template filled in from ``context``; a :class:`TemplateError` names what is
        missing or which limit the rendering hit."""
        missing = [] if self.variables <= context.keys() else sorted(v for v in self.variables if v not in context)
        if missing:
            have = ", ".join(sorted(str(k) for k in context)) or "(nothing)"
            raise TemplateError(
                f"{self.where}: missing variable {', '.join(repr(m) for m in missing)}; the record has: {have}",
                hint="add the column/field to the input, or map it with the step's `inputs:`",
            )
        if self.is_jinja:
            return self._render_jinja(context, max_chars)
        if self._plain:
            text = self.source.format_map(context)
            if len(text) > max_chars:
                _RenderBudget(self.where, max_chars).check_size(len(text))
            return text
        return _render_format(self.source, context, max_chars, self.where)

    def _render_jinja(self, context: Mapping[str, Any], max_chars: int) -> str:
        budget = _RenderBudget(self.where, max_chars)
        parts: list[str] = []
        size = 0
        try:
            for part in self._jinja.generate(**context, **{_BUDGET_KEY: budget, _LOOP_GUARD: budget.loop}):
                size += len(part)
                budget.check_size(size)
                budget.tick()
                parts.append(part)
        except TemplateError:
            raise
        except RecursionError:
            raise TemplateError(f"{self.where}: rendering failed: recursion too deep",
                                hint="a macro calls itself without end") from None
        except Exception as exc:  # noqa: BLE001 - jinja2 errors, StrictUndefined, sandbox refusals
            raise TemplateError(f"{self.where}: rendering failed: {type(exc).__name__}: {exc}") from None
        return "".join(parts)


class _RenderBudget:
    """Limits of one render: output size, loop iterations, wall-clock time."""

    def __init__(self, where: str, max_chars: int) -> None:
        self.where = where
        self.max_chars = max_chars
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.iterations = 0

    def check_size(self, size: int) -> None:
        if size > self.max_chars:
            raise TemplateError(
                f"{self.where}: the prompt would be over {self.max_chars:,} characters",
                hint="the input is too long for a prompt: shorten it (or split it) before running",
            )

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateError(f"{self.where}: rendering took over {MAX_RENDER_SECONDS:g} s",
                                hint="simplify the template's loops")

    def loop(self, items: Iterable[Any]) -> Iterator[Any]:
        for item in items:
            self.iterations += 1
            if self.iterations > MAX_LOOP_ITERATIONS:
                raise TemplateError(f"{self.where}: loops ran over {MAX_LOOP_ITERATIONS:,} iterations",
                                    hint="simplify the template's loops")
            if self.iterations % 64 == 0:
                self.tick()
            yield item


def _limited_environment() -> type:
    """A sandboxed Jinja2 environment whose loops, calls and size-changing operators are
    metered by the render's :class:`_RenderBudget` (found in the render context)."""
    from jinja2 import nodes
    from jinja2.sandbox import SandboxedEnvironment

    class LimitedEnvironment(SandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "+"})

        def _parse(self, source: str, name: str | None, filename: str | None) -> Any:
            tree = super()._parse(source, name, filename)
            for loop in tree.find_all(nodes.For):  # every loop's iterable goes through the budget
                loop.iter = nodes.Call(nodes.Name(_LOOP_GUARD, "load"), [loop.iter], [], None, None,
                                       lineno=loop.lineno)
            return tree

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            budget = context.get(_BUDGET_KEY)
            if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64 and abs(left) > 1:
                raise TemplateError(f"{budget.where if budget else 'template'}: exponent {right} is too large")
            if operator == "*" and isinstance(left, (int, float)) and isinstance(right, (str, list, tuple)):
                left, right = right, left
            if operator == "*" and isinstance(left, (str, list, tuple)) and isinstance(right, int):
                if budget is not None:
                    budget.check_size(len(left) * right)
            result = super().call_binop(context, operator, left, right)
            if operator == "+" and budget is not None and isinstance(result, (str, list, tuple)):
                budget.check_size(len(result))
            return result

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            budget = __context.get(_BUDGET_KEY)
            if budget is not None:
                budget.tick()
            return super().call(__context, __obj, *args, **kwargs)

    return LimitedEnvironment


def _render_format(source: str, context: Mapping[str, Any], max_chars: int, where: str) -> str:
    """``source.format_map(context)`` that reads only record fields (``{a.b}`` / ``{a[0]}`` into
    dicts and lists, never attributes of other objects) and caps field widths and the output."""
    out: list[str] = []
    size = 0
    formatter = string.Formatter()
    for literal, field, spec, conversion in formatter.parse(source):
        out.append(literal)
        size += len(literal)
        if field is not None:
            value = _field_value(context, field, where)
            if conversion:
                value = formatter.convert_field(value, conversion)
            spec = _checked_spec(formatter, spec or "", context, where)
            text = format(str(value) if isinstance(value, (Mapping, list, tuple)) else value, spec)
            out.append(text)
            size += len(text)
        if size > max_chars:
            _RenderBudget(where, max_chars).check_size(size)
    return "".join(out)


def _checked_spec(formatter: string.Formatter, spec: str, context: Mapping[str, Any], where: str) -> str:
    if not spec:
        return spec
    if "{" in spec:  # nested fields, e.g. {x:{width}}
        spec = _render_format(spec, context, MAX_FORMAT_WIDTH, where)
    for number in re.findall(r"\d+", spec):
        if int(number) > MAX_FORMAT_WIDTH:
            raise TemplateError(f"{where}: format spec {spec!r} asks for a field wider than {MAX_FORMAT_WIDTH}",
                                hint="use a smaller width or precision")
    return spec


def _field_value(context: Mapping[str, Any], field: str, where: str) -> Any:
    """The value of a format field such as ``text``, ``step.label`` or ``items[0]``."""
    from _string import formatter_field_name_split  # the parser str.format itself uses

    first, rest = formatter_field_name_split(field)
    value: Any = context[first] if first in context else context[str(first)]
    for is_attr, key in rest:
        if isinstance(key, str) and key.startswith("_"):
            raise TemplateError(f"{where}: field {field!r} reads a private name",
                                hint="templates may read record fields only")
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif not is_attr and isinstance(value, (list, tuple)) and isinstance(key, int) and -len(value) <= key < len(value):
            value = value[key]
        else:
            available = ", ".join(map(str, value)) if isinstance(value, Mapping) else type(value).__name__
            raise TemplateError(f"{where}: no field {key!r} in {field!r}; available: {available}",
                                hint="templates may read record fields (and fields of earlier steps' outputs)")
    return value
