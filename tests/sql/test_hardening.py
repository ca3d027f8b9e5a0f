"""Issue 16 (SQL safety): allow-listed functions on resolved names, a PostgreSQL session
that stays read-only and holds no locks, a timer deadline, result caps, and clear errors
for deep nesting and lone surrogates -- on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import json
import secrets
import threading
import time
from pathlib import Path
from typing import Iterator, Sequence

import psycopg
import pytest

from openautoglm.backends.base import Completion, GenerationRequest
from openautoglm.backends.fake import FakeBackend, prompt_text
from openautoglm.errors import OpenAutoGLMError
from openautoglm.sql.database import Database, DatabaseError, QueryTimeout, _Watchdog
from openautoglm.sql.parser import SemanticParser
from openautoglm.sql.safety import (FORBIDDEN_FUNCTIONS, MAX_NESTING, UnsafeQueryError, allowed_functions,
                                    check_select, transpile)

from .conftest import PostgresServer
from .hostile import (ADVISORY_LOCKS, DEEP_NESTING, POSTGRES_UNINTERRUPTIBLE, QUALIFIED_FILE_READS,
                      SETTINGS_CHANGES, SQLITE_EXPENSIVE_STEPS, SURROGATE_QUESTIONS, SURROGATE_SQL)


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def secret_file(postgres_server: PostgresServer) -> tuple[Path, str]:
    """A file the PostgreSQL server can read, holding a random marker."""
    marker = f"SECRET-{secrets.token_hex(8)}"
    path = postgres_server.root / "secret.txt"
    path.write_text(marker + "\n")
    path.chmod(0o644)
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:  # not vacuous: the server could read it
        assert marker in admin.execute("SELECT pg_read_file(%s)", (str(path),)).fetchone()[0]
    return path, marker


@pytest.fixture()
def pg(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url, timeout_s=5.0, max_rows=100)
    yield database
    database.close()


@pytest.fixture()
def lite(shop_db: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{shop_db}", timeout_s=5.0, max_rows=100)
    yield database
    database.close()


def _admin(url: str, sql: str) -> tuple:
    with psycopg.connect(url, autocommit=True) as con:
        return con.execute(sql).fetchone()


def _advisory_locks(url: str) -> int:
    return _admin(url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")[0]


def _session(db: Database) -> tuple:
    """(backend pid, default_transaction_read_only, transaction_read_only) of the pooled session."""
    return db.execute("SELECT pg_backend_pid(), current_setting('default_transaction_read_only'), "
                      "current_setting('transaction_read_only')", checked=False).rows[0]


# -- the allow-list -------------------------------------------------------------------------------
@pytest.mark.parametrize("statement", QUALIFIED_FILE_READS)
def test_qualified_and_quoted_file_functions_are_refused_and_read_nothing(
        pg: Database, secret_file: tuple[Path, str], statement: str) -> None:
    path, marker = secret_file
    with pytest.raises(UnsafeQueryError) as err:
        pg.execute(statement.replace("{secret}", str(path)))
    text = str(err.value)
    assert marker not in text
    assert any(name in text.lower() for name in ("pg_read_file", "pg_read_binary_file", "lo_import", "lo_get",
                                                  "pg_ls_dir", "pg_stat_file")), text


def test_lo_import_creates_no_large_object(pg: Database, secret_file: tuple[Path, str], postgres_url: str) -> None:
    count = "SELECT count(*) FROM pg_largeobject_metadata"
    before = _admin(postgres_url, count)
    for statement in QUALIFIED_FILE_READS:
        if "lo_import" in statement:
            with pytest.raises(UnsafeQueryError):
                pg.execute(statement.replace("{secret}", str(secret_file[0])))
    assert _admin(postgres_url, count) == before


@pytest.mark.parametrize("statement", SETTINGS_CHANGES)
def test_settings_functions_are_refused_and_the_session_stays_read_only(pg: Database, statement: str) -> None:
    with pytest.raises(UnsafeQueryError) as err:
        pg.execute(statement)
    assert "set_config" in str(err.value) or "current_setting" in str(err.value)
    _, default_ro, txn_ro = _session(pg)
    assert (default_ro, txn_ro) == ("on", "on")


@pytest.mark.parametrize("statement", ADVISORY_LOCKS)
def test_advisory_lock_functions_are_refused(pg: Database, postgres_url: str, statement: str) -> None:
    with pytest.raises(UnsafeQueryError) as err:
        pg.execute(statement)
    assert "advisory" in str(err.value)
    assert _advisory_locks(postgres_url) == 0


@pytest.mark.parametrize(("sql", "dialect", "name"), [
    ("SELECT my_udf(1)", "sqlite", "my_udf"),
    ("SELECT zeroblob(10)", "sqlite", "zeroblob"),
    ("SELECT myschema.upper(name) FROM products", "postgres", "myschema.upper"),
    ('SELECT "UPPER"(name) /* sqlglot.anonymous */ FROM products', "postgres", "UPPER"),
    ('SELECT "regexp_matches"(name, \'a\') FROM products', "postgres", "regexp_matches"),
    ('SELECT pg_catalog."regexp_matches"(name, \'a\') FROM products', "postgres", "regexp_matches"),
    ("SELECT x.upper() FROM t", "duckdb", "x.upper"),
    ("SELECT * FROM read_csv('/etc/passwd')", "duckdb", "read_csv"),
    ("SELECT * FROM pg_catalog.pg_ls_dir('.')", "postgres", "pg_catalog.pg_ls_dir"),
    ("SELECT CAST(name AS evil_type) FROM products", "postgres", "evil_type"),
])
def test_refusals_name_the_function(sql: str, dialect: str, name: str) -> None:
    with pytest.raises(UnsafeQueryError) as err:
        check_select(sql, dialect)
    assert name in err.value.message


@pytest.mark.parametrize(("sql", "dialect"), [
    ("SELECT pg_catalog.upper(name), pg_catalog.lower(name) FROM products", "postgres"),
    ("SELECT \"upper\"(name), LENGTH(name) FROM products", "postgres"),
    ("SELECT date_trunc('year', now()), to_char(now(), 'YYYY'), string_agg(name, ',') FROM products", "postgres"),
    ("SELECT count(*) FROM generate_series(1, 3) AS g", "postgres"),
    ("SELECT json_extract('{\"a\": 1}', '$.a'), julianday('2024-01-01'), printf('%d', 1), total(price) FROM products",
     "sqlite"),
    ("SELECT row_number() OVER (ORDER BY price), rank() OVER (PARTITION BY category ORDER BY price) FROM products",
     "sqlite"),
    ("SELECT list_value(1, 2), strftime(now(), '%Y'), upper(name) FROM products", "duckdb"),
])
def test_functions_that_compute_on_rows_are_allowed(sql: str, dialect: str) -> None:
    assert check_select(sql, dialect).sql


def test_allow_lists_exclude_every_forbidden_function() -> None:
    for dialect in ("sqlite", "postgres", "duckdb"):
        names = allowed_functions(dialect)
        assert len(names) > 200 and not names & FORBIDDEN_FUNCTIONS


def _spider_queries(spider: Path, *, train: bool) -> list[str]:
    queries = [item["query"] for item in json.loads((spider / "dev.json").read_text())]
    pairs = spider / "train_pairs.jsonl"
    if train and pairs.is_file():
        queries += [json.loads(line)["query"] for line in pairs.read_text().splitlines() if line.strip()]
    return queries


def _refused(queries: Sequence[str], dialect: str) -> list[tuple[str, str]]:
    refused = []
    for sql in queries:
        try:
            check_select(sql if dialect == "sqlite" else transpile(sql, read="sqlite", write=dialect), dialect)
        except UnsafeQueryError as exc:
            refused.append((sql, exc.message))
    return refused


def test_no_spider_dev_gold_query_is_refused(spider_dir: Path) -> None:
    """The allow-list is not too narrow for the benchmark's own queries."""
    queries = _spider_queries(spider_dir, train=False)
    assert len(queries) > 500
    assert _refused(queries, "sqlite") == []


