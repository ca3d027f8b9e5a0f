"""Read-only database connections with a timer deadline and capped results.

``Database(url)`` opens SQLite, PostgreSQL or DuckDB through SQLAlchemy so that the
*engine* refuses writes and effects, whatever the SQL says:

* SQLite: the file is opened ``mode=ro`` (URI) with ``PRAGMA query_only=ON``;
  ``ATTACH`` is disabled (``SQLITE_LIMIT_ATTACHED=0``), an authorizer refuses pragma
  writes and file/extension functions, and no string or blob may exceed
  ``max_value_bytes`` (``SQLITE_LIMIT_LENGTH``), which also bounds the cost of any one
  VM step.
* PostgreSQL: every session starts read-only (``default_transaction_read_only=on`` in
  the connection options and ``SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY``),
  each query runs in a ``READ ONLY`` transaction with ``SET LOCAL statement_timeout``
  through a server-side cursor, and is always rolled back; on return to the pool the
  session is reset (``RESET ALL``, ``pg_advisory_unlock_all()``, ``UNLISTEN *``) and
  verified (still read-only, no advisory lock held), else the connection is dropped.
* DuckDB: the file is opened ``read_only`` with external (file/network) access disabled,
  a memory limit, and the configuration locked.

Every engine gets a deadline from a timer thread that interrupts the running statement
(SQLite/DuckDB ``interrupt()``, PostgreSQL a cancel request), independent of how much
work one step does; SQLite's progress handler is a second layer.  Results are capped at
``max_rows`` rows and ``max_bytes`` bytes (``truncated`` is set).  Every statement first
passes :func:`.safety.check_select` (one SELECT, allow-listed functions).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import quote

from ..errors import OpenAutoGLMError
from .safety import DIALECTS, FORBIDDEN, check_select, require_encodable

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.engine import Engine

    from .schema import Schema

# Pragmas that take an argument but only read (schema introspection); any other pragma
# with an argument is a write and is refused by the SQLite authorizer.
_READ_PRAGMAS = frozenset({"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo",
                           "foreign_key_list", "table_list"})
_PG_RESET = ("RESET ALL", "SELECT pg_advisory_unlock_all()", "UNLISTEN *")
_PG_VERIFY = ("SELECT current_setting('default_transaction_read_only'), "
              "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())")


class DatabaseError(OpenAutoGLMError):
    """The database could not be opened, or a query failed (timeout, SQL error)."""


class QueryTimeout(DatabaseError):
    """A query ran past its time limit and was interrupted."""


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool = False  # more rows (or bytes) existed than ``max_rows`` / ``max_bytes``
    elapsed_s: float = 0.0
    sql: str = ""

    def to_dict(self, limit: int | None = 50) -> dict[str, Any]:
        rows = self.rows if limit is None else self.rows[:limit]
        return {"columns": self.columns, "rows": [list(r) for r in rows], "row_count": len(self.rows),
                "truncated": self.truncated, "elapsed_s": round(self.elapsed_s, 4)}


class _Watchdog:
    """Timer threads: at the deadline call ``interrupt``; if the statement still runs
    ``grace_s`` later, call ``abort`` (drop the connection).  Inert once exited."""

    def __init__(self, timeout_s: float, interrupt: Callable[[], None],
                 abort: Callable[[], None] | None = None, grace_s: float = 1.0) -> None:
        self.deadline = time.monotonic() + timeout_s
        self.fired = False
        self.aborted = False
        self._steps = [(interrupt, max(0.0, timeout_s))] + ([(abort, grace_s)] if abort else [])
        self._armed = True
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def __enter__(self) -> "_Watchdog":
        self._schedule(0)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:  # after this, no timer can touch a later statement
            self._armed = False
            if self._timer is not None:
                self._timer.cancel()

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def _schedule(self, step: int) -> None:
        self._timer = threading.Timer(self._steps[step][1], self._fire, args=(step,))
        self._timer.daemon = True
        self._timer.start()

    def _fire(self, step: int) -> None:
        with self._lock:
            if not self._armed:
                return
            self.fired = True
            self.aborted = self.aborted or step > 0
            try:
                self._steps[step][0]()
            except Exception:  # noqa: BLE001 - a closed connection: nothing left to stop
                pass
            if step + 1 < len(self._steps):
                self._schedule(step + 1)


def _shutdown_socket(raw: Any) -> None:
    """Close a PostgreSQL connection's socket under a blocked call (it then fails at once)."""
    with socket.socket(fileno=os.dup(raw.fileno())) as sock:
        sock.shutdown(socket.SHUT_RDWR)


def _cell_bytes(value: Any) -> int:
    """Approximate size of one result value."""
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, (list, tuple, dict)):
        return len(str(value))
    return 8


