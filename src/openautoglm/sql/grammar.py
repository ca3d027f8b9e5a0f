"""A context-free grammar of the SELECT queries one database can answer (PICARD's idea).

:func:`build_grammar` turns a :class:`~.schema.Schema` into a Lark grammar as llguidance
reads it (``Constraint.grammar``): the SELECT subset of the dialect (joins, WHERE, GROUP BY,
HAVING, ORDER BY, LIMIT, UNION/INTERSECT/EXCEPT, CASE, CAST, subqueries nested at most
``max_depth`` levels), case-insensitive keywords, well-formed string and number literals,
and functions only from the dialect's allow-list that the engine defines
(:func:`~.safety.engine_functions`).

The only table names are the database's; a column is one of the database's columns,
bare, quoted as the dialect allows, or qualified: ``table.column`` with a column of that
very table, or ``alias.column`` with any of the database's columns.  Table aliases (``AS x``;
bare after a table) are ``T1``..``T99`` or one letter with an optional digit (``p``, ``s2``),
never a keyword or table name: a free identifier there let the model write invented names
as qualifiers.  Output aliases (``AS total``) are free identifiers (nothing can refer to them).  A model
decoding under the grammar cannot name a table or column that does not exist.  Every
query has a FROM clause.  Left out: CTEs (a WITH name would be a free table name), window
functions, output aliases in ORDER BY/HAVING (they would be free column names).

Dialects: SQLite (``"x"``, ```x```, ``[x]`` identifiers; ``'...'`` and, as Spider writes
them, ``"..."`` strings), DuckDB and PostgreSQL (``"x"`` identifiers; PostgreSQL folds
unquoted names to lower case, so a mixed-case name is reachable only quoted; ``::`` casts,
``ILIKE``, typed literals), MySQL (```x```).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from ..backends.base import Constraint
from ..errors import OpenAutoGLMError
from .safety import DIALECTS, engine_functions

if TYPE_CHECKING:  # pragma: no cover
    from .database import Database
    from .schema import Schema, Table

DEFAULT_MAX_DEPTH = 3
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

#: words an alias may not be (the grammar's keywords); also never a bare table or column name
KEYWORDS = frozenset("""
select from where group by having order limit offset union intersect except join inner left right full
outer cross natural on using as and or not in is null like glob ilike between exists case when then else
end distinct all asc desc cast collate escape true false nulls first last isnull notnull
""".split())

TYPES = ("integer", "int", "bigint", "smallint", "tinyint", "real", "float", "double precision", "double",
         "numeric", "decimal", "text", "varchar", "char", "character varying", "character", "string",
         "boolean", "bool", "date", "datetime", "timestamp", "time", "interval", "blob", "bytea", "signed",
         "unsigned", "number")


class SqlGrammarError(OpenAutoGLMError):
    """The SQL grammar of a database could not be built or compiled."""


@dataclass(frozen=True)
class _Dialect:
    quotes: tuple[tuple[str, str], ...]  # identifier quote pairs
    fold_lower: bool  # PostgreSQL: unquoted names fold to lower case, quoted ones are exact
    dq_strings: bool  # "..." is a string literal (SQLite when no column matches, MySQL)
    comparisons: tuple[str, ...]
    like: tuple[str, ...]
    double_colon: bool  # x::type casts
    typed_literals: bool  # DATE '2020-01-01'
    limit_comma: bool  # LIMIT offset, count
    distinct_on: bool


_DIALECTS = {
    "sqlite": _Dialect((('"', '"'), ("`", "`"), ("[", "]")), False, True,
                       ("=", "==", "!=", "<>", "<", "<=", ">", ">="), ("like", "glob"), False, False, True, False),
    "postgres": _Dialect((('"', '"'),), True, False, ("=", "!=", "<>", "<", "<=", ">", ">="), ("like", "ilike"),
                         True, True, False, True),
    "duckdb": _Dialect((('"', '"'),), False, False, ("=", "==", "!=", "<>", "<", "<=", ">", ">="),
                       ("like", "ilike", "glob"), True, True, False, True),
    "mysql": _Dialect((("`", "`"),), False, True, ("=", "!=", "<>", "<", "<=", ">", ">="), ("like",), False, False,
                      True, False),
}


@dataclass(frozen=True)
class SqlGrammar:
    """The grammar of one database's SELECT queries (``text``: Lark, start rule ``start``)."""

    database: str
    dialect: str
    text: str
    tables: tuple[str, ...]
    columns: tuple[str, ...]

    def constraint(self) -> Constraint:
        return Constraint.grammar(self.text)


