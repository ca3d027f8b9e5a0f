"""Read-only database connections with a hard timeout and a row limit.

``Database(url)`` opens SQLite, PostgreSQL or DuckDB through SQLAlchemy so that the
*engine* refuses writes, whatever the SQL says:

* SQLite: the file is opened ``mode=ro`` (URI) and ``PRAGMA query_only=ON``; a progress
  handler aborts a query past its deadline.
* PostgreSQL: every connection starts with ``default_transaction_read_only=on``, each
  query runs in a ``READ ONLY`` transaction with ``SET LOCAL statement_timeout``, and
  the transaction is always rolled back.
* DuckDB: the file is opened ``read_only`` with external (file/network) access disabled;
  a timer calls ``interrupt()`` at the deadline.

Every statement first passes :func:`.safety.check_select` (one SELECT, no effects).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import OpenAutoGLMError
from .safety import DIALECTS, check_select

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.engine import Engine

    from .schema import Schema


class DatabaseError(OpenAutoGLMError):
    """The database could not be opened, or a query failed (timeout, SQL error)."""


class QueryTimeout(DatabaseError):
    """A query ran past its time limit and was interrupted."""


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool = False  # more rows existed than ``max_rows``
    elapsed_s: float = 0.0
    sql: str = ""

    def to_dict(self, limit: int | None = 50) -> dict[str, Any]:
        rows = self.rows if limit is None else self.rows[:limit]
        return {"columns": self.columns, "rows": [list(r) for r in rows], "row_count": len(self.rows),
                "truncated": self.truncated, "elapsed_s": round(self.elapsed_s, 4)}


def _backend_name(url: str) -> str:
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in ("sqlite", "postgresql", "postgres", "duckdb"):
        raise DatabaseError(f"unsupported database URL {url!r}",
                            hint="use sqlite:///path.db, postgresql://user@host/db or duckdb:///path.duckdb")
    return "postgresql" if scheme == "postgres" else scheme


@dataclass
class Database:
    """A read-only handle on one database (see the module docstring for the guarantees)."""

    url: str
    timeout_s: float = 10.0
    max_rows: int = 1000
    backend: str = field(init=False)
    _engine: Any = field(default=None, init=False, repr=False)
    _schema: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if "://" not in self.url and Path(self.url).suffix in (".db", ".sqlite", ".sqlite3"):
            self.url = f"sqlite:///{self.url}"
        self.backend = _backend_name(self.url)

    @property
    def dialect(self) -> str:
        """The sqlglot dialect name of this database."""
        return DIALECTS[self.backend]

    # -- connections -------------------------------------------------------------------
    @property
    def engine(self) -> "Engine":
        if self._engine is None:
            self._engine = self._create_engine()
        return self._engine

    def _create_engine(self) -> "Engine":
        from sqlalchemy import create_engine

        if self.backend == "sqlite":
            path = self.url.split(":///", 1)[-1] if ":///" in self.url else ""
            if not path or path == ":memory:" or not Path(path).is_file():
                raise DatabaseError(f"SQLite database file not found: {path or self.url!r}",
                                    hint="give an existing file as sqlite:///path/to/file.db")
            uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"

            def connect() -> Any:
                import sqlite3

                con = sqlite3.connect(uri, uri=True, check_same_thread=False)
                con.execute("PRAGMA query_only = ON")
                return con

            return create_engine("sqlite://", creator=connect)
        if self.backend == "postgresql":
            url = self.url.replace("postgres://", "postgresql://", 1)
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://"):]
            ms = int(self.timeout_s * 1000)
            return create_engine(url, connect_args={
                "options": f"-c default_transaction_read_only=on -c statement_timeout={ms}",
                "connect_timeout": 10})
        # duckdb
        path = self.url.split(":///", 1)[-1]
        if not Path(path).is_file():
            raise DatabaseError(f"DuckDB database file not found: {path!r}",
                                hint="give an existing file as duckdb:///path/to/file.duckdb")
        return create_engine(self.url, connect_args={"read_only": True,
                                                     "config": {"enable_external_access": False}})

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- execution -----------------------------------------------------------------------
    def execute(self, sql: str, *, timeout_s: float | None = None, max_rows: int | None = None,
                checked: bool = True) -> QueryResult:
        """Run one SELECT (checked first) and return at most ``max_rows`` rows.

        Raises :class:`.safety.UnsafeQueryError` before touching the database,
        :class:`QueryTimeout` when interrupted, :class:`DatabaseError` on SQL errors.
        """
        query = check_select(sql, self.dialect).sql if checked else sql
        timeout = self.timeout_s if timeout_s is None else timeout_s
        limit = self.max_rows if max_rows is None else max_rows
        started = time.perf_counter()
        try:
            with self.engine.connect() as conn:
                raw = conn.connection.driver_connection
                columns, rows, truncated = self._run(conn, raw, query, timeout, limit)
        except OpenAutoGLMError:
            raise
        except Exception as exc:  # noqa: BLE001 - DB-API errors of three drivers
            raise self._translate(exc, timeout) from None
        return QueryResult(columns, rows, truncated, time.perf_counter() - started, query)

    def _run(self, conn: Any, raw: Any, query: str, timeout: float, limit: int) -> tuple[list[str], list[tuple], bool]:
        if self.backend == "sqlite":
            deadline = time.monotonic() + timeout
            raw.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 2000)
            try:
                cur = raw.execute(query)
                return self._fetch(cur, limit)
            finally:
                raw.set_progress_handler(None, 0)
        if self.backend == "postgresql":
            cur = raw.cursor()
            try:
                cur.execute("SET TRANSACTION READ ONLY")
                cur.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
                cur.execute(query)
                return self._fetch(cur, limit)
            finally:
                raw.rollback()
        timer = threading.Timer(timeout, raw.interrupt)
        timer.start()
        try:
            cur = raw.cursor()
            cur.execute(query)
            return self._fetch(cur, limit)
        finally:
            timer.cancel()

    @staticmethod
    def _fetch(cur: Any, limit: int) -> tuple[list[str], list[tuple], bool]:
        columns = [d[0] for d in (cur.description or [])]
        rows = [tuple(r) for r in cur.fetchmany(limit + 1)]
        return columns, rows[:limit], len(rows) > limit

    def _translate(self, exc: Exception, timeout: float) -> DatabaseError:
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        lowered = text.lower()
        if "interrupt" in lowered or "statement timeout" in lowered or "canceling statement" in lowered:
            return QueryTimeout(f"query interrupted after {timeout:g} s", hint="simplify the question or raise timeout_s")
        return DatabaseError(text)

    # -- schema --------------------------------------------------------------------------
    def schema(self, *, sample_values: int = 3) -> "Schema":
        """The database's tables, columns, keys and sample values (cached)."""
        if self._schema is None:
            from .schema import introspect

            self._schema = introspect(self, sample_values=sample_values)
        return self._schema
