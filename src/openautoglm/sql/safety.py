"""Accept exactly one read-only SELECT, checked on sqlglot's syntax tree.

This is the first of several layers (the others are the engine's read-only session,
the timer deadline and the result caps, in :mod:`.database`): a statement is parsed
in the database's dialect, and rejected unless it is a single query (SELECT / UNION /
INTERSECT / EXCEPT, with optional CTEs) containing no DDL/DML node, no
``SELECT ... INTO``, no row locks, no cast to a user-defined type, and **only
functions on the dialect's allow-list** (:func:`allowed_functions`).

Function names are resolved on the tree, not on the text: typed sqlglot nodes are
allowed by class (aggregates, string, math, date/time, arrays, JSON readers,
conditionals, casts), and ``exp.Anonymous`` calls by their identifier (quotes
removed, case folded as the engine folds it).  A call qualified with a schema
(``pg_catalog."pg_read_file"(...)``, ``x.f()``) is allowed only for the engine's
built-in schema (PostgreSQL ``pg_catalog``) and only for an allowed name.

What runs is the statement regenerated from the checked tree, so the text the engine
sees is the text that was checked (no parser-differential tricks with comments).
Inputs that sqlglot cannot handle (lone surrogates, nesting deeper than
:data:`MAX_NESTING`, statements longer than :data:`MAX_SQL_CHARS`) are refused with an
:class:`UnsafeQueryError`, never an uncaught exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..errors import OpenAutoGLMError

if TYPE_CHECKING:  # pragma: no cover
    from sqlglot import exp as _exp

MAX_SQL_CHARS = 100_000
# Parentheses/brackets/CASE levels.  sqlglot recurses ~20 Python frames per level, so
# ~45 levels exhaust the default recursion limit; real queries rarely exceed 10.
MAX_NESTING = 25

DIALECTS = {"sqlite": "sqlite", "postgresql": "postgres", "postgres": "postgres", "duckdb": "duckdb",
            "mysql": "mysql"}


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Never allowed, whatever an allow-list says: these act outside the query's rows (files,
# sleeping, settings, locks, sequences, other servers).  Also gives the clearer message.
FORBIDDEN = {
    "postgres": _names("""
        pg_sleep pg_sleep_for pg_sleep_until pg_read_file pg_read_binary_file pg_ls_dir pg_stat_file pg_ls_logdir
        pg_ls_waldir pg_ls_tmpdir pg_ls_archive_statusdir pg_ls_logicalmapdir pg_ls_logicalsnapdir
        pg_ls_replslotdir lo_import lo_export lo_get lo_put lo_from_bytea lo_create lo_creat lo_unlink lo_open
        lo_truncate lowrite loread dblink dblink_exec dblink_connect dblink_send_query pg_terminate_backend
        pg_cancel_backend pg_reload_conf pg_rotate_logfile set_config current_setting pg_advisory_lock
        pg_advisory_lock_shared pg_advisory_xact_lock pg_advisory_xact_lock_shared pg_try_advisory_lock
        pg_try_advisory_lock_shared pg_try_advisory_xact_lock pg_try_advisory_xact_lock_shared
        pg_advisory_unlock pg_advisory_unlock_shared pg_advisory_unlock_all pg_notify nextval setval currval
        lastval txid_current pg_current_xact_id pg_switch_wal pg_create_restore_point pg_logical_emit_message
        query_to_xml query_to_xmlschema query_to_xml_and_xmlschema table_to_xml cursor_to_xml database_to_xml
        schema_to_xml pg_execute_server_program pg_file_write pg_file_rename pg_file_unlink
        pg_import_system_collations pg_stat_reset pg_stat_statements_reset pg_backend_pid pg_sleep
        """),
    "sqlite": _names("""
        load_extension readfile writefile edit fts3_tokenizer zipfile sqlar_compress sqlar_uncompress fsdir
        """),
    "duckdb": _names("""
        read_csv read_csv_auto read_parquet read_json read_json_auto read_json_objects read_json_objects_auto
        read_ndjson read_ndjson_auto read_ndjson_objects read_text read_blob parquet_scan parquet_metadata
        parquet_schema parquet_file_metadata parquet_kv_metadata sniff_csv glob getenv read_xlsx sqlite_scan
        sqlite_attach postgres_scan postgres_attach postgres_query mysql_scan iceberg_scan delta_scan httpfs
        current_setting duckdb_secrets which_secret install_extension load query query_table
        """),
}
FORBIDDEN_FUNCTIONS = frozenset().union(*FORBIDDEN.values())

# Catalog tables that hold secrets (readable only by superusers, denied regardless).
FORBIDDEN_TABLES = frozenset({"pg_authid", "pg_shadow", "pg_user_mapping", "pg_user_mappings",
                              "pg_hba_file_rules", "pg_file_settings", "pg_ident_file_mappings"})

_FORBIDDEN_NODES = ("Insert", "Update", "Delete", "Create", "Drop", "Alter", "Command", "Pragma", "Attach",
                    "Detach", "Set", "Into", "Lock", "Copy", "Merge", "TruncateTable", "Transaction", "Commit",
                    "Rollback", "Use", "LoadData", "Grant", "Analyze", "Cache", "Uncache", "Refresh", "Execute",
                    "Summarize", "Describe", "Show")

# -- the allow-list ---------------------------------------------------------------------
# Typed sqlglot function classes that compute on values: every class of these modules of
# ``sqlglot.expressions`` except _UNSAFE_CLASSES, plus the general ones in _SAFE_CLASSES.
_SAFE_MODULES = frozenset({"aggregate", "array", "json", "math", "string", "temporal"})
_SAFE_CLASSES = frozenset({
    "And", "Or", "Xor", "Pow", "RegexpLike", "ApproxDistinct", "Typeof",  # expressions.core
    "Case", "Cast", "TryCast", "CastToStrType", "Coalesce", "Collate", "Convert", "DecodeCase", "EqualNull",
    "Exists", "Greatest", "Least", "If", "IsNullValue", "Nullif", "Nvl2", "Rand", "Try", "WidthBucket",
})
_UNSAFE_CLASSES = frozenset({"AIAgg", "AISummarizeAgg", "Secret", "ToFile", "GapFill"})

# Names of calls that sqlglot leaves as ``exp.Anonymous`` (or that a user quotes or
# qualifies); the names sqlglot's dialect parser maps to safe classes are added to these.
_COMMON = _names("""
    abs avg ceil ceiling coalesce count floor greatest least length lower ltrim max min mod nullif power replace
    round rtrim sign sqrt substr substring sum trim upper cast concat
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
""")
_EXTRA = {
    "sqlite": _names("""
        char date datetime format hex ifnull iif if instr julianday like likelihood likely
        unlikely lower octet_length printf quote random soundex strftime time timediff total typeof unhex
        unicode unixepoch group_concat string_agg median
        acos acosh asin asinh atan atan2 atanh cos cosh degrees exp ln log log10 log2 pi pow radians sin sinh
        tan tanh trunc
        json json_array json_array_length json_extract json_insert json_object json_patch json_remove
        json_replace json_set json_type json_valid json_quote json_group_array json_group_object json_each
        json_tree jsonb jsonb_array jsonb_extract jsonb_object json_error_position json_pretty
        """),
    "postgres": _names("""
        age array_agg array_append array_cat array_dims array_length array_lower array_position
        array_positions array_prepend array_remove array_replace array_to_string array_upper ascii bit_length
        bool_and bool_or btrim cardinality cbrt char_length character_length chr concat_ws corr covar_pop
        covar_samp date_bin date_part date_trunc degrees div every exp extract factorial format gcd
        generate_series initcap isfinite justify_days justify_hours justify_interval lcm left ln log log10
        lpad make_date make_interval make_time make_timestamp make_timestamptz md5 mode now num_nonnulls
        num_nulls octet_length overlay percentile_cont percentile_disc pi position radians random
        regexp_count regexp_instr regexp_like regexp_match regexp_matches regexp_replace
        regexp_split_to_array regexp_split_to_table regexp_substr repeat reverse right rpad scale split_part
        starts_with stddev stddev_pop stddev_samp string_agg string_to_array strpos timezone to_char to_date
        to_hex to_number to_timestamp translate trim_scale trunc unnest var_pop var_samp variance width_bucket
        acos asin atan atan2 cos cot sin tan acosd asind atand cosd sind tand sinh cosh tanh
        clock_timestamp statement_timestamp transaction_timestamp date_add date_subtract
        convert_from convert_to encode decode quote_ident quote_literal quote_nullable
        json_agg jsonb_agg json_object_agg jsonb_object_agg json_build_array jsonb_build_array
        json_build_object jsonb_build_object to_json to_jsonb array_to_json row_to_json json_array_elements
        jsonb_array_elements json_array_elements_text jsonb_array_elements_text json_array_length
        jsonb_array_length json_each jsonb_each json_each_text jsonb_each_text json_extract_path
        jsonb_extract_path json_extract_path_text jsonb_extract_path_text json_object_keys jsonb_object_keys
        json_typeof jsonb_typeof json_strip_nulls jsonb_strip_nulls jsonb_pretty jsonb_path_query
        jsonb_path_query_array jsonb_path_query_first jsonb_path_exists jsonb_path_match
        """),
    "duckdb": _names("""
        age array_agg array_length array_to_string bit_length bool_and bool_or chr concat_ws contains
        date_diff datediff date_part datepart date_sub datesub date_trunc datetrunc dayname dayofmonth
        dayofweek dayofyear epoch epoch_ms extract format generate_series greatest_common_divisor hour ifnull
        instr isfinite isinf isnan last_day left len list list_aggregate list_concat list_contains
        list_distinct list_extract list_filter list_sort list_transform list_value lpad make_date
        make_time make_timestamp median minute mode month monthname now nullif octet_length
        position prefix quarter range regexp_extract regexp_full_match regexp_matches regexp_replace
        regexp_split_to_array repeat reverse right rpad second split_part starts_with stddev strftime
        string_agg string_split str_split strip_accents strpos strptime suffix to_timestamp translate
        trunc unnest week year yearweek
        json json_array_length json_extract json_extract_string json_keys json_type json_valid
        json_object json_array json_group_array json_group_object
        """),
}
# A call qualified with one of these schemas still names a built-in function.
_BUILTIN_SCHEMAS = {"postgres": frozenset({"pg_catalog"})}


class UnsafeQueryError(OpenAutoGLMError):
    """A statement that is not exactly one read-only SELECT (nothing was executed)."""


@dataclass(frozen=True)
class CheckedQuery:
    """A statement that passed :func:`check_select`; ``sql`` is what will run."""

    sql: str
    tables: tuple[str, ...]
    has_order_by: bool


def surrogate_position(text: str) -> int | None:
    """Index of the first character UTF-8 cannot encode (a lone surrogate), else None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def require_encodable(text: str, what: str, error: type[OpenAutoGLMError] = OpenAutoGLMError) -> None:
    """Raise ``error`` when ``text`` holds a lone surrogate (tokenizers and drivers choke on it)."""
    pos = surrogate_position(text)
    if pos is not None:
        raise error(f"the {what} contains an invalid character (lone surrogate U+{ord(text[pos]):04X} "
                    f"at position {pos})", hint="send valid Unicode text; decode input bytes with errors='replace'")