def _lit(text: str, insensitive: bool) -> str:
    return json.dumps(text, ensure_ascii=False) + ("i" if insensitive else "")


def name_forms(name: str, dialect: str) -> list[str]:
    """Lark literals for every way ``dialect`` lets a query spell the identifier ``name``."""
    spec = _DIALECTS[dialect]
    forms = []
    if _PLAIN.match(name) and name.lower() not in KEYWORDS and (not spec.fold_lower or name == name.lower()):
        forms.append(_lit(name, True))
    for left, right in spec.quotes:
        inner = name.replace(right, right * 2) if left == right else name
        if left == "[" and "]" in name:
            continue
        forms.append(_lit(left + inner + right, not spec.fold_lower))
    return forms


def _alternatives(forms: Iterable[str]) -> str:
    seen: dict[str, None] = {}
    for form in forms:
        seen.setdefault(form.lower() if form.endswith("i") else form, None)
    return "(" + " | ".join(seen) + ")"


def _level(k: int, depth: int, spec: _Dialect) -> str:
    """The query and expression rules of nesting level ``k`` (subqueries use level k+1).

    ``@word`` is a keyword, ``"x"`` punctuation; both take optional leading whitespace.
    ``SP`` is required whitespace, written wherever a word may meet a word ("singers" must
    not read as the table ``singer`` with the alias ``s``).
    """
    nxt = f"compound_{k + 1}" if k < depth else None
    quantifier = '@distinct (SP @on "(" expr_list_K ")")? | @all' if spec.distinct_on else "@distinct | @all"
    limit_tail = '((SP @offset SP | ",") expr_K)?' if spec.limit_comma else "(SP @offset SP expr_K)?"
    postfix = 'primary_K ("::" type_name)*' if spec.double_colon else "primary_K (SP @collate SP ALIAS)?"
    in_body = f'"(" ({nxt} | expr_list_K)? ")"' if nxt else '"(" expr_list_K? ")"'
    sub_table = f' | "(" {nxt} ")" (SP alias)?' if nxt else ""
    sub_expr = f' | "(" {nxt} ")" | @exists "(" {nxt} ")"' if nxt else ""
    rules = f"""
compound_K: select_K (SP setop SP select_K)* (SP order_K)? (SP limit_K)?
select_K: @select (SP ({quantifier}))? SP result_K ("," result_K)* SP from_K (SP @where SP expr_K)? \
    (SP @group SP @by SP expr_list_K)? (SP @having SP expr_K)?
result_K: "*" | qualifier "." "*" | expr_K (SP @as SP ALIAS | SP @as QUOTED)?
from_K: @from SP table_ref_K join_K*
table_ref_K: table_name (SP alias)?{sub_table}
join_K: "," table_ref_K | SP (join_kind SP)? @join SP table_ref_K (SP @on SP expr_K | SP @using "(" column_name ("," column_name)* ")")?
order_K: @order SP @by SP order_item_K ("," order_item_K)*
order_item_K: expr_K (SP (@asc | @desc))? (SP @nulls SP (@first | @last))?
limit_K: @limit SP expr_K {limit_tail}
expr_list_K: expr_K ("," expr_K)*
expr_K: and_K (SP @or SP and_K)*
and_K: not_K (SP @and SP not_K)*
not_K: @not SP not_K | predicate_K
predicate_K: sum_K | sum_K cmp sum_K | sum_K (SP @not)? SP @between SP sum_K SP @and SP sum_K \
    | sum_K (SP @not)? SP @in {in_body} | sum_K (SP @not)? SP like SP sum_K (SP @escape SP sum_K)? \
    | sum_K SP @is (SP @not)? SP sum_K | sum_K SP (@isnull | @notnull | @not SP @null)
sum_K: term_K (("+" | "-" | "||") term_K)*
term_K: unary_K (("*" | "/" | "%") unary_K)*
unary_K: ("-" | "+") unary_K | postfix_K
postfix_K: {postfix}
primary_K: literal | column_ref | "(" expr_list_K ")" | call_K | case_K | @cast "(" expr_K SP @as SP type_name ")"{sub_expr}
call_K: @count "(" "*" ")" | FUNC "(" ((@distinct SP)? expr_list_K)? ")"
case_K: @case (SP expr_K)? (SP @when SP expr_K SP @then SP expr_K)+ (SP @else SP expr_K)? SP @end
"""
    return rules.replace("_K", f"_{k}")


