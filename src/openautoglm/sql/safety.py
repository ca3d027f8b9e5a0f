"""Accept exactly one read-only SELECT, checked on sqlglot's syntax tree.

This is the first of three layers (the others are the engine's read-only connection
and the hard timeout, in :mod:`.database`): a statement is parsed in the database's
dialect, and rejected unless it is a single query (SELECT / UNION / INTERSECT /
EXCEPT, with optional CTEs) containing no DDL/DML node, no ``SELECT ... INTO``, no
row locks and no function that sleeps, reads or writes files, or reaches the network.
What runs is the statement regenerated from the checked tree, so the text the engine
sees is the text that was checked (no parser-differential tricks with comments).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import OpenAutoGLMError

# Functions with effects beyond reading the database, per engine (lower case).
FORBIDDEN_FUNCTIONS = frozenset({
    # PostgreSQL: sleeping, server files, large objects, other servers, admin
    "pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_read_file", "pg_read_binary_file", "pg_ls_dir",
    "pg_stat_file", "pg_ls_logdir", "pg_ls_waldir", "pg_ls_tmpdir", "pg_ls_archive_statusdir",
    "lo_import", "lo_export", "lo_get", "lo_put", "lo_from_bytea", "lo_create", "lo_unlink", "lo_open",
    "dblink", "dblink_exec", "dblink_connect", "dblink_send_query", "pg_terminate_backend",
    "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile", "set_config", "pg_advisory_lock",
    "pg_advisory_xact_lock", "pg_notify", "nextval", "setval", "txid_current", "pg_switch_wal",
    "pg_create_restore_point", "pg_logical_emit_message", "query_to_xml", "table_to_xml",
    "cursor_to_xml", "database_to_xml", "pg_execute_server_program", "current_setting",
    # SQLite: extensions and file I/O of the shell/fileio extensions
    "load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "zipfile", "sqlar_compress",
    # DuckDB: file and network readers, settings, environment
    "read_csv", "read_csv_auto", "read_parquet", "read_json", "read_json_auto", "read_json_objects",
    "read_ndjson", "read_ndjson_auto", "read_text", "read_blob", "parquet_scan", "parquet_metadata",
    "parquet_schema", "sniff_csv", "glob", "getenv", "read_xlsx", "sqlite_scan", "sqlite_attach",
    "postgres_scan", "postgres_attach", "iceberg_scan", "delta_scan", "httpfs", "current_setting",
    "duckdb_secrets", "which_secret", "install_extension", "load",
})

# Catalog tables that hold secrets (readable only by superusers, denied regardless).
FORBIDDEN_TABLES = frozenset({"pg_authid", "pg_shadow", "pg_user_mapping", "pg_user_mappings",
                              "pg_hba_file_rules", "pg_file_settings", "pg_ident_file_mappings"})

_FORBIDDEN_NODES = ("Insert", "Update", "Delete", "Create", "Drop", "Alter", "Command", "Pragma", "Attach",
                    "Detach", "Set", "Into", "Lock", "Copy", "Merge", "TruncateTable", "Transaction", "Commit",
                    "Rollback", "Use", "LoadData", "Grant", "Analyze", "Cache", "Uncache", "Refresh", "Execute",
                    "Summarize", "Describe", "Show")

DIALECTS = {"sqlite": "sqlite", "postgresql": "postgres", "postgres": "postgres", "duckdb": "duckdb",
            "mysql": "mysql"}


class UnsafeQueryError(OpenAutoGLMError):
    """A statement that is not exactly one read-only SELECT (nothing was executed)."""


@dataclass(frozen=True)
class CheckedQuery:
    """A statement that passed :func:`check_select`; ``sql`` is what will run."""

    sql: str
    tables: tuple[str, ...]
    has_order_by: bool


def _function_name(node: object) -> str:
    from sqlglot import exp

    if isinstance(node, exp.Anonymous):
        return str(node.this).lower()
    return node.sql_name().lower()  # type: ignore[attr-defined]


def check_select(sql: str, dialect: str = "sqlite") -> CheckedQuery:
    """Parse ``sql`` and return it regenerated, or raise :class:`UnsafeQueryError`."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    read = DIALECTS.get(dialect, dialect)
    text = (sql or "").strip()
    if not text:
        raise UnsafeQueryError("empty SQL statement", hint="ask a question that a SELECT query can answer")
    try:
        statements = [s for s in sqlglot.parse(text, read=read) if s is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0][:200]
        raise UnsafeQueryError(f"not valid {read} SQL: {first}", hint="fix the syntax near the position named") from None
    if len(statements) != 1:
        raise UnsafeQueryError(f"expected exactly one statement, got {len(statements)}",
                               hint="send a single SELECT without ';'-separated extra statements")
    tree = statements[0]
    if not isinstance(tree, exp.Query):
        raise UnsafeQueryError(f"only SELECT queries are allowed, got {tree.key.upper()}",
                               hint="this connection is read-only: ask for data, not for changes")
    forbidden = tuple(getattr(exp, name) for name in _FORBIDDEN_NODES if hasattr(exp, name))
    for node in tree.walk():
        if isinstance(node, forbidden):
            raise UnsafeQueryError(f"{type(node).__name__.upper()} is not allowed inside a read-only query",
                                   hint="remove the clause; only plain SELECT queries run")
        if isinstance(node, exp.Func):
            name = _function_name(node)
            if name in FORBIDDEN_FUNCTIONS:
                raise UnsafeQueryError(f"function {name}() is not allowed (it acts outside the database)",
                                       hint="use only functions that compute on the query's rows")
        if isinstance(node, exp.Table) and node.name.lower() in FORBIDDEN_TABLES:
            raise UnsafeQueryError(f"table {node.name} is not readable here")
    tables = tuple(sorted({t.name for t in tree.find_all(exp.Table) if t.name}))
    return CheckedQuery(sql=tree.sql(dialect=read, comments=False), tables=tables, has_order_by=tree.args.get("order") is not None)


def transpile(sql: str, *, read: str, write: str) -> str:
    """Translate one SELECT between dialects (e.g. a Spider/SQLite example to PostgreSQL)."""
    import sqlglot

    return sqlglot.transpile(sql, read=DIALECTS.get(read, read), write=DIALECTS.get(write, write))[0]