@lru_cache(maxsize=None)
def _is_safe_class(cls: type) -> bool:
    from sqlglot import exp

    if not issubclass(cls, exp.Func) or issubclass(cls, (exp.Anonymous, exp.AnonymousAggFunc)):
        return False
    if cls.__name__ in _UNSAFE_CLASSES or not cls.__module__.startswith("sqlglot.expressions."):
        return False
    return cls.__name__ in _SAFE_CLASSES or cls.__module__.rsplit(".", 1)[-1] in _SAFE_MODULES


def _typed_names(read: str) -> set[str]:
    """Names that ``read``'s parser turns into a safe typed class (allowed when quoted too)."""
    from sqlglot import exp
    from sqlglot.dialects.dialect import Dialect

    dialect = Dialect.get_or_raise(read)
    names = set()
    for name, builder in dialect.parser_class.FUNCTIONS.items():
        args = [exp.column("a"), exp.column("b"), exp.column("c")]
        try:
            try:
                node = builder(args)
            except TypeError:
                node = builder(args, dialect=dialect)
        except Exception:  # noqa: BLE001 - a builder that needs other arguments: left out
            continue
        if _is_safe_class(type(node)):
            names.add(name.lower())
    return names


@lru_cache(maxsize=None)
def allowed_functions(dialect: str) -> frozenset[str]:
    """The function names an ``exp.Anonymous`` call may have in ``dialect`` (lower case)."""
    read = DIALECTS.get(dialect, dialect)
    names = set(_COMMON) | set(_EXTRA.get(read, ())) | _typed_names(read)
    return frozenset(names - FORBIDDEN.get(read, frozenset()) - FORBIDDEN_FUNCTIONS)