_WS = "/[ \\t\\r\\n]*/"


def _terminalize(rules: str) -> tuple[str, list[str]]:
    """Turn ``@word`` and ``"x"`` in rule bodies into terminals with optional leading whitespace."""
    terminals: dict[str, str] = {}

    def keyword(match: "re.Match[str]") -> str:
        name = "K_" + match.group(1).upper()
        terminals[name] = f"{name}: {_WS} {_lit(match.group(1), True)}"
        return name

    def punct(match: "re.Match[str]") -> str:
        text = json.loads(match.group(0))
        name = "P_" + "_".join(f"{ord(ch):X}" for ch in text)
        terminals[name] = f"{name}: {_WS} {match.group(0)}"
        return name

    rules = re.sub(r"@(\w+)", keyword, rules)
    rules = re.sub(r'"(?:[^"\\]|\\.)*"', punct, rules)
    return rules, sorted(terminals.values())


def build_grammar(schema: "Schema", *, database: str = "database", dialect: str | None = None,
                  max_depth: int = DEFAULT_MAX_DEPTH) -> SqlGrammar:
    """The grammar of ``schema``'s SELECT queries in ``dialect`` (default: the schema's)."""
    read = DIALECTS.get(dialect or schema.dialect, dialect or schema.dialect)
    if read not in _DIALECTS:
        raise SqlGrammarError(f"no SQL grammar for the {read} dialect of database {database}",
                              hint=f"use one of {', '.join(sorted(_DIALECTS))}, or turn the grammar off")
    tables = [t for t in schema.tables if t.columns]
    if not tables:
        raise SqlGrammarError(f"database {database} has no tables with columns: no query could name one",
                              hint="point the parser at a database with tables, or turn the grammar off")
    spec = _DIALECTS[read]
    depth = max(0, int(max_depth))
    rules = [_level(k, depth, spec) for k in range(depth + 1)]
    rules += [
        "start: compound_0 SEMI?",
        f"table_name: {' | '.join(f'T{i}' for i in range(len(tables)))}",
        "column_name: COLUMN",
        "column_ref: COLUMN | TALIAS \".\" COLUMN" + "".join(f' | T{i} "." C{i}' for i in range(len(tables))),
        "qualifier: TALIAS" + "".join(f" | T{i}" for i in range(len(tables))),
        "alias: (@as SP)? TALIAS",
        *shared_rules(spec),
    ]
    body, keyword_terminals = _terminalize("\n".join(rules))
    columns = [f for t in tables for c in t.columns for f in name_forms(c.name, read)]
    lexemes = [f"T{i}: {_WS} {_alternatives(name_forms(t.name, read))}" for i, t in enumerate(tables)]
    lexemes += [f"C{i}: {_WS} {_alternatives(f for c in t.columns for f in name_forms(c.name, read))}"
                for i, t in enumerate(tables)]
    lexemes += [f"COLUMN: {_WS} {_alternatives(columns)}", *shared_lexemes(tables, read)]
    shown = "".join(ch if ch.isprintable() else "?" for ch in database)  # a comment line, whatever the name
    head = f"// SELECT queries of database {shown} ({read}); identifiers from its schema only"
    text = "\n".join([head, body, *keyword_terminals, *lexemes]) + "\n"
    return SqlGrammar(database, read, text, tuple(t.name for t in tables),
                      tuple(dict.fromkeys(c.name for t in tables for c in t.columns)))