@pytest.mark.slow
@pytest.mark.parametrize("dialect", ["sqlite", "postgres", "duckdb"])
def test_no_spider_gold_query_is_refused_in_any_dialect(spider_dir: Path, dialect: str) -> None:
    queries = _spider_queries(spider_dir, train=True)
    assert _refused(queries, dialect) == []


# -- PostgreSQL: read-only session, reset on return ------------------------------------------------
def test_postgres_writes_inside_a_select_meet_the_read_only_transaction(pg: Database, postgres_url: str) -> None:
    sequence = "SELECT last_value, is_called FROM order_numbers"
    before = _admin(postgres_url, sequence)
    for statement in ("SELECT nextval('order_numbers')", "SELECT setval('order_numbers', 99)"):
        with pytest.raises(DatabaseError) as err:
            pg.execute(statement, checked=False)
        assert "read-only transaction" in err.value.message
    assert _admin(postgres_url, sequence) == before


def test_postgres_large_objects_do_not_outlive_the_query(pg: Database, postgres_url: str) -> None:
    """lo_create is allowed in a read-only transaction; the rollback undoes it."""
    count = "SELECT count(*) FROM pg_largeobject_metadata"
    before = _admin(postgres_url, count)
    assert pg.execute("SELECT lo_create(0)", checked=False).rows
    assert _admin(postgres_url, count) == before


