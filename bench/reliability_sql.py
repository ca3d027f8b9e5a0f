"""Issue 16 (SQL safety): hostile SQL against a real SQLite file and a real PostgreSQL server.

    .venv/bin/python bench/reliability_sql.py            # prints one table (about 2 minutes)
    .venv/bin/python bench/reliability_sql.py --json     # the rows as JSON

Every input runs through ``Database.execute`` twice per engine: as the product runs it
(``checker+engine``: the sqlglot allow-list, then the engine's read-only session, timer
deadline and caps) and with the checker bypassed (``engine only``, ``checked=False``), to
measure what the engine layers hold on their own.  PostgreSQL is a throwaway server
started like ``tests/sql/conftest.py`` does, and is queried as its *superuser* (the worst
case: a SELECT-only role could not read server files even past the checker).

Counted per engine and layer: executed writes (the database or sequence changed, or an
output file appeared), files read (a random marker from a file the server can read shows
up in a result or an error), settings changed (the pooled session is no longer
read-only / its limits changed), locks left (inputs after which more advisory or table
locks are held, or the SQLite file is locked), timeout overruns (a call returned later than 2x its deadline) and
uncaught exceptions (anything but the library's own errors).  ``run_sql_section()``
returns the rows for ``bench/reliability.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from openautoglm.errors import OpenAutoGLMError
from openautoglm.sql.database import Database

DEADLINE_S = 2.0
COLUMNS = ["engine", "layer", "inputs", "executed writes", "files read", "settings changed", "locks left",
           "timeout overruns", "uncaught exceptions"]


@dataclass(frozen=True)
class Hostile:
    """One hostile input; ``sql`` per engine (``{secret}``/``{out}`` are filled in)."""

    kind: str  # file read | write | setting | lock | expensive | nesting | surrogate
    sql: dict[str, str]


def _both(kind: str, sql: str) -> Hostile:
    return Hostile(kind, {"sqlite": sql, "postgres": sql})


def _pg(kind: str, sql: str) -> Hostile:
    return Hostile(kind, {"postgres": sql})


def _lite(kind: str, sql: str) -> Hostile:
    return Hostile(kind, {"sqlite": sql})


HOSTILE: list[Hostile] = [
    # file reads (the secret file holds a random marker)
    _pg("file read", 'SELECT pg_catalog."pg_read_file"(\'{secret}\')'),
    _pg("file read", "SELECT pg_read_file('{secret}')"),
    _pg("file read", 'SELECT "pg_read_file"(\'{secret}\')'),
    _pg("file read", "SELECT PG_CATALOG.PG_READ_FILE('{secret}')"),
    _pg("file read", 'SELECT convert_from(pg_catalog."pg_read_binary_file"(\'{secret}\'), \'UTF8\')'),
    _pg("file read", 'SELECT * FROM pg_catalog."pg_read_file"(\'{secret}\') AS t'),
    _pg("file read", 'SELECT lo_get(pg_catalog."lo_import"(\'{secret}\'))'),
    _pg("file read", "SELECT pg_read_file('{secret}') /* sqlglot.anonymous */"),
    _pg("file read", "SELECT CAST(pg_read_file('{secret}') AS INTEGER)"),
    _lite("file read", "SELECT readfile('{secret}')"),
    _lite("file read", "SELECT load_extension('{secret}')"),
    _lite("file read", "ATTACH DATABASE '{secret}' AS s"),
    # writes
    _both("write", "DELETE FROM sales"),
    _both("write", "UPDATE products SET price = 0"),
    _both("write", "CREATE TABLE pwned (x INTEGER)"),
    _both("write", "WITH gone AS (DELETE FROM sales RETURNING *) SELECT * FROM gone"),
    _both("write", "SELECT * INTO pwned FROM products"),
    _pg("write", "SELECT nextval('order_numbers')"),
    _pg("write", "SELECT pg_catalog.\"setval\"('order_numbers', 99)"),
    _pg("write", "SELECT lo_create(0)"),
    _pg("write", "SELECT lo_export(4242, '{out}')"),
    _pg("write", 'SELECT pg_catalog."lo_export"(4242, \'{out}\')'),
    _pg("write", "COPY products TO '{out}'"),
    _lite("write", "VACUUM INTO '{out}'"),
    _lite("write", "SELECT writefile('{out}', 'x')"),
    _lite("write", "ATTACH DATABASE '{out}' AS o"),
    # settings
    _pg("setting", 'SELECT pg_catalog."set_config"(\'default_transaction_read_only\', \'off\', false)'),
    _pg("setting", "SELECT set_config('default_transaction_read_only', 'off', false)"),
    _pg("setting", "SELECT pg_catalog.set_config('statement_timeout', '0', false)"),
    _pg("setting", "SET default_transaction_read_only = off"),
    _pg("setting", "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE"),
    _lite("setting", "PRAGMA query_only = OFF"),
    _lite("setting", "PRAGMA writable_schema = ON"),
    # locks
    _pg("lock", "SELECT pg_advisory_lock(16)"),
    _pg("lock", "SELECT pg_try_advisory_lock(17)"),
    _pg("lock", "SELECT pg_advisory_lock_shared(18)"),
    _pg("lock", 'SELECT pg_catalog."pg_try_advisory_lock_shared"(19)'),
    _pg("lock", "SELECT name FROM products WHERE pg_try_advisory_lock(id)"),
    _both("lock", "SELECT * FROM products FOR UPDATE"),
    _pg("lock", "LOCK TABLE products IN ACCESS EXCLUSIVE MODE"),
    _lite("lock", "BEGIN EXCLUSIVE"),
    # expensive: each must stop near its deadline
    _both("expensive", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"),
    _lite("expensive", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000) "
                       "SELECT count(*) FROM c WHERE hex(zeroblob(20000000 + x)) != ''"),
    _lite("expensive", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) "
                       "SELECT count(*) FROM c WHERE instr(printf('%.*c', 200000, 'a'), "
                       "printf('%.*c', 100000 + x, 'a') || 'b') > 0"),
    _lite("expensive", "SELECT length(replace(printf('%.*c', 200000000, 'x'), 'x', 'yy'))"),
    _pg("expensive", "SELECT count(*) FROM generate_series(1, 10000000000) AS g"),
    _pg("expensive", "SELECT pg_sleep(30)"),
    _pg("expensive", "SELECT strpos(repeat('a', 400000), 'b' || repeat('a', 200000))"),
    _pg("expensive", "SELECT g, repeat('x', 100) FROM generate_series(1, 10000000) AS g"),
    _both("expensive", "SELECT count(*) FROM products a, products b, products c, products d, products e, "
                       "products f, products g, products h, products i, products j, products k"),
    # deep nesting and lone surrogates
    _both("nesting", "SELECT " + "(" * 3000 + "1" + ")" * 3000),
    _both("nesting", "SELECT " + "NOT " * 3000 + "1"),
    _both("nesting", "SELECT " + "CASE WHEN 1 THEN " * 500 + "1" + " END" * 500),
    _both("surrogate", "SELECT '\ud800'"),
    _both("surrogate", "SELECT name FROM products WHERE name = '\udfff'"),
]

SHOP = [
    "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL, price REAL)",
    "CREATE TABLE sales (id INTEGER PRIMARY KEY, product_id INTEGER, year INTEGER, amount REAL)",
    "INSERT INTO products VALUES (1, 'Laptop', 'Electronics', 900), (2, 'Phone', 'Electronics', 600), "
    "(3, 'Desk', 'Furniture', 250), (4, 'Chair', 'Furniture', 120), (5, 'Novel', 'Books', 15)",
    "INSERT INTO sales VALUES (1, 1, 2023, 1500000), (2, 2, 2023, 800000), (3, 3, 2022, 300000)",
]


# -- servers ------------------------------------------------------------------------------------
def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def throwaway_postgres(root: Path) -> Iterator[str]:
    """A PostgreSQL server on 127.0.0.1 with the shop tables (as in tests/sql/conftest.py);
    yields the superuser URL of the ``shop`` database."""
    import psycopg

    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("PostgreSQL server binaries not found (run scripts/system-deps.sh)")
    data, sock = root / "data", root / "sock"
    sock.mkdir(parents=True)
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        for path in (root, sock):
            shutil.chown(path, "postgres")
        os.chmod(root, 0o755)
        os.chmod(root.parent, 0o755)
    port = _free_port()
    subprocess.run([*as_user, initdb, "-D", str(data), "-U", "owner", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                    f"-p {port} -k {sock} -h 127.0.0.1 -c fsync=off", "start"], check=True, capture_output=True)
    try:
        with psycopg.connect(f"postgresql://owner@127.0.0.1:{port}/postgres", autocommit=True) as con:
            con.execute("CREATE DATABASE shop")
        url = f"postgresql://owner@127.0.0.1:{port}/shop"
        with psycopg.connect(url, autocommit=True) as con:
            for statement in SHOP + ["CREATE SEQUENCE order_numbers", "SELECT lo_from_bytea(4242, 'payload')"]:
                con.execute(statement.replace(" REAL", " DOUBLE PRECISION"))
        yield url
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)


def _sqlite_shop(path: Path) -> Path:
    con = sqlite3.connect(path)
    for statement in SHOP:
        con.execute(statement)
    con.commit()
    con.close()
    return path


# -- probes -----------------------------------------------------------------------------------
@dataclass
class _Target:
    """One engine under test and the trusted probes that look behind its layers."""

    engine: str
    url: str
    work: Path
    secret: Path
    marker: str
    expected_session: tuple = field(default=())

    def state(self) -> Any:
        """Everything a write could change."""
        if self.engine == "sqlite":
            path = Path(self.url.split(":///", 1)[1])
            return hashlib.sha256(path.read_bytes()).hexdigest(), sorted(p.name for p in path.parent.iterdir())
        return self._admin("SELECT (SELECT count(*) FROM products), (SELECT sum(price) FROM products), "
                           "(SELECT count(*) FROM sales), (SELECT last_value FROM order_numbers), "
                           "(SELECT count(*) FROM pg_largeobject_metadata), "
                           "(SELECT count(*) FROM pg_tables WHERE schemaname = 'public')")

    def session(self, db: Database) -> tuple:
        """The pooled session's safety settings, read past the checker."""
        if self.engine == "sqlite":
            return tuple(db.execute(f"PRAGMA {p}", checked=False).rows[0][0] for p in ("query_only", "writable_schema"))
        return db.execute("SELECT current_setting('default_transaction_read_only'), "
                          "current_setting('statement_timeout')", checked=False).rows[0]

    def locks(self) -> int:
        if self.engine == "postgres":
            return self._admin("SELECT count(*) FROM pg_locks WHERE pid <> pg_backend_pid() AND granted "
                               "AND (locktype = 'advisory' OR (locktype = 'relation' AND relation = "
                               "'products'::regclass))")[0]
        con = sqlite3.connect(self.url.split(":///", 1)[1], timeout=0)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.rollback()
            return 0
        except sqlite3.OperationalError:
            return 1
        finally:
            con.close()

    def _admin(self, sql: str) -> tuple:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as con:
            return con.execute(sql).fetchone()