def shared_rules(spec: _Dialect) -> list[str]:
    """The rules that do not depend on the schema (set operators, joins, literals, types)."""
    return [
        "setop: @union (SP @all)? | @intersect | @except",
        "join_kind: @natural (SP (@left (SP @outer)? | @inner))? | @left (SP @outer)? | @right (SP @outer)?"
        " | @full (SP @outer)? | @inner | @cross",
        f"cmp: {' | '.join(_lit(op, False) for op in spec.comparisons)}",
        f"like: {' | '.join('@' + op for op in spec.like)}",
        'type_name: TYPE ("(" NUMBER ("," NUMBER)? ")")?',
        # no TRUE/FALSE: a small model that starts a name with `t` or `f` no column has was led on to
        # `tRUE`/`fALSE` (`SELECT tRUE, tRUE FROM people`); no Spider dev gold query uses them
        "literal: NUMBER | STRING | @null | @current_date | @current_time | @current_timestamp"
        + (" | (@date | @time | @timestamp | @interval) STRING" if spec.typed_literals else ""),
    ]


def shared_lexemes(tables: "Sequence[Table]", read: str) -> list[str]:
    """Output and table aliases, literals, types and functions (``tables``: the names an alias may not be)."""
    spec = _DIALECTS[read]
    plain_tables = sorted({t.name.lower() for t in tables if _PLAIN.match(t.name)})
    reserved = "|".join(sorted(KEYWORDS | set(plain_tables)))
    strings = ["/'([^']|'')*'/"] + (['/"([^"]|"")*"/'] if spec.dq_strings else [])
    return [
        f"ALIAS: /[ \\t\\r\\n]*[A-Za-z_][A-Za-z0-9_]*/ & ~/[ \\t\\r\\n]*(?i:{reserved})/",
        # table aliases: T1..T99 (Spider's and most writers' habit) or a letter with an optional digit.
        # A free identifier here let the model spell an invented name as a qualifier
        # (`battle_name_between_...`, `pName.pHONE_NUMBER`) and run on to max_tokens inside it.
        f"TALIAS: /[ \\t\\r\\n]*(?i:t[0-9]{{1,2}}|[a-z][0-9]?)/ & ~/[ \\t\\r\\n]*(?i:{reserved})/",
        f"QUOTED: {_WS} ({' | '.join(_quoted_any(left, right) for left, right in spec.quotes)})",
        f"TYPE: {_WS} ({' | '.join(_lit(t, True) for t in TYPES)})",
        f"FUNC: {_WS} ({' | '.join(_lit(f, True) for f in sorted(engine_functions(read)) if _PLAIN.match(f))})",
        f"STRING: {_WS} ({' | '.join(strings)})",
        f"NUMBER: {_WS} (/[0-9]+(\\.[0-9]*)?([eE][+-]?[0-9]+)?/ | /\\.[0-9]+([eE][+-]?[0-9]+)?/)",
        "SP: /[ \\t\\r\\n]+/",
        "SEMI: /[ \\t\\r\\n]*;/",
    ]