def _sqlite_authorizer(action: int, arg1: str | None, arg2: str | None, *_: object) -> int:
    """Refuse pragma writes and file/extension functions, whatever the SQL text said."""
    if action == sqlite3.SQLITE_PRAGMA and arg2 is not None and (arg1 or "").lower() not in _READ_PRAGMAS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in FORBIDDEN["sqlite"]:
        return sqlite3.SQLITE_DENY
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _pg_session_start(dbapi_connection: Any, _record: Any) -> None:
    """Make a new PostgreSQL session read-only (psycopg also begins READ ONLY)."""
    dbapi_connection.autocommit = True
    try:
        with dbapi_connection.cursor() as cur:
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    finally:
        dbapi_connection.autocommit = False
    dbapi_connection.read_only = True


def _pg_session_reset(dbapi_connection: Any, _record: Any, state: Any) -> None:
    """On return to the pool: roll back, reset settings, drop advisory locks, verify.

    Raising here makes SQLAlchemy invalidate (close) the connection.
    """
    dbapi_connection.rollback()
    if state.terminate_only:
        return
    dbapi_connection.autocommit = True
    try:
        with dbapi_connection.cursor() as cur:
            for statement in _PG_RESET:
                cur.execute(statement)
            cur.execute(_PG_VERIFY)
            read_only, locks = cur.fetchone()
    finally:
        dbapi_connection.autocommit = False
    if read_only != "on" or locks:
        raise DatabaseError(f"session not clean after reset (read_only={read_only}, advisory locks={locks})")


def _sqlite_session_reset(dbapi_connection: Any, _record: Any, state: Any) -> None:
    dbapi_connection.rollback()
    if not state.terminate_only and dbapi_connection.execute("PRAGMA query_only").fetchone()[0] != 1:
        raise DatabaseError("SQLite connection lost query_only")


def _backend_name(url: str) -> str:
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in ("sqlite", "postgresql", "postgres", "duckdb"):
        raise DatabaseError(f"unsupported database URL {url!r}",
                            hint="use sqlite:///path.db, postgresql://user@host/db or duckdb:///path.duckdb")
    return "postgresql" if scheme == "postgres" else scheme