def _run_one(db: Database, target: _Target, sql: str, checked: bool) -> dict[str, int]:
    """Run one input; count what it did."""
    out = target.work / f"out-{secrets.token_hex(4)}"
    text = sql.replace("{secret}", str(target.secret)).replace("{out}", str(out))
    before, locks, started, uncaught = target.state(), target.locks(), time.monotonic(), 0
    try:
        seen = repr(db.execute(text, timeout_s=DEADLINE_S, checked=checked).rows)
    except OpenAutoGLMError as exc:
        seen = str(exc)
    except Exception as exc:  # noqa: BLE001 - what the benchmark counts
        seen, uncaught = repr(exc), 1
    elapsed = time.monotonic() - started
    wrote = int(target.state() != before or out.exists())
    session, locked = target.session(db), target.locks() > locks
    if session != target.expected_session or locked:
        db.close()  # start the next input on a clean session
        _wait_for(lambda: target.locks() <= locks)
    return {"executed writes": wrote, "files read": int(target.marker in seen),
            "settings changed": int(session != target.expected_session), "locks left": int(locked),
            "timeout overruns": int(elapsed > 2 * DEADLINE_S), "uncaught exceptions": uncaught}


def _wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def _measure(target: _Target, checked: bool) -> dict[str, Any]:
    inputs = [h.sql[target.engine] for h in HOSTILE if target.engine in h.sql]
    row: dict[str, Any] = {"engine": target.engine, "layer": "checker+engine" if checked else "engine only",
                           "inputs": len(inputs)}
    db = Database(target.url, timeout_s=DEADLINE_S, max_rows=1000)
    try:
        target.expected_session = target.session(db)
        for sql in inputs:
            for key, value in _run_one(db, target, sql, checked).items():
                row[key] = row.get(key, 0) + value
    finally:
        db.close()
    return row