def _quoted_any(left: str, right: str) -> str:
    body = f"[^{_rx(right)}]|{_rx(right * 2)}" if left == right else f"[^{_rx(right)}]"
    return f"/{_rx(left)}({body})+{_rx(right)}/"


def _rx(text: str) -> str:
    return "".join("\\" + ch if ch in '\\.^$|?*+()[]{}/"' else ch for ch in text)


def check_compiles(grammar: SqlGrammar) -> None:
    """Raise :class:`SqlGrammarError` naming the database if llguidance cannot compile the
    grammar (nothing to check, and no error, when llguidance is not installed)."""
    try:
        from llguidance import LLMatcher
    except ImportError:  # pragma: no cover - the grammar is only used by backends that have it
        return
    message = LLMatcher.validate_grammar(LLMatcher.grammar_from_lark(grammar.text))
    if message and not message.startswith("WARNING"):
        raise SqlGrammarError(f"the SQL grammar of database {grammar.database} does not compile: {message[:300]}",
                              hint="report the schema's unusual names; set grammar=False to generate without it")


def schema_signature(schema: "Schema") -> str:
    """A digest of what the grammar depends on (dialect, tables, columns)."""
    parts = [schema.dialect] + [f"{t.name}\x1f" + "\x1f".join(c.name for c in t.columns) for t in schema.tables]
    return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()


_CACHE: dict[tuple[str, str, str, int], SqlGrammar] = {}
_CACHE_SIZE = 64


def grammar_for(db: "Database", *, max_depth: int = DEFAULT_MAX_DEPTH, check: bool = True) -> SqlGrammar:
    """The (compile-checked) grammar of ``db``, built once per database, schema and depth."""
    schema = db.schema()
    name = display_name(db.url)
    key = (name, schema_signature(schema), db.dialect, max_depth)
    return cached(_CACHE, _CACHE_SIZE, key, check,
                  lambda: build_grammar(schema, database=name, dialect=db.dialect, max_depth=max_depth))


def cached(cache: dict[Any, SqlGrammar], size: int, key: Any, check: bool,
           build: Callable[[], SqlGrammar]) -> SqlGrammar:
    """``cache[key]``, built (and compile-checked when ``check``) on first use; the oldest of
    ``size`` entries makes room."""
    if key not in cache:
        grammar = build()
        if check:
            check_compiles(grammar)
        while len(cache) >= size:
            cache.pop(next(iter(cache)))
        cache[key] = grammar
    return cache[key]


@lru_cache(maxsize=256)
def display_name(url: str) -> str:
    """A database URL as shown in messages (password hidden)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot read is shown without credentials
        return url.split("@")[-1]


def load_tokenizer(directory: "str | Path | None" = None) -> Any:
    """An llguidance tokenizer from a Hugging Face ``tokenizer.json`` (default: the embedded
    model's converted files), for checking text against a grammar outside a backend."""
    from llguidance import LLTokenizer

    if directory is None:
        from ..backends.weights import resolve_model_files

        directory = resolve_model_files(None).directory
    return LLTokenizer((Path(directory) / "tokenizer.json").read_text(encoding="utf-8"))


def accepts(grammar: "SqlGrammar | str", text: str, tokenizer: Any) -> tuple[bool, str]:
    """Whether ``grammar`` admits the whole of ``text`` as tokenized by ``tokenizer`` (the
    llguidance matcher a decoder uses), and the longest prefix it admitted."""
    from llguidance import LLMatcher

    lark = grammar.text if isinstance(grammar, SqlGrammar) else grammar
    matcher = LLMatcher(tokenizer, LLMatcher.grammar_from_lark(lark), log_level=0)
    if matcher.is_error():
        raise SqlGrammarError(f"the grammar does not compile: {matcher.get_error()[:300]}")
    tokens = tokenizer.tokenize_str(text)
    consumed = matcher.try_consume_tokens(tokens)
    return consumed == len(tokens) and matcher.is_accepting(), tokenizer.decode_str(tokens[:consumed])