@lru_cache(maxsize=None)
def engine_functions(dialect: str) -> frozenset[str]:
    """The allowed names the engine itself defines (the curated per-dialect lists, without the
    names sqlglot merely knows how to parse): what the SQL grammar lets a model call."""
    read = DIALECTS.get(dialect, dialect)
    return frozenset((set(_COMMON) | set(_EXTRA.get(read, ()))) & allowed_functions(read))


def _identifier(node: Any, read: str) -> str:
    """An identifier as the engine resolves it: PostgreSQL keeps quoted case, others fold."""
    from sqlglot import exp

    if isinstance(node, exp.Identifier):
        return node.this if node.quoted and read == "postgres" else node.this.lower()
    return str(node).lower()


def function_name(node: "_exp.Func", read: str) -> str:
    """The resolved name of a call: the identifier for anonymous calls, else sqlglot's name."""
    from sqlglot import exp

    if isinstance(node, (exp.Anonymous, exp.AnonymousAggFunc)):
        return _identifier(node.this, read)
    return node.sql_name().lower()


def function_qualifier(node: "_exp.Func", read: str) -> str:
    """The schema (or expression) a call is qualified with, '' when unqualified."""
    from sqlglot import exp

    parent = node.parent
    if isinstance(parent, exp.Dot) and parent.expression is node:
        qualifier = parent.this
    elif isinstance(parent, exp.Table) and parent.this is node:
        parts = [parent.args.get(k) for k in ("catalog", "db") if parent.args.get(k) is not None]
        return ".".join(_identifier(p, read) if isinstance(p, exp.Identifier) else p.sql(dialect=read) for p in parts)
    elif isinstance(parent, exp.Column) and parent.this is node:
        qualifier = parent.args.get("table")
    else:
        return ""
    if qualifier is None:
        return ""
    return _identifier(qualifier, read) if isinstance(qualifier, exp.Identifier) else qualifier.sql(dialect=read)