def test_postgres_session_cannot_be_flipped_even_past_the_checker(pg: Database) -> None:
    pid, _, _ = _session(pg)
    flipped = pg.execute("SELECT set_config('default_transaction_read_only', 'off', false)", checked=False)
    assert flipped.rows == [("off",)]  # it ran, inside the query's own transaction
    again, default_ro, txn_ro = _session(pg)
    assert again == pid  # the same pooled session came back ...
    assert (default_ro, txn_ro) == ("on", "on")  # ... read-only again
    with pytest.raises(DatabaseError) as err:
        pg.execute("SELECT nextval('order_numbers')", checked=False)
    assert "read-only" in err.value.message


def test_postgres_advisory_locks_are_released_on_return_to_the_pool(pg: Database, postgres_url: str) -> None:
    pid, _, _ = _session(pg)
    for statement in ("SELECT pg_advisory_lock(16)", "SELECT pg_try_advisory_lock_shared(17)",
                      "SELECT pg_catalog.\"pg_try_advisory_lock\"(18)"):
        pg.execute(statement, checked=False)
        assert _advisory_locks(postgres_url) == 0
    assert _session(pg)[0] == pid  # released by the reset, not by dropping the connection


def test_postgres_large_result_streams_only_the_rows_kept(pg: Database) -> None:
    """A server-side cursor: 60 million rows (a streamed cross join) are not all computed
    and sent to keep 10 (a client-side cursor ran into the 5 s timeout here)."""
    tables = ", ".join(f"products t{i}" for i in range(10))
    result = pg.execute(f"SELECT t0.id, t9.name FROM {tables}", max_rows=10, timeout_s=5.0)
    assert len(result.rows) == 10 and result.truncated


@pytest.mark.slow
def test_postgres_uninterruptible_call_returns_near_the_deadline(pg: Database) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeout) as err:
        pg.execute(POSTGRES_UNINTERRUPTIBLE, timeout_s=0.5)
    assert time.monotonic() - started < 5.0  # 10x the deadline; the call itself runs for many seconds
    assert "dropped" in err.value.message
    assert pg.execute("SELECT count(*) FROM products").rows == [(6,)]  # a fresh connection took its place


# -- SQLite: timer deadline, value and result caps -------------------------------------------------
@pytest.mark.slow
def test_sqlite_deadline_holds_when_each_step_is_expensive(lite: Database) -> None:
    started = time.monotonic()
    with pytest.raises(QueryTimeout):
        lite.execute(SQLITE_EXPENSIVE_STEPS["instr"], timeout_s=1.0)
    assert time.monotonic() - started < 10.0  # a progress handler alone took ~40 s here
    assert lite.execute("SELECT count(*) FROM products").rows == [(6,)]


@pytest.mark.slow
@pytest.mark.parametrize("checked", [True, False])
def test_sqlite_issue_zeroblob_query_stops_at_once(lite: Database, checked: bool) -> None:
    started = time.monotonic()
    with pytest.raises(OpenAutoGLMError) as err:
        lite.execute(SQLITE_EXPENSIVE_STEPS["zeroblob"], timeout_s=2.0, checked=checked)
    assert time.monotonic() - started < 20.0
    expected = "zeroblob" if checked else "too big"
    assert expected in err.value.message


def test_sqlite_values_are_capped(shop_db: Path) -> None:
    big = "SELECT length(replace(printf('%.*c', 200000, 'x'), 'x', 'yy'))"
    with Database(f"sqlite:///{shop_db}") as db:
        with pytest.raises(DatabaseError) as err:
            db.execute(big)
        assert "too big" in err.value.message and "max_value_bytes" in str(err.value)
    with Database(f"sqlite:///{shop_db}", max_value_bytes=1_000_000) as db:
        assert db.execute(big).rows == [(400000,)]