def _secret(work: Path) -> tuple[Path, str]:
    marker = f"SECRET-{secrets.token_hex(8)}"
    path = work / "secret.txt"
    path.write_text(marker + "\n")
    path.chmod(0o644)
    return path, marker


def run_sql_section() -> list[dict]:
    """One row per engine and layer (see the module docstring)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="reliability_sql_") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        secret, marker = _secret(work)
        lite = _sqlite_shop(work / "shop.db")
        for checked in (True, False):
            rows.append(_measure(_Target("sqlite", f"sqlite:///{lite}", work, secret, marker), checked))
        with throwaway_postgres(work / "pg") as url:
            out_dir = work / "pg"  # the server (another user) may write here, so a write would show
            for checked in (True, False):
                rows.append(_measure(_Target("postgres", url, out_dir, secret, marker), checked))
    return [{k: row.get(k, 0) for k in COLUMNS} for row in rows]


def render(rows: list[dict]) -> str:
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(COLUMNS), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line([r[c] for c in COLUMNS]) for r in rows)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = ap.parse_args()
    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # "falling back to parsing as a Command" notes
    started = time.monotonic()
    rows = run_sql_section()
    print(json.dumps(rows, indent=2) if args.json else render(rows))
    print(f"\n{len(HOSTILE)} hostile inputs, deadline {DEADLINE_S:g} s, {time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    main()