def _refuse_forbidden(node: "_exp.Func", read: str) -> None:
    """Refuse a call qualified with a non-built-in schema, or one on the deny-list."""
    name, qualifier = function_name(node, read), function_qualifier(node, read)
    shown = f"{qualifier}.{name}" if qualifier else name
    if qualifier and qualifier not in _BUILTIN_SCHEMAS.get(read, ()):
        raise UnsafeQueryError(f"function {shown}() is not allowed: only built-in functions may be called",
                               hint="call the function without a schema or object prefix")
    if name.lower() in FORBIDDEN_FUNCTIONS:
        raise UnsafeQueryError(f"function {shown}() is not allowed (it acts outside the database)",
                               hint="use only functions that compute on the query's rows")


def _refuse_unlisted(node: "_exp.Func", read: str) -> None:
    """Refuse a call that is not on the dialect's allow-list, or whose name is quoted
    (sqlglot regenerates a quoted name upper-cased: it would not be the name checked)."""
    from sqlglot import exp

    if isinstance(node, (exp.Anonymous, exp.AnonymousAggFunc)):
        if isinstance(node.this, exp.Identifier) and node.this.quoted:
            raise UnsafeQueryError(f'quoted function name "{node.this.this}" is not allowed',
                                   hint="write function names without quotes")
        allowed = function_name(node, read) in allowed_functions(read)
    else:
        allowed = _is_safe_class(type(node))
    if not allowed:
        qualifier = function_qualifier(node, read)
        shown = f"{qualifier}.{function_name(node, read)}" if qualifier else function_name(node, read)
        raise UnsafeQueryError(f"function {shown}() is not on the {read} allow-list",
                               hint="use only functions that compute on the query's rows (see docs/sql.md)")


def _nesting(tokens: list[Any]) -> int:
    """Deepest level of (), [], {} and CASE ... END in a token list."""
    from sqlglot.tokens import TokenType

    opening = {TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE, TokenType.CASE}
    closing = {TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE, TokenType.END}
    depth = deepest = 0
    for token in tokens:
        if token.token_type in opening:
            depth += 1
            deepest = max(deepest, depth)
        elif token.token_type in closing:
            depth -= 1
    return deepest


