"""Schema grammars whose table aliases are bound to their tables (issue 18).

The database grammar (:mod:`.grammar`) admits ``T1.col`` with any column of the database:
a context-free grammar cannot tie ``T1`` to the table ``FROM x AS T1`` gives it, because
the SELECT list is written before FROM.  A grammar for a *table set* can, by enumerating:
for every ordered choice of the set's tables (``(concert, stadium)``, ``(stadium,)``, ...)
it holds one copy of the SELECT rules whose FROM is exactly those tables in that order.
Aliases follow Spider's convention (and its examples', 99.5% of its train and dev FROMs):
a lone table has none, the i-th of several is ``AS Ti``.  Inside a copy

* ``Ti.col`` admits only the columns of the i-th table, ``table.col`` (a lone table) only
  that table's, ``Ti.*`` only a FROM alias: no qualifier that FROM does not define;
* a bare column only a column of the FROM's tables that no other of them has (SQLite
  refuses an ambiguous one);
* FROM joins its tables with ``,`` or ``JOIN ... ON/USING``; nothing else is in FROM, so
  no table outside the set, and no column of a table the query does not read.

One more copy reads a derived table (``FROM (SELECT ...) AS x``): bare columns of the set,
no qualifiers.  Every SELECT (each branch of a UNION/INTERSECT/EXCEPT, each subquery) picks
its own copy; a subquery cannot qualify with an outer alias.  The decoder's Earley parser
follows every copy a prefix fits: after ``SELECT T1.name`` only copies whose first table
has ``name`` live on, and FROM must then name such a table first.

WHERE, ON and GROUP BY admit no aggregate (SQLite refuses one there), and no copy admits a
window function (there is no OVER).  Two bounds keep a small model's answer a whole query:
a SELECT lists at most ``MAX_RESULTS`` results (a model repeating a column must come to
FROM), and a line break may only end the query (the parser stops at a blank line, which
could otherwise cut ``SELECT x FROM t1`` before the ``JOIN`` that gives ``x`` its table).
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import permutations
from typing import TYPE_CHECKING, Sequence

from .grammar import (_DIALECTS, _PLAIN, _WS, DEFAULT_MAX_DEPTH, DIALECTS, SqlGrammar, SqlGrammarError, _alternatives,
                      _level, _lit, _terminalize, cached, display_name, name_forms, schema_signature,
                      shared_lexemes, shared_rules)
from .safety import engine_functions

if TYPE_CHECKING:  # pragma: no cover
    from .database import Database
    from .schema import Column, Schema, Table

#: the most tables one FROM joins in a set grammar by default (3 tables: 15 ordered choices)
MAX_FROM = 3
#: the most copies of the rules in a parser's set grammar (:func:`generation_orders`)
MAX_COPIES = 8
#: the most tables a set grammar admits
MAX_SET_TABLES = 6
_RULE = re.compile(r"\b([a-z]+(?:_[a-z]+)*)_(\d+)\b")
_DROPPED = ("from", "table_ref", "join")  # replaced by each copy's exact FROM
#: aggregates (not in WHERE, ON or GROUP BY) and window functions (never: the grammar has no OVER)
AGGREGATES = frozenset("""avg count group_concat max min sum total string_agg array_agg bool_and bool_or every
stddev stddev_pop stddev_samp variance var_pop var_samp median mode any_value listagg json_group_array
json_group_object jsonb_group_array jsonb_group_object bit_and bit_or bit_xor corr covar_pop covar_samp""".split())
WINDOW = frozenset("""row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value
nth_value""".split())
_EXPR_RULES = ("expr_list", "expr", "and", "not", "predicate", "sum", "term", "unary", "postfix", "primary", "call",
               "case")
#: the most result columns of one SELECT (Spider's train and dev gold use at most 6)
MAX_RESULTS = 8
#: whitespace inside a query: a line break only ends it (``END``), so a stop sequence such as
#: a blank line can only cut the answer where the query is complete
_SPACE = "[ \\t]"


def from_orders(tables: Sequence[str], max_from: int = MAX_FROM) -> list[tuple[str, ...]]:
    """Every ordered choice of 1 to ``max_from`` of ``tables`` (the FROMs a set grammar admits)."""
    unique = list(dict.fromkeys(tables))
    return [order for n in range(1, min(max_from, len(unique)) + 1) for order in permutations(unique, n)]


def generation_orders(schema: "Schema", tables: Sequence[str], *, budget: int = MAX_COPIES
                      ) -> tuple[list[tuple[str, ...]], bool]:
    """The FROMs a parser's set grammar admits, and whether it admits a derived table.

    Each copy of the rules costs the decoder's Earley parser items at every position, and
    llguidance stops a mask past 50,000 (seen from 9 copies on a 3-table set of world_1), so
    a set gets at most ``budget`` copies: each table alone, the whole set in its given
    order, then pairs joined by a foreign key (both orders), then a derived table."""
    unique = list(dict.fromkeys(tables))
    orders: list[tuple[str, ...]] = [(t,) for t in unique]
    if len(unique) > 1:
        orders.append(tuple(unique))
    for i, a in enumerate(unique):
        for b in unique[i + 1:]:
            if len(unique) > 2 and b not in schema.neighbours(a) and a not in schema.neighbours(b):
                continue
            orders += [o for o in ((a, b), (b, a)) if o not in orders]
    orders = orders[:budget]
    return orders, len(orders) < budget


def query_from_orders(sql: str, dialect: str = "sqlite") -> list[tuple[str, ...]]:
    """The FROM tables of each SELECT in ``sql``, in order (to build the grammar of a known query)."""
    import sqlglot
    from sqlglot import exp

    out: list[tuple[str, ...]] = []
    for select in sqlglot.parse_one(sql, read=dialect).find_all(exp.Select):
        source = select.args.get("from") or select.args.get("from_")
        items = ([source.this] if source is not None else []) + [j.this for j in select.args.get("joins") or []]
        if items and all(isinstance(i, exp.Table) for i in items):
            out.append(tuple(i.name for i in items))
    return list(dict.fromkeys(out))


def _copy(k: int, depth: int, spec: object, c: int, order: tuple[int, ...]) -> list[str]:
    """Level ``k``'s rules for copy ``c`` (FROM: the tables numbered ``order``; empty: a derived table)."""
    rules: list[str] = []
    for line in _level(k, depth, spec).strip().splitlines():  # type: ignore[arg-type]
        name, body = line.split(":", 1)
        if name.rsplit("_", 1)[0] in _DROPPED:
            continue
        body = _RULE.sub(lambda m: m.group(0) if int(m.group(2)) != k else f"{m.group(0)}_p{c}", body)
        for free, bound in (("column_ref", "cref"), ("qualifier", "qual"), ("column_name", "cname")):
            body = re.sub(rf"\b{free}\b", f"{bound}_p{c}", body)
        if name == f"compound_{k}":
            body = body.replace(f"setop SP select_{k}_p{c}", f"setop SP selany_{k}")
        if name == f"select_{k}":  # a bounded list: a model repeating a column must come to FROM
            body = body.replace(f'("," result_{k}_p{c})*', f'("," result_{k}_p{c}){{0,{MAX_RESULTS - 1}}}')
        if not order:
            body = body.replace(f' | qual_p{c} "." "*"', "")
        if name == f"select_{k}":  # WHERE and GROUP BY read rows: no aggregate there
            body = body.replace(f"@where SP expr_{k}_p{c}", f"@where SP wexpr_{k}_p{c}")
            body = body.replace(f"@by SP expr_list_{k}_p{c}", f"@by SP wexpr_list_{k}_p{c}")
        if name == f"call_{k}":
            body = body.replace("FUNC", "(AFUNC | SFUNC)")
        rules.append(f"{name}_p{c}:{body}")
        if name.rsplit("_", 1)[0] in _EXPR_RULES:
            row = re.sub(rf"\b({'|'.join(_EXPR_RULES)})_{k}_p{c}\b", r"w\1_" + f"{k}_p{c}", body)
            if name == f"call_{k}":
                row = f' SFUNC "(" ((@distinct SP)? wexpr_list_{k}_p{c})? ")"'
            rules.append(f"w{name}_p{c}:{row}")
    if order:
        parts = []
        for i, t in enumerate(order):
            ref = f"TB{t} SP (@as SP)? AL{i + 1}" if len(order) > 1 else f"TB{t}"
            parts.append(ref if i == 0 else f'("," | SP (join_kind SP)? @join SP) {ref} '
                         f'(SP @on SP wexpr_{k}_p{c} | SP @using "(" cname_p{c} ("," cname_p{c})* ")")?')
        rules.append(f"from_{k}_p{c}: @from SP " + " ".join(parts))
    else:
        rules.append(f'from_{k}_p{c}: @from SP "(" compound_{k + 1} ")" (SP dalias)?')
    return rules


