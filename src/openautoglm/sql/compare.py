"""Comparing predicted with gold SQL: execution results, structure, and Spider hardness."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from .database import QueryResult

if TYPE_CHECKING:  # pragma: no cover
    from .schema import Schema


def _value(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        return round(v, 6) if v != int(v) else int(v)
    if isinstance(v, (bytes, memoryview)):
        return bytes(v)
    return v


def _row_key(row: tuple[Any, ...]) -> tuple:
    """A row as a multiset of values: column order and aliases do not matter."""
    return tuple(sorted((_value(v) for v in row), key=lambda x: (type(x).__name__, repr(x))))


def same_result(gold: QueryResult, pred: QueryResult, *, ordered: bool) -> bool:
    """Execution match: equal bags of rows (lists when the gold query orders its rows)."""
    if len(gold.columns) != len(pred.columns) or len(gold.rows) != len(pred.rows):
        return False
    g = [_row_key(r) for r in gold.rows]
    p = [_row_key(r) for r in pred.rows]
    return g == p if ordered else Counter(g) == Counter(p)


# -- structure ---------------------------------------------------------------------------------
def _clauses(sql: str, dialect: str) -> dict[str, Any] | None:
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except Exception:  # noqa: BLE001
        return None

    def norm(node: Any) -> str:
        node = (node.this if isinstance(node, exp.Alias) else node).copy()
        for lit in list(node.find_all(exp.Literal)):
            lit.replace(exp.Placeholder())
        for col in list(node.find_all(exp.Column)):
            ident = col.args.get("this")
            if isinstance(ident, exp.Identifier) and ident.args.get("quoted") and not col.table:
                col.replace(exp.Placeholder())  # SQLite reads "France" as a string when no column has that name
            else:
                col.set("table", None)
        for alias in list(node.find_all(exp.Alias)):
            alias.replace(alias.this)
        return node.sql(dialect=dialect).lower()

    def conjuncts(cond: Any) -> frozenset[str]:
        if cond is None:
            return frozenset()
        parts = list(cond.flatten()) if isinstance(cond, exp.And) else [cond]
        return frozenset(norm(p) for p in parts)

    if isinstance(tree, exp.SetOperation):
        return {"op": tree.key, "left": _clauses(tree.this.sql(dialect=dialect), dialect),
                "right": _clauses(tree.expression.sql(dialect=dialect), dialect)}
    if not isinstance(tree, exp.Select):
        return {"other": norm(tree)}
    where = tree.args.get("where")
    having = tree.args.get("having")
    group = tree.args.get("group")
    order = tree.args.get("order")
    return {
        "select": frozenset(norm(e) for e in tree.expressions),
        "tables": frozenset(t.name.lower() for t in tree.find_all(exp.Table)),
        "where": conjuncts(where.this if where else None),
        "group": frozenset(norm(e) for e in group.expressions) if group else frozenset(),
        "having": conjuncts(having.this if having else None),
        "order": tuple(norm(e) for e in order.expressions) if order else (),
        "limit": tree.args.get("limit") is not None,
        "distinct": tree.args.get("distinct") is not None,
    }


def structure_match(gold: str, pred: str, dialect: str = "sqlite") -> bool:
    """Exact-set-match style: same clauses as sets, literal values and aliases ignored."""
    g, p = _clauses(gold, dialect), _clauses(pred, dialect)
    return g is not None and g == p


# -- Spider hardness ------------------------------------------------------------------------------
def hardness(sql: str, dialect: str = "sqlite") -> str:
    """Spider's easy/medium/hard/extra, from component counts as in its evaluation script."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except Exception:  # noqa: BLE001
        return "unknown"
    main = tree
    while isinstance(main, exp.SetOperation):
        main = main.this
    comp2 = len(list(tree.find_all(exp.SetOperation))) + len(list(tree.find_all(exp.Subquery)))
    comp2 += sum(1 for s in tree.find_all(exp.Select) if s is not main and s.parent is not None
                 and not isinstance(s.parent, (exp.Subquery, exp.SetOperation)))
    if not isinstance(main, exp.Select):
        return "unknown"
    where = main.args.get("where")
    conds = list(where.this.flatten()) if where is not None and isinstance(where.this, (exp.And, exp.Or)) else (
        [where.this] if where is not None else [])
    joins = len(main.args.get("joins") or [])
    comp1 = sum([
        where is not None, main.args.get("group") is not None, main.args.get("order") is not None,
        main.args.get("limit") is not None, joins > 0,
    ]) + len(list(main.find_all(exp.Or))) + len(list(main.find_all(exp.Like)))
    aggs = len(list(main.find_all(exp.AggFunc)))
    group = main.args.get("group")
    others = sum([aggs > 1, len(main.expressions) > 1, len(conds) > 1,
                  group is not None and len(group.expressions) > 1])
    if comp1 <= 1 and others == 0 and comp2 == 0:
        return "easy"
    if (others <= 2 and comp1 <= 1 and comp2 == 0) or (comp1 <= 2 and others < 2 and comp2 == 0):
        return "medium"
    if (others > 2 and comp1 <= 2 and comp2 == 0) or (2 < comp1 <= 3 and others <= 2 and comp2 == 0) or \
            (comp1 <= 1 and others == 0 and comp2 <= 1):
        return "hard"
    return "extra"