@dataclass
class Database:
    """A read-only handle on one database (see the module docstring for the guarantees).

    ``max_bytes`` caps the fetched result (approximate bytes of all cells);
    ``max_value_bytes`` caps any string/blob a SQLite query builds or reads;
    ``duckdb_memory_limit`` is DuckDB's ``memory_limit``.
    """

    url: str
    timeout_s: float = 10.0
    max_rows: int = 1000
    max_bytes: int = 64 * 2**20
    max_value_bytes: int = 256 * 2**10
    duckdb_memory_limit: str = "1GB"
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
        if self.backend == "sqlite":
            return self._sqlite_engine()
        if self.backend == "postgresql":
            return self._postgres_engine()
        return self._duckdb_engine()

    def _sqlite_engine(self) -> "Engine":
        from sqlalchemy import create_engine, event

        path = self.url.split(":///", 1)[-1] if ":///" in self.url else ""
        if not path or path == ":memory:" or not Path(path).is_file():
            raise DatabaseError(f"SQLite database file not found: {path or self.url!r}",
                                hint="give an existing file as sqlite:///path/to/file.db")
        uri = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
        value_bytes = self.max_value_bytes

        def connect() -> sqlite3.Connection:
            con = sqlite3.connect(uri, uri=True, check_same_thread=False)
            con.execute("PRAGMA query_only = ON")
            con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, value_bytes)
            con.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
            con.set_authorizer(_sqlite_authorizer)
            return con

        engine = create_engine("sqlite://", creator=connect)
        event.listen(engine, "reset", _sqlite_session_reset)
        return engine

    def _postgres_engine(self) -> "Engine":
        from sqlalchemy import create_engine, event

        url = self.url.replace("postgres://", "postgresql://", 1)
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        ms = max(1, int(self.timeout_s * 1000))
        engine = create_engine(url, connect_args={
            "options": f"-c default_transaction_read_only=on -c statement_timeout={ms}",
            "connect_timeout": 10})
        event.listen(engine, "connect", _pg_session_start)
        event.listen(engine, "reset", _pg_session_reset)
        return engine

    def _duckdb_engine(self) -> "Engine":
        from sqlalchemy import create_engine

        path = self.url.split(":///", 1)[-1]
        if not Path(path).is_file():
            raise DatabaseError(f"DuckDB database file not found: {path!r}",
                                hint="give an existing file as duckdb:///path/to/file.duckdb")
        config = {"enable_external_access": False, "autoload_known_extensions": False,
                  "autoinstall_known_extensions": False, "memory_limit": self.duckdb_memory_limit,
                  "lock_configuration": True}
        return create_engine(self.url, connect_args={"read_only": True, "config": config})

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
        """Run one SELECT (checked first) and return at most ``max_rows`` rows / ``max_bytes``.

        Raises :class:`.safety.UnsafeQueryError` before touching the database,
        :class:`QueryTimeout` when interrupted, :class:`DatabaseError` on SQL errors.
        """
        if checked:
            query = check_select(sql, self.dialect).sql
        else:
            query = sql or ""
            require_encodable(query, "SQL statement", DatabaseError)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        limit = self.max_rows if max_rows is None else max_rows
        started = time.perf_counter()
        try:
            with self.engine.connect() as conn:
                raw = conn.connection.driver_connection
                dog = self._watchdog(raw, timeout)
                try:
                    with dog:
                        columns, rows, truncated = self._run(raw, query, timeout, limit, dog)
                except Exception as exc:  # noqa: BLE001 - DB-API errors of three drivers
                    if dog.aborted:
                        conn.invalidate()  # its socket was shut down: never back to the pool
                    raise self._translate(exc, timeout, dog) from None
        except OpenAutoGLMError:
            raise
        except Exception as exc:  # noqa: BLE001 - opening the connection failed
            raise self._translate(exc, timeout, None) from None
        return QueryResult(columns, rows, truncated, time.perf_counter() - started, query)

    def _watchdog(self, raw: Any, timeout: float) -> _Watchdog:
        """The deadline for one statement: interrupt it, and (PostgreSQL) drop the
        connection if the server does not stop (a single long function call ignores cancels)."""
        if self.backend == "postgresql":
            grace = min(1.0, max(0.25, timeout / 2))
            return _Watchdog(timeout, lambda: raw.cancel_safe(timeout=5.0), lambda: _shutdown_socket(raw), grace)
        return _Watchdog(timeout, raw.interrupt)

    def _run(self, raw: Any, query: str, timeout: float, limit: int,
             dog: _Watchdog) -> tuple[list[str], list[tuple], bool]:
        if self.backend == "sqlite":
            raw.set_progress_handler(lambda: 1 if dog.expired() else 0, 1000)  # second layer
            cur = raw.cursor()
            try:
                cur.execute(query)
                return self._fetch(cur, limit)
            finally:
                cur.close()
                raw.set_progress_handler(None, 0)
        if self.backend == "postgresql":
            return self._run_postgres(raw, query, timeout, limit, dog)
        cur = raw.cursor()
        cur.execute(query)
        return self._fetch(cur, limit)

    def _run_postgres(self, raw: Any, query: str, timeout: float, limit: int,
                      dog: _Watchdog) -> tuple[list[str], list[tuple], bool]:
        try:
            with raw.cursor() as setup:
                setup.execute("SET TRANSACTION READ ONLY")
                setup.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
            with raw.cursor(name="openautoglm_query") as cur:  # server-side: only fetched rows travel
                cur.execute(query)
                return self._fetch(cur, limit)
        finally:
            if not dog.aborted:
                raw.rollback()

    def _fetch(self, cur: Any, limit: int) -> tuple[list[str], list[tuple], bool]:
        """At most ``limit`` rows and about ``max_bytes`` bytes; the flag says more existed."""
        columns = [d[0] for d in (cur.description or [])]
        rows: list[tuple] = []
        size = 0
        while len(rows) <= limit:
            batch = cur.fetchmany(min(limit + 1 - len(rows), 5000))
            if not batch:
                break
            for row in batch:
                size += sum(_cell_bytes(v) for v in row)
                if size > self.max_bytes:
                    return columns, rows, True
                rows.append(tuple(row))
        return columns, rows[:limit], len(rows) > limit

    def _translate(self, exc: Exception, timeout: float, dog: _Watchdog | None) -> DatabaseError:
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        lowered = text.lower()
        if dog is not None and dog.aborted:
            return QueryTimeout(f"query interrupted after {timeout:g} s (the server did not stop; its connection "
                                "was dropped)", hint="simplify the question or raise timeout_s")
        if (dog is not None and dog.fired) or "interrupt" in lowered or "statement timeout" in lowered \
                or "canceling statement" in lowered:
            return QueryTimeout(f"query interrupted after {timeout:g} s", hint="simplify the question or raise timeout_s")
        if "string or blob too big" in lowered:
            return DatabaseError(f"{text} (values are capped at {self.max_value_bytes:,} bytes)",
                                 hint="raise max_value_bytes if the database holds larger values")
        return DatabaseError(text)

    # -- schema --------------------------------------------------------------------------
    def schema(self, *, sample_values: int = 3) -> "Schema":
        """The database's tables, columns, keys and sample values (cached)."""
        if self._schema is None:
            from .schema import introspect

            self._schema = introspect(self, sample_values=sample_values)
        return self._schema