def build_set_grammar(schema: "Schema", tables: Sequence[str], *, orders: Sequence[Sequence[str]] | None = None,
                      database: str = "database", dialect: str | None = None,
                      max_depth: int = DEFAULT_MAX_DEPTH, derived: bool = True) -> SqlGrammar:
    """The SELECT queries over ``tables`` whose aliases name their own tables (module doc).
    ``orders``: the FROMs admitted (default :func:`from_orders` of ``tables``); ``derived``:
    also ``FROM (SELECT ...)``."""
    read = DIALECTS.get(dialect or schema.dialect, dialect or schema.dialect)
    if read not in _DIALECTS:
        raise SqlGrammarError(f"no SQL grammar for the {read} dialect of database {database}",
                              hint="use one of sqlite, postgres, duckdb, mysql, or turn the grammar off")
    found = [schema.table(t) for t in dict.fromkeys(tables)]
    missing = [t for t, f in zip(dict.fromkeys(tables), found) if f is None or not f.columns]
    if missing or not found:
        raise SqlGrammarError(f"not tables with columns in database {database}: {', '.join(missing) or '(none)'}")
    if len(found) > MAX_SET_TABLES:
        raise SqlGrammarError(f"a set grammar reads at most {MAX_SET_TABLES} tables, got {len(found)}")
    index = {t.name.lower(): i for i, t in enumerate(found)}  # type: ignore[union-attr]
    try:
        numbered = [tuple(index[t.lower()] for t in o) for o in (orders if orders is not None else from_orders(tables))]
    except KeyError as exc:
        raise SqlGrammarError(f"a FROM order names {exc.args[0]!r}, not a table of the set") from None
    copies = list(dict.fromkeys(o for o in numbered if o)) + ([()] if derived else [])
    spec = _DIALECTS[read]
    depth = max(0, int(max_depth))
    colsets: dict[frozenset[int], int] = {}
    rules: list[str] = ["start: compound_0 SEMI? END?"]
    for k in range(depth + 1):
        live = [c for c, order in enumerate(copies) if order or k < depth]
        for c in live:
            rules += _copy(k, depth, spec, c, copies[c])
        rules.append(f"compound_{k}: " + " | ".join(f"compound_{k}_p{c}" for c in live))
        rules.append(f"selany_{k}: " + " | ".join(f"select_{k}_p{c}" for c in live))
    for c, order in enumerate(copies):
        tables_in = frozenset(order or range(len(found)))
        every = colsets.setdefault((tables_in, False), len(colsets))
        quals = [f"AL{i + 1}" for i in range(len(order))] if len(order) > 1 else [f"TB{t}" for t in order]
        refs = [f'{q} "." CB{t}' for q, t in zip(quals, order)]
        if len(order) > 1 and _bare(found, tables_in, True):  # unambiguous columns only
            refs.insert(0, f"COLSET{colsets.setdefault((tables_in, True), len(colsets))}")
        elif len(order) <= 1:
            refs.insert(0, f"COLSET{every}")
        rules.append(f"cref_p{c}: " + " | ".join(refs))
        if order:
            rules.append(f"qual_p{c}: " + " | ".join(quals))
        rules.append(f"cname_p{c}: COLSET{every}")
    rules += ["dalias: (@as SP)? TALIAS", *shared_rules(spec)]
    body, keyword_terminals = _terminalize("\n".join(rules))
    lexemes = [f"TB{i}: {_WS} {_alternatives(name_forms(t.name, read))}" for i, t in enumerate(found)]  # type: ignore
    lexemes += [f"CB{i}: {_WS} {_columns(t.columns, read)}" for i, t in enumerate(found)]  # type: ignore[union-attr]
    lexemes += [f"COLSET{j}: {_WS} {_columns(_bare(found, ids, unique), read)}" for (ids, unique), j in colsets.items()]
    lexemes += [f"AL{i}: {_WS} {_lit(f'T{i}', True)}" for i in range(1, max(map(len, copies)) + 1)]
    functions = sorted(f for f in engine_functions(read) if _PLAIN.match(f) and f not in WINDOW)
    lexemes += [f"AFUNC: {_WS} ({' | '.join(_lit(f, True) for f in functions if f in AGGREGATES)})",
                f"SFUNC: {_WS} ({' | '.join(_lit(f, True) for f in functions if f not in AGGREGATES)})"]
    lexemes += [x for x in shared_lexemes(schema.tables, read) if not x.startswith("FUNC:")]
    shown = "".join(ch if ch.isprintable() else "?" for ch in database)
    head = f"// SELECT queries of database {shown} ({read}) over {len(found)} of its tables, aliases bound"
    text = "\n".join([head, body, *keyword_terminals, *lexemes]) + "\n"
    text = text.replace("[ \\t\\r\\n]*", f"{_SPACE}*").replace("[ \\t\\r\\n]+", f"{_SPACE}+")
    text += f"END: /{_SPACE}*[\\r\\n][ \\t\\r\\n]*/\n"
    return SqlGrammar(database, read, text, tuple(t.name for t in found),  # type: ignore[union-attr]
                      tuple(dict.fromkeys(c.name for t in found for c in t.columns)))  # type: ignore[union-attr]


