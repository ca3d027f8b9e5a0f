"""Introspection, schema prompts, schema/value linking and example retrieval on real databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from openautoglm.errors import InputDataError
from openautoglm.sql.database import Database
from openautoglm.sql.examples import ExamplePool, mask
from openautoglm.sql.linking import link, match_values


def test_introspection_reads_keys_types_and_samples(shop_db: Path) -> None:
    with Database(f"sqlite:///{shop_db}") as db:
        schema = db.schema()
        sales = schema.table("sales")
        assert sales is not None and [c.name for c in sales.columns] == ["id", "product_id", "year", "amount"]
        assert sales.foreign_keys[0].ref_table == "products"
        assert schema.table("products").column("id").primary_key  # type: ignore[union-attr]
        assert "Electronics" in schema.table("products").column("category").samples  # type: ignore[union-attr]
        text = schema.to_prompt()
        assert text.count("CREATE TABLE") == 2 and "PRIMARY KEY (id)" in text


def test_postgres_introspection(postgres_url: str) -> None:
    with Database(postgres_url) as db:
        schema = db.schema()
        assert {t.name for t in schema.tables} == {"products", "sales"}
        assert schema.table("sales").foreign_keys[0].ref_table == "products"  # type: ignore[union-attr]
        assert db.dialect == "postgres"


def _wide_db(path: Path, n_cols: int = 300) -> Path:
    con = sqlite3.connect(path)
    cols = ", ".join(f"metric_{i} REAL" for i in range(n_cols))
    con.execute(f"CREATE TABLE measurements (id INTEGER PRIMARY KEY, station_id INTEGER REFERENCES stations(id), "
                f"rainfall_mm REAL, {cols})")
    con.execute("CREATE TABLE stations (id INTEGER PRIMARY KEY, city TEXT, country TEXT)")
    con.execute("CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT, salary REAL)")
    con.execute("INSERT INTO stations VALUES (1, 'Oslo', 'Norway'), (2, 'Lima', 'Peru')")
    con.commit()
    con.close()
    return path


def test_wide_schema_is_pruned_to_the_linked_columns(tmp_path: Path) -> None:
    with Database(f"sqlite:///{_wide_db(tmp_path / 'wide.db')}") as db:
        schema = db.schema(sample_values=0)
        assert schema.column_count > 300
        question = "What is the average rainfall in Oslo?"
        values = match_values(db, schema, question)
        assert [v.hint() for v in values] == ["stations.city = 'Oslo'"]
        linking = link(schema, question, values=values, max_columns=40)
        assert set(linking.tables) == {"measurements", "stations"}
        assert "rainfall_mm" in linking.columns["measurements"]
        prompt = schema.to_prompt(linking.tables, linking.columns)
        assert prompt.count("metric_") < 40 and "station_id" in prompt and "employees" not in prompt


def test_example_pool_retrieval_and_errors(tmp_path: Path) -> None:
    pool = ExamplePool.from_records([
        {"question": "How many heads are older than 56?", "query": "SELECT count(*) FROM head WHERE age > 56"},
        {"question": "List all song names.", "query": "SELECT song_name FROM singer"},
        {"question": "How many cars weigh more than 3000?", "query": "SELECT count(*) FROM cars WHERE weight > 3000"},
    ])
    best = pool.retrieve("How many dogs are older than 5?", k=2)
    assert best[-1].sql.startswith("SELECT count(*) FROM head")
    assert mask("older than 56 named 'Bob'") == "older than  num  named  val "
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "x"}\n')
    with pytest.raises(InputDataError, match="bad.jsonl"):
        ExamplePool.from_jsonl(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": \n')
    with pytest.raises(InputDataError, match="broken.jsonl:1"):
        ExamplePool.from_jsonl(broken)


def test_spider_train_pool_loads(spider_dir: Path) -> None:
    pool = ExamplePool.from_jsonl(spider_dir / "train_pairs.jsonl")
    assert len(pool.examples) > 6000
    found = pool.retrieve("How many singers do we have?", k=3)
    assert len(found) == 3 and all("count" in e.sql.lower() for e in found)


def test_duckdb_read_only_and_no_file_access(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    path = tmp_path / "shop.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE products (id INTEGER, name TEXT)")
    con.execute("INSERT INTO products VALUES (1, 'Laptop'), (2, 'Phone')")
    con.close()
    from openautoglm.sql.database import DatabaseError
    from openautoglm.sql.safety import UnsafeQueryError

    with Database(f"duckdb:///{path}") as db:
        assert db.execute("SELECT count(*) FROM products").rows == [(2,)]
        with pytest.raises(UnsafeQueryError):
            db.execute("SELECT * FROM read_csv('/etc/passwd')")
        with pytest.raises(DatabaseError):
            db.execute("DELETE FROM products", checked=False)
        with pytest.raises(DatabaseError):
            db.execute("SELECT * FROM '/etc/passwd'", checked=False)
        assert db.execute("SELECT count(*) FROM products").rows == [(2,)]


def test_duckdb_schema_with_keys(tmp_path) -> None:
    duckdb = pytest.importorskip("duckdb")
    pytest.importorskip("duckdb_engine")
    from openautoglm.sql.database import Database

    path = tmp_path / "shop.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL)")
    con.execute("CREATE TABLE sales (id INTEGER PRIMARY KEY, product_id INTEGER REFERENCES products(id), amount DOUBLE)")
    con.execute("INSERT INTO products VALUES (1, 'Laptop'), (2, 'Desk')")
    con.close()
    schema = Database(f"duckdb:///{path}").schema()
    sales = next(t for t in schema.tables if t.name == "sales")
    assert [c.name for c in sales.columns] == ["id", "product_id", "amount"]
    assert [c.name for c in sales.columns if c.primary_key] == ["id"]
    assert [(fk.column, fk.ref_table, fk.ref_column) for fk in sales.foreign_keys] == [("product_id", "products", "id")]
    products = next(t for t in schema.tables if t.name == "products")
    assert sorted(products.columns[1].samples) == ["Desk", "Laptop"]
