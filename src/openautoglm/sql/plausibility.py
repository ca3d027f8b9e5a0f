"""Queries that run but cannot be what anyone asked: a repair and checks a candidate must
pass besides executing.

A small model under a schema grammar writes queries that the database accepts and that
are still degenerate:

* it loops on one column (``SELECT is_male, is_male, is_male ...`` up to the grammar's
  bound on select results; ``ORDER BY name DESC, name DESC``).  :func:`dedupe` drops the
  repeats, which changes nothing else the query means;
* it fills a WHERE clause with conditions on constants (``WHERE 2014 = 2014``), on a
  column against itself (``WHERE age = age``), or with a value the question never names,
  copied from the example values the prompt shows (``WHERE Hometown LIKE '%Blackrod Urban
  District%'`` for "hometowns shared by at least two teachers"; 97% of the string and
  numeric literals in Spider dev gold WHERE clauses occur in their question);
* it wraps columns in functions nobody asked for (``SELECT Country, DATE(country)``).

:func:`implausibility` names the first such defect so the parser can send the candidate
back with it (like an execution error) and, when it persists, rank it below the
candidates without one.
"""

from __future__ import annotations

import re
from typing import Any

NUMBER_WORDS = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
                "7": "seven", "8": "eight", "9": "nine", "10": "ten", "11": "eleven", "12": "twelve"}


def _parse(sql: str, dialect: str) -> Any:
    import sqlglot

    from .safety import DIALECTS

    try:
        return sqlglot.parse_one(sql, read=DIALECTS.get(dialect, dialect))
    except Exception:  # noqa: BLE001 - not judged here: the database's error says more
        return None


def dedupe(sql: str, dialect: str = "sqlite") -> str:
    """``sql`` with repeated SELECT results, ORDER BY keys and GROUP BY keys dropped (the
    first of each kept), or ``sql`` itself when nothing repeats (or it does not parse).
    A SELECT that is a branch of UNION/INTERSECT/EXCEPT keeps its list: the branches must
    keep the same width."""
    from sqlglot import exp

    from .safety import DIALECTS

    tree = _parse(sql, dialect)
    if tree is None:
        return sql
    changed = False
    for select in list(tree.find_all(exp.Select)):
        if not isinstance(select.parent, exp.SetOperation):
            kept = _unique(select.expressions, alias_free=True)
            if len(kept) < len(select.expressions):
                select.set("expressions", kept)
                changed = True
        group = select.args.get("group")
        if group is not None:
            keys = _unique(group.expressions)
            if len(keys) < len(group.expressions):
                group.set("expressions", keys)
                changed = True
    for order in list(tree.find_all(exp.Order)):
        keys = _unique(order.expressions, key=lambda o: _key(o.this))
        if len(keys) < len(order.expressions):
            order.set("expressions", keys)
            changed = True
    if not changed:
        return sql
    return tree.sql(dialect=DIALECTS.get(dialect, dialect), comments=False)


def implausibility(sql: str, dialect: str = "sqlite", question: str | None = None) -> str | None:
    """Why ``sql`` is degenerate (a sentence for the model), or ``None``.

    * a SELECT list names the same expression twice (``a, a``; ``T1.a, T1.a``);
    * a comparison has a constant on both sides, or the same column on both sides
      (a condition that is always or never true, whatever the rows hold);
    * with ``question``: a WHERE clause compares with a string or number the question does
      not contain (numbers may be spelled out: 2 for "two"; LIKE's ``%`` and ``_`` aside), or
      the query applies a function other than an aggregate (``DATE(country)``, ``PRINTF(age)``,
      ``CASE``) whose name the question does not use (none of the Spider dev gold queries does).

    ``sql`` that does not parse is not judged here (execution reports it)."""
    from sqlglot import exp

    tree = _parse(sql, dialect)
    if tree is None:
        return None
    for select in tree.find_all(exp.Select):
        seen: set[str] = set()
        for item in select.expressions:
            value = item.unalias() if isinstance(item, exp.Alias) else item
            key = _key(value)
            if key in seen:
                return f"the select list repeats {value.sql(comments=False)}: name each result once"
            seen.add(key)
    comparisons = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like)
    for node in tree.find_all(*comparisons):
        left, right = node.this, node.expression
        if _constant(left) and _constant(right):
            return f"the condition {node.sql()} compares two constants: compare a column with a value"
        if isinstance(left, exp.Column) and isinstance(right, exp.Column) and _key(left) == _key(right):
            return f"the condition {node.sql()} compares a column with itself"
    if question is not None:
        asked = " ".join(question.lower().split())
        for func in tree.find_all(exp.Func):
            if isinstance(func, (exp.AggFunc, exp.Connector)):
                continue
            name = (func.name if isinstance(func, exp.Anonymous) else func.sql_name()).lower()
            if not re.search(rf"\b{re.escape(name)}", asked):
                return (f"it applies {name.upper()}, which the question does not ask for: use the stored values and "
                        "COUNT/SUM/AVG/MIN/MAX only")
        for where in tree.find_all(exp.Where):
            for literal in where.find_all(exp.Literal):
                if literal.find_ancestor(exp.Limit, exp.Offset) is not None:
                    continue
                if not _mentioned(literal, asked):
                    return (f"the question does not mention {literal.sql()}: compare only with values the question "
                            "names")
    return None


def _mentioned(literal: Any, question: str) -> bool:
    text = " ".join(str(literal.this).lower().split())
    if literal.is_string:
        parts = [p for p in re.split(r"[%_]+", text) if p.strip()]
        return all(p.strip() in question for p in parts)
    number = text[:-2] if text.endswith(".0") else text
    if re.search(rf"(?<![0-9.]){re.escape(number)}(?![0-9])", question):
        return True
    word = NUMBER_WORDS.get(number)
    return word is not None and re.search(rf"\b{word}\b", question) is not None


def _unique(items: list[Any], *, alias_free: bool = False, key: Any = None) -> list[Any]:
    from sqlglot import exp

    seen: set[str] = set()
    kept = []
    for item in items:
        if key is not None:
            k = key(item)
        else:
            k = _key(item.unalias() if alias_free and isinstance(item, exp.Alias) else item)
        if k not in seen:
            seen.add(k)
            kept.append(item)
    return kept


def _key(node: Any) -> str:
    return node.sql(comments=False).lower()


def _constant(node: Any) -> bool:
    from sqlglot import exp

    if isinstance(node, (exp.Paren, exp.Neg)):
        return _constant(node.this)
    return isinstance(node, (exp.Literal, exp.Null, exp.Boolean))
