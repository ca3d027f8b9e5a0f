"""Constrained decoding for the local backend, on llguidance.

:class:`Guide` is built once per backend: the llguidance tokenizer (from the model's
``tokenizer.json``, ~0.3 s), a cache of compiled constraints (one matcher per
:class:`~.base.Constraint`, copied for each row), and a small thread pool for masks.
:class:`RowGuide` follows one decode batch: each constrained row has its own matcher,
its mask is applied to that row's logits only (unconstrained rows are untouched), every
chosen token advances it.  A row whose grammar admits no next token (a dead end) stops
with ``finish_reason == "error"`` and a message in ``Completion.error``; the backend's
``generate_each`` turns that into the request's own failure.

Tokens the grammar forces (exactly one allowed token) are not sampled; they still take a
decode step (the cache needs them) and are counted in ``Completion.forced_tokens``.
``completion_tokens`` counts every output token, forced or not.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

from ..errors import BackendError
from .base import Completion, Constraint

#: compiled constraints kept per backend (least recently used dropped first)
COMPILE_CACHE_SIZE = 64
#: JSON is generated as ``json.dumps`` writes it: one space after ``,`` and ``:``, no other
#: whitespace (flexible whitespace let a small model emit newlines until max_tokens)
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
#: the method a constrained completion reports (``Completion.constraint_method``)
METHOD = "llguidance"
_CHILD_MAPS = ("$defs", "definitions", "properties", "patternProperties", "dependentSchemas")
_CHILD_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_CHILD_ONE = ("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else")


def available() -> bool:
    """Whether llguidance is installed (the ``[local]`` extra)."""
    from importlib.util import find_spec

    return find_spec("llguidance") is not None


def grammar_text(constraint: Constraint) -> str:
    """The llguidance grammar of ``constraint`` (not yet checked)."""
    from llguidance import LLMatcher

    if constraint.kind == "json_schema":
        return LLMatcher.grammar_from_json_schema(constraint.value, defaults=JSON_OPTIONS)  # type: ignore[arg-type]
    if constraint.kind == "regex":
        return LLMatcher.grammar_from_regex(constraint.value)
    if constraint.kind == "choice":
        if not constraint.value:
            raise BackendError("a choice constraint needs at least one option")
        return LLMatcher.grammar_from_lark("start: " + " | ".join(json.dumps(o) for o in constraint.value))
    return LLMatcher.grammar_from_lark(constraint.value)


class Guide:
    """llguidance for one model: its tokenizer, compiled constraints, batch masks."""

    def __init__(self, tokenizer_json: Path, eos_ids: Sequence[int], vocab_size: int) -> None:
        from llguidance import LLExecutor, LLTokenizer

        self.tokenizer = LLTokenizer(Path(tokenizer_json).read_text(encoding="utf-8"), n_vocab=vocab_size,
                                     eos_token=sorted(eos_ids))
        self.vocab_size = vocab_size
        self.executor = LLExecutor(num_threads=min(4, os.cpu_count() or 1))  # masks of a batch's rows
        self._compiled: OrderedDict[Constraint, Any] = OrderedDict()
        self._lock = threading.Lock()

    def compile(self, constraint: Constraint) -> Any:
        """A fresh matcher at the start of ``constraint``; :class:`BackendError` (naming the
        schema path for a JSON schema) when llguidance cannot compile it."""
        with self._lock:
            template = self._compiled.get(constraint)
            if template is not None:
                self._compiled.move_to_end(constraint)
                return template.deep_copy()
        template = self._build(constraint)
        with self._lock:
            self._compiled[constraint] = template
            while len(self._compiled) > COMPILE_CACHE_SIZE:
                self._compiled.popitem(last=False)
        return template.deep_copy()

    def _build(self, constraint: Constraint) -> Any:
        from llguidance import LLMatcher

        if constraint.kind == "json_schema":
            check_schema(constraint.value)
        try:
            text = grammar_text(constraint)
        except ValueError as exc:
            raise BackendError(f"the {constraint.kind} constraint cannot be compiled: {exc}") from None
        matcher = LLMatcher(self.tokenizer, text, log_level=0)
        if matcher.is_error():
            raise compile_error(constraint, matcher.get_error(), self)
        return matcher

    def rows(self, constraints: Sequence[Constraint | None]) -> "RowGuide | None":
        """Matchers for a decode batch's rows (``None`` where a row is unconstrained), or
        ``None`` when no row is."""
        if all(c is None for c in constraints):
            return None
        return RowGuide(self, [self.compile(c) if c is not None else None for c in constraints])

    def fails(self, schema: Any) -> str | None:
        """llguidance's error for a JSON schema, or ``None`` when it compiles."""
        from llguidance import LLMatcher

        try:
            grammar = LLMatcher.grammar_from_json_schema(schema, defaults=JSON_OPTIONS)  # type: ignore[arg-type]
        except ValueError as exc:
            return str(exc)
        return LLMatcher.validate_grammar(grammar, self.tokenizer) or None