def _bare(found: "Sequence[Table]", ids: frozenset[int], unique: bool) -> "list[Column]":
    """The columns of tables ``ids`` (``unique``: only those no other of them has: SQLite
    refuses an ambiguous bare column)."""
    columns = [c for i in sorted(ids) for c in found[i].columns]
    if not unique:
        return columns
    counts = Counter(c.name.lower() for c in columns)
    return [c for c in columns if counts[c.name.lower()] == 1]


def _columns(columns: "Sequence[Column]", read: str) -> str:
    return _alternatives(f for c in columns for f in name_forms(c.name, read))


_CACHE: dict[tuple, SqlGrammar] = {}
_CACHE_SIZE = 256


def set_grammar_for(db: "Database", tables: Sequence[str], *, max_depth: int = DEFAULT_MAX_DEPTH,
                    check: bool = True) -> SqlGrammar:
    """The (compile-checked) grammar a parser's candidate over ``tables`` (a linked table set,
    in order) is generated under: :func:`generation_orders`' FROMs; built once per set."""
    schema = db.schema()
    name = display_name(db.url)
    key = (name, schema_signature(schema), db.dialect, max_depth, tuple(t.lower() for t in tables))

    def build() -> SqlGrammar:
        orders, derived = generation_orders(schema, tables)
        return build_set_grammar(schema, tables, orders=orders, derived=derived, database=name,
                                 dialect=db.dialect, max_depth=max_depth)

    return cached(_CACHE, _CACHE_SIZE, key, check, build)