def test_sqlite_engine_refuses_settings_and_attach_past_the_checker(lite: Database, tmp_path: Path) -> None:
    for statement in ("PRAGMA query_only = OFF", "PRAGMA writable_schema = ON",
                      f"ATTACH DATABASE '{tmp_path / 'x.db'}' AS x"):
        with pytest.raises(DatabaseError):
            lite.execute(statement, checked=False)
    assert lite.execute("PRAGMA query_only", checked=False).rows == [(1,)]
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_results_are_capped_in_bytes(request: pytest.FixtureRequest, backend: str) -> None:
    db: Database = request.getfixturevalue("lite" if backend == "sqlite" else "pg")
    full = db.execute("SELECT name FROM products ORDER BY id")
    db.max_bytes = 12  # "Laptop" + "Phone" = 11 bytes; "Desk" would pass the cap
    capped = db.execute("SELECT name FROM products ORDER BY id")
    assert capped.rows == full.rows[:2] and capped.truncated and not full.truncated


def test_watchdog_interrupts_only_while_armed() -> None:
    calls: list[str] = []
    with _Watchdog(0.05, lambda: calls.append("interrupt")) as dog:
        time.sleep(0.5)
    assert calls == ["interrupt"] and dog.fired and not dog.aborted
    with _Watchdog(0.2, lambda: calls.append("late")):
        pass
    time.sleep(0.5)
    assert calls == ["interrupt"]  # disarmed on exit: never touches a later statement


def test_watchdog_aborts_after_the_grace_period() -> None:
    calls: list[str] = []
    done = threading.Event()
    with _Watchdog(0.05, lambda: calls.append("interrupt"), lambda: (calls.append("abort"), done.set()), 0.05) as dog:
        done.wait(5.0)
    assert calls == ["interrupt", "abort"] and dog.aborted


def test_duckdb_configuration_is_locked_and_files_unreachable(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "shop.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE products AS SELECT 1 AS id, 'Laptop' AS name")
    con.close()
    with Database(f"duckdb:///{path}") as db:
        for statement in ("SET memory_limit = '100GB'", "SET enable_external_access = true",
                          "SELECT * FROM read_text('/etc/hostname')"):
            with pytest.raises(DatabaseError):
                db.execute(statement, checked=False)
        assert db.execute("SELECT name FROM products").rows == [("Laptop",)]


# -- deep nesting and lone surrogates: clear errors, never a crash ----------------------------------
@pytest.mark.parametrize("dialect", ["sqlite", "postgres", "duckdb"])
@pytest.mark.parametrize("sql", DEEP_NESTING, ids=lambda s: s[7:20])
def test_deep_nesting_is_a_clear_refusal(sql: str, dialect: str) -> None:
    with pytest.raises(UnsafeQueryError) as err:
        check_select(sql, dialect)
    assert err.value.hint and ("nest" in err.value.message)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    depth = MAX_NESTING - 1
    assert check_select("SELECT " + "(" * depth + "1" + ")" * depth, "sqlite").sql


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_deep_nesting_and_surrogates_in_execute(request: pytest.FixtureRequest, backend: str) -> None:
    db: Database = request.getfixturevalue("lite" if backend == "sqlite" else "pg")
    for sql in DEEP_NESTING + SURROGATE_SQL:
        with pytest.raises(UnsafeQueryError):
            db.execute(sql)
        try:  # past the checker the engine answers: a result or a DatabaseError, never a crash
            db.execute(sql, checked=False)
        except DatabaseError:
            pass
    assert db.execute("SELECT count(*) FROM products").rows == [(6,)]


@pytest.mark.parametrize("sql", SURROGATE_SQL)
def test_lone_surrogates_in_sql_are_a_clear_refusal(sql: str) -> None:
    with pytest.raises(UnsafeQueryError) as err:
        check_select(sql, "postgres")
    assert "surrogate" in err.value.message and err.value.hint
    with pytest.raises(UnsafeQueryError):
        transpile(sql, read="sqlite", write="postgres")


class _TokenizingModel(FakeBackend):
    """Encodes prompts like a real tokenizer, which raises TypeError on lone surrogates."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        for request in requests:
            text = prompt_text(request.prompt)
            if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
                raise TypeError("TextInputSequence must be str")
        return super().generate(requests)


@pytest.mark.parametrize("question", SURROGATE_QUESTIONS)
def test_lone_surrogates_in_questions_are_a_clear_error(shop_db: Path, question: str) -> None:
    parser = SemanticParser(_TokenizingModel(responses=["SELECT name FROM products"]), f"sqlite:///{shop_db}",
                            n_candidates=1)
    with pytest.raises(OpenAutoGLMError) as err:
        parser.parse(question)
    assert "surrogate" in err.value.message and err.value.hint
    assert parser.parse("Which products are there?").ok  # the parser still works
    with pytest.raises(OpenAutoGLMError):
        parser.parse("Which products?", history=[(question, "SELECT 1")])