class RowGuide:
    """The matchers of one decode batch, indexed by row id."""

    def __init__(self, guide: Guide, matchers: list[Any]) -> None:
        self.guide = guide
        self.matchers = matchers
        self.errors: dict[int, str] = {}
        self.forced = [0] * len(matchers)
        self._single: set[int] = set()

    def mask(self, logits: Any, active: Sequence[int]) -> Any:
        """``logits [len(active), V]`` with each constrained row's disallowed tokens at -inf.
        A row left with no allowed token is recorded in :attr:`errors` (its logits are left
        finite so sampling stays defined; the caller stops it)."""
        import numpy as np
        import torch
        from llguidance.numpy import fill_next_token_bitmask_par

        todo = [(j, row) for j, row in enumerate(active) if self.matchers[row] is not None and row not in self.errors]
        if not todo:
            return logits
        bits = np.full((len(todo), (self.guide.vocab_size + 31) // 32), -1, dtype=np.int32)
        fill_next_token_bitmask_par(self.guide.executor, [(self.matchers[row], k) for k, (_, row) in enumerate(todo)],
                                    bits)
        unpacked = np.unpackbits(bits.view(np.uint8), axis=1, bitorder="little")[:, : logits.shape[-1]]
        allowed = torch.from_numpy(unpacked.view(np.bool_)).to(logits.device)
        counts = allowed.sum(dim=-1).tolist()
        everyone = len(todo) == len(active)
        sub = logits.clone() if everyone else logits.index_select(0, torch.tensor([j for j, _ in todo]))
        sub.masked_fill_(~allowed, float("-inf"))
        self._single = set()
        for k, (_, row) in enumerate(todo):
            matcher = self.matchers[row]
            if matcher.is_error() or counts[k] == 0 or (counts[k] == 1 and self._eos_only(allowed[k])
                                                          and not matcher.is_accepting()):
                self.errors[row] = _dead_end(matcher)
                sub[k] = 0.0
            elif counts[k] == 1:
                self._single.add(row)
        if everyone:
            return sub
        logits = logits.clone()
        logits[torch.tensor([j for j, _ in todo])] = sub
        return logits

    def _eos_only(self, allowed: Any) -> bool:
        return any(bool(allowed[e]) for e in self.guide.tokenizer.eos_tokens if e < allowed.shape[0])

    def advance(self, row: int, token: int) -> None:
        """Feed the token chosen for ``row`` to its matcher (a no-op for unconstrained rows)."""
        matcher = self.matchers[row]
        if matcher is None:
            return
        if row in self._single:
            self.forced[row] += 1
        if not matcher.consume_token(token):
            self.errors[row] = _dead_end(matcher)

    def failed(self, row: int) -> bool:
        return row in self.errors


def _dead_end(matcher: Any) -> str:
    detail = matcher.get_error().splitlines()[0][:200] if matcher.is_error() else ""
    return "the constraint admits no next token (a dead end in the grammar)" + (f": {detail}" if detail else "")


def check_schema(schema: Any) -> None:
    """Refuse a schema that is not one (naming the path), before llguidance sees it."""
    from .structured import SchemaProblem, check_json_schema

    try:
        check_json_schema(schema)
    except SchemaProblem as exc:
        raise BackendError(f"JSON schema problem at {exc.path}: {exc.problem}",
                           hint="fix that part of the schema") from None


def compile_error(constraint: Constraint, message: str, guide: Guide) -> BackendError:
    """The error for a constraint llguidance refused; for a JSON schema it names the deepest
    part of the schema that does not compile on its own (``schema.properties.tags``)."""
    first = message.strip().splitlines()[0][:300] if message.strip() else "unknown error"
    if constraint.kind != "json_schema":
        return BackendError(f"the {constraint.kind} constraint cannot be compiled: {first}",
                            hint="see llguidance's syntax: https://github.com/guidance-ai/llguidance/blob/main/docs/syntax.md")
    path = failing_path(constraint.value, guide)
    return BackendError(f"JSON schema cannot be used for constrained decoding at {path}: {first}",
                        hint="remove or rewrite that part of the schema (e.g. keywords the decoder does not "
                             "implement), or use a backend that validates and re-asks")


def failing_path(schema: Any, guide: Guide) -> str:
    """The deepest sub-schema of ``schema`` that fails to compile alone (with the root's
    definitions, so references still resolve), as a path: ``schema.properties.tags``."""
    defs = {k: schema[k] for k in ("$defs", "definitions") if isinstance(schema, dict) and k in schema}
    return _deepest(schema, defs, guide, "schema", 0)


def _deepest(node: Any, defs: dict[str, Any], guide: Guide, path: str, depth: int) -> str:
    if not isinstance(node, dict) or depth > 32:
        return path
    for sub_path, sub in _children(node, path):
        if isinstance(sub, dict) and guide.fails({**defs, **sub}) is not None:
            return _deepest(sub, defs, guide, sub_path, depth + 1)
    return path


def _children(node: dict[str, Any], path: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key in _CHILD_MAPS:
        if isinstance(node.get(key), dict):
            out += [(f"{path}.{key}.{name}", sub) for name, sub in node[key].items()]
    for key in _CHILD_LISTS:
        if isinstance(node.get(key), list):
            out += [(f"{path}.{key}[{i}]", sub) for i, sub in enumerate(node[key])]
    for key in _CHILD_ONE:
        if key in node:
            out.append((f"{path}.{key}", node[key]))
    return out


def annotate(comp: Completion, guide: RowGuide | None, rows: Sequence[int]) -> None:
    """Record on a finished completion how its constraint was applied: the method, the
    forced tokens, and a dead end's error (then its finish reason is ``error``)."""
    if guide is None or all(guide.matchers[r] is None for r in rows):
        return
    comp.constraint_method = METHOD
    comp.forced_tokens = sum(guide.forced[r] for r in rows)
    errors = [guide.errors[r] for r in rows if r in guide.errors]
    if errors:
        comp.error = errors[0]
        comp.finish_reasons = ["error" if r in guide.errors else f for r, f in zip(rows, comp.finish_reasons)]


def as_failure(result: Any) -> Any:
    """A completion that hit a dead end as its request's :class:`BackendError` (others unchanged)."""
    error = getattr(result, "error", None)
    if isinstance(result, Completion) and error:
        return BackendError(f"constrained generation failed: {error}",
                            hint="check the grammar: every prefix it admits must be able to continue")
    return result