def has_order_by(sql: str, dialect: str = "sqlite") -> bool:
    import sqlglot

    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except Exception:  # noqa: BLE001
        return False
    return tree.args.get("order") is not None


# -- identifiers -------------------------------------------------------------------------------
def unknown_identifiers(sql: str, schema: "Schema", dialect: str = "sqlite") -> list[str] | None:
    """Names a query uses that are neither in ``schema`` nor defined by the query itself:
    ``"table x"``, ``"column x"`` (``x`` qualified or bare; ``q.x`` also when ``q`` is a table,
    or an alias of tables, none of which has ``x``) and ``"alias x"`` (a qualifier no FROM
    clause defines).  ``None`` when sqlglot cannot parse the query.  A double-quoted SQLite
    name that matches no column is a string there, as SQLite reads it."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except Exception:  # noqa: BLE001 - unparsable: the caller counts it apart
        return None
    if tree is None:
        return None
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    aliases = {a.name.lower() for a in tree.find_all(exp.TableAlias) if a.name}
    outputs = {a.alias.lower() for a in tree.find_all(exp.Alias) if a.alias}
    tables = {t.name.lower() for t in schema.tables}
    columns = {c.name.lower() for t in schema.tables for c in t.columns}
    found: list[str] = []
    owners: dict[str, set[str]] = {}  # qualifier -> the tables it can name (an alias may be reused)
    for table in tree.find_all(exp.Table):
        known = schema.table(table.name)
        if known is not None:
            for qualifier in {table.name.lower(), (table.alias or table.name).lower()}:
                owners.setdefault(qualifier, set()).add(known.name)
    for table in tree.find_all(exp.Table):
        if table.name and table.name.lower() not in tables | ctes:
            found.append(f"table {table.name}")
    for column in tree.find_all(exp.Column):
        name, qualifier = column.name, column.table
        if not name or isinstance(column.this, exp.Star):
            continue
        ident = column.this if isinstance(column.this, exp.Identifier) else None
        quoted_string = dialect == "sqlite" and ident is not None and ident.quoted and not qualifier
        owned = owners.get(qualifier.lower()) if qualifier else None
        if owned and not any(schema.table(t).column(name) for t in owned):  # type: ignore[union-attr]
            found.append(f"column {qualifier}.{name}")
        elif name.lower() not in columns and not (not qualifier and name.lower() in outputs) and not quoted_string:
            found.append(f"column {qualifier + '.' if qualifier else ''}{name}")
        if qualifier and qualifier.lower() not in aliases | tables | ctes:
            found.append(f"alias {qualifier}")
    return found
