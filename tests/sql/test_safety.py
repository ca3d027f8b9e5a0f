"""The read-only guarantees, on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from openautoglm.sql.database import Database, DatabaseError, QueryTimeout
from openautoglm.sql.safety import UnsafeQueryError, check_select

from .hostile import REFUSED, SLOW

SHOP_STATE = "SELECT (SELECT count(*) FROM products), (SELECT count(*) FROM sales), (SELECT sum(price) FROM products)"


def _state(db: Database) -> tuple:
    tables = db.execute("SELECT name FROM sqlite_master ORDER BY name" if db.backend == "sqlite" else
                        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                        "ORDER BY table_name").rows
    return tuple(db.execute(SHOP_STATE).rows[0]), tuple(tables)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, shop_db: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{shop_db}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    database = Database(url, timeout_s=5.0, max_rows=100)
    yield database
    database.close()


def test_at_least_fifty_hostile_statements() -> None:
    assert len(REFUSED) >= 50


@pytest.mark.parametrize("statement", REFUSED)
def test_hostile_statement_is_refused_and_changes_nothing(db: Database, statement: str, tmp_path: Path) -> None:
    target = tmp_path / "pwned.db"
    before = _state(db)
    with pytest.raises(UnsafeQueryError):
        db.execute(statement.replace("{file}", str(target)))
    assert _state(db) == before
    assert not target.exists()


@pytest.mark.parametrize("statement", [
    "DELETE FROM sales", "UPDATE products SET price = 0", "DROP TABLE products",
    "INSERT INTO products VALUES (50, 'x', 'y', 1)", "CREATE TABLE pwned (x INTEGER)",
])
def test_engine_refuses_writes_even_without_the_syntax_check(db: Database, statement: str) -> None:
    """Defence in depth: the connection itself is read-only.  PostgreSQL runs statements
    through a server-side cursor, which only accepts a query: a bare write cannot even be
    declared (writes inside a SELECT meet the read-only transaction: test_hardening)."""
    before = _state(db)
    with pytest.raises(DatabaseError) as err:
        db.execute(statement, checked=False)
    message = err.value.message.lower()
    if db.backend == "sqlite":
        assert "readonly database" in message
    else:
        assert "syntax error" in message
    assert _state(db) == before


def test_sqlite_engine_refuses_attach_without_the_syntax_check(shop_db: Path, tmp_path: Path) -> None:
    target = tmp_path / "attached.db"
    with Database(f"sqlite:///{shop_db}") as db:
        with pytest.raises(DatabaseError):
            db.execute(f"ATTACH DATABASE '{target}' AS x", checked=False)
            db.execute("CREATE TABLE x.t (a INTEGER)", checked=False)
    assert not target.exists() or sqlite3.connect(target).execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_slow_query_is_really_interrupted(db: Database) -> None:
    with pytest.raises(QueryTimeout):
        db.execute(SLOW[db.dialect], timeout_s=0.5)
    # the connection is usable afterwards and nothing changed
    assert db.execute("SELECT count(*) FROM products").rows == [(6,)]


def test_row_limit_truncates(db: Database) -> None:
    result = db.execute("SELECT a.id, b.id FROM products a, sales b", max_rows=10)
    assert len(result.rows) == 10 and result.truncated
    full = db.execute("SELECT a.id, b.id FROM products a, sales b", max_rows=1000)
    assert len(full.rows) == 42 and not full.truncated


@pytest.mark.parametrize("sql", [
    "SELECT name FROM products -- ; DROP TABLE products",
    "SELECT name FROM products /* ; DELETE FROM sales */ WHERE price > 100",
    "SELECT 'DROP TABLE products; --' AS s",
    "WITH expensive AS (SELECT * FROM products WHERE price > 100) SELECT count(*) FROM expensive",
    "SELECT category FROM products UNION SELECT 'x'",
])
def test_harmless_selects_with_tricky_text_run_without_effect(db: Database, sql: str) -> None:
    before = _state(db)
    result = db.execute(sql)
    assert result.rows
    assert _state(db) == before


def test_checked_sql_is_what_runs() -> None:
    checked = check_select("select name from products -- trailing ; drop table x", "sqlite")
    assert "drop" not in checked.sql.lower()
    assert checked.tables == ("products",)


def test_missing_sqlite_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError) as err:
        Database(f"sqlite:///{tmp_path / 'nope.db'}").execute("SELECT 1")
    assert "not found" in str(err.value) and "sqlite:///" in str(err.value)


def test_unsupported_url_is_rejected() -> None:
    with pytest.raises(DatabaseError) as err:
        Database("mongodb://localhost/x")
    assert "unsupported database URL" in str(err.value)


def test_sqlite_file_is_not_modified(shop_db: Path) -> None:
    before = shop_db.read_bytes()
    with Database(f"sqlite:///{shop_db}") as db:
        for statement in REFUSED[:10]:
            with pytest.raises(UnsafeQueryError):
                db.execute(statement)
        db.execute("SELECT * FROM products")
    assert shop_db.read_bytes() == before