def _parse(text: str, read: str) -> list[Any]:
    """Tokenize, bound the nesting, parse; every failure becomes an UnsafeQueryError."""
    from sqlglot.dialects.dialect import Dialect
    from sqlglot.errors import ParseError, TokenError

    try:
        dialect = Dialect.get_or_raise(read)
        tokens = dialect.tokenize(text)
        depth = _nesting(tokens)
        if depth > MAX_NESTING:
            raise UnsafeQueryError(f"the query nests {depth} levels deep (at most {MAX_NESTING} allowed)",
                                   hint="flatten the expression: use CTEs (WITH) instead of deep nesting")
        return [s for s in dialect.parser().parse(tokens, text) if s is not None]
    except UnsafeQueryError:
        raise
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0][:200]
        raise UnsafeQueryError(f"not valid {read} SQL: {first}", hint="fix the syntax near the position named") from None
    except RecursionError:
        raise UnsafeQueryError("the query nests too deeply to be checked",
                               hint="flatten the expression: use CTEs (WITH) instead of deep nesting") from None
    except Exception as exc:  # noqa: BLE001 - a parser bug must not escape as a crash
        raise UnsafeQueryError(f"the query could not be parsed as {read} SQL ({type(exc).__name__})",
                               hint="rewrite the query in plain SQL") from None


def _check_tree(tree: Any, read: str) -> None:
    from sqlglot import exp

    forbidden = tuple(getattr(exp, name) for name in _FORBIDDEN_NODES if hasattr(exp, name))
    calls = []
    for node in tree.walk():
        if isinstance(node, forbidden):
            raise UnsafeQueryError(f"{type(node).__name__.upper()} is not allowed inside a read-only query",
                                   hint="remove the clause; only plain SELECT queries run")
        if isinstance(node, exp.Func):
            _refuse_forbidden(node, read)
            calls.append(node)
        elif isinstance(node, exp.Table) and node.name.lower() in FORBIDDEN_TABLES:
            raise UnsafeQueryError(f"table {node.name} is not readable here")
        elif isinstance(node, exp.DataType) and node.this == exp.DataType.Type.USERDEFINED:
            raise UnsafeQueryError(f"cast to the user-defined type {node.sql(dialect=read)} is not allowed",
                                   hint="cast to a built-in type (TEXT, INTEGER, REAL, DATE, ...)")
    for node in calls:  # after the deny-list, so a refusal names the dangerous call first
        _refuse_unlisted(node, read)


def check_select(sql: str, dialect: str = "sqlite") -> CheckedQuery:
    """Parse ``sql`` and return it regenerated, or raise :class:`UnsafeQueryError`."""
    from sqlglot import exp

    read = DIALECTS.get(dialect, dialect)
    text = (sql or "").strip()
    if not text:
        raise UnsafeQueryError("empty SQL statement", hint="ask a question that a SELECT query can answer")
    require_encodable(text, "SQL statement", UnsafeQueryError)
    if len(text) > MAX_SQL_CHARS:
        raise UnsafeQueryError(f"the SQL statement is {len(text):,} characters long (at most {MAX_SQL_CHARS:,})",
                               hint="send a shorter query")
    statements = _parse(text, read)
    if len(statements) != 1:
        raise UnsafeQueryError(f"expected exactly one statement, got {len(statements)}",
                               hint="send a single SELECT without ';'-separated extra statements")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise UnsafeQueryError(f"only SELECT queries are allowed, got {tree.key.upper()}",
                               hint="this connection is read-only: ask for data, not for changes")
    try:
        _check_tree(tree, read)
        regenerated = tree.sql(dialect=read, comments=False)
    except RecursionError:
        raise UnsafeQueryError("the query nests too deeply to be checked",
                               hint="flatten the expression: use CTEs (WITH) instead of deep nesting") from None
    tables = tuple(sorted({t.name for t in tree.find_all(exp.Table) if t.name}))
    return CheckedQuery(sql=regenerated, tables=tables, has_order_by=tree.args.get("order") is not None)


def transpile(sql: str, *, read: str, write: str) -> str:
    """Translate one SELECT between dialects (e.g. a Spider/SQLite example to PostgreSQL)."""
    import sqlglot

    require_encodable(sql, "SQL statement", UnsafeQueryError)
    try:
        return sqlglot.transpile(sql, read=DIALECTS.get(read, read), write=DIALECTS.get(write, write))[0]
    except RecursionError:
        raise UnsafeQueryError("the query nests too deeply to be translated") from None
