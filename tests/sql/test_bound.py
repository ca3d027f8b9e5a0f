"""Set grammars (aliases bound to their tables) and the table sets the parser gives candidates:
what a grammar admits and refuses, checked with llguidance's matcher over a byte-level
tokenizer; Spider dev gold over SmolLM2's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openautoglm.sql.bound import (MAX_COPIES, build_set_grammar, from_orders, generation_orders,
                                   query_from_orders, set_grammar_for)
from openautoglm.sql.compare import unknown_identifiers
from openautoglm.sql.database import Database
from openautoglm.sql.grammar import SqlGrammar, SqlGrammarError, accepts, check_compiles
from openautoglm.sql.linking import Linking, table_sets
from openautoglm.sql.schema import Column, ForeignKey, Schema, Table

llguidance = pytest.importorskip("llguidance")


@pytest.fixture()
def shop(shop_db: Path) -> Schema:
    with Database(f"sqlite:///{shop_db}") as db:
        return db.schema(sample_values=0)


@pytest.fixture()
def both(shop: Schema) -> SqlGrammar:
    grammar = build_set_grammar(shop, ["products", "sales"], database="shop")
    check_compiles(grammar)
    return grammar


JOIN = "FROM products AS T1 JOIN sales AS T2 ON T1.id = T2.product_id"
ACCEPTED = [
    "SELECT name FROM products",
    "SELECT count(*) FROM sales WHERE year = 2023;",
    f"SELECT T1.name, T2.amount {JOIN} WHERE T2.year = 2023",
    "SELECT T2.name FROM sales AS T1 JOIN products AS T2 ON T1.product_id = T2.id",  # the other order
    "SELECT T1.name, T2.amount FROM products AS T1, sales AS T2 WHERE T1.id = T2.product_id",
    "SELECT products.name, products.* FROM products",
    "SELECT name, amount FROM products AS T1 JOIN sales AS T2 ON T1.id = T2.product_id",  # bare, unambiguous
    "SELECT name FROM products WHERE id NOT IN (SELECT product_id FROM sales WHERE year = 2022)",
    "SELECT name FROM products EXCEPT SELECT T2.name FROM sales AS T1 JOIN products AS T2 ON T1.product_id = T2.id",
    "SELECT T1.name FROM products AS T1 JOIN sales AS T2 USING (id) GROUP BY T1.name ORDER BY count(*) DESC LIMIT 1",
    "SELECT count(*) FROM (SELECT category FROM products GROUP BY category)",
    "SELECT name FROM products\n\n",
    "SELECT category FROM products GROUP BY category HAVING count(*) > 1 ORDER BY max(price) DESC",
    "SELECT name FROM products WHERE price > (SELECT avg(price) FROM products) AND length(name) > 3",
    "SELECT " + ", ".join(["name"] * 8) + " FROM products",
]
REFUSED = [
    (f"SELECT T1.amount {JOIN}", "T1 is products, which has no amount"),
    ("SELECT T2.name FROM products AS T1", "T2 is not in FROM"),
    ("SELECT name FROM products AS T1", "a lone table has no alias"),
    ("SELECT T1.name FROM products", "an alias FROM does not define"),
    ("SELECT name FROM products JOIN sales ON id = product_id", "tables of a join have aliases"),
    ("SELECT products.name FROM products AS T1 JOIN sales AS T2 ON T1.id = T2.product_id", "an aliased table's name"),
    (f"SELECT id {JOIN}", "a bare column both tables have (ambiguous)"),
    ("SELECT T2.name FROM sales AS T2 JOIN products AS T1 ON T1.id = T2.product_id", "the first table is T1"),
    ("SELECT amount FROM products", "a column of a table the query does not read"),
    ("SELECT sales.amount FROM products", "a qualifier table not in FROM"),
    ("SELECT p.name FROM products AS p JOIN sales AS s ON p.id = s.product_id", "aliases are T1..Tk"),
    ("SELECT colour FROM products", "not a column"),
    ("SELECT name FROM product", "not a table"),
    ("SELECT name FROM products WHERE max(price) > 3", "an aggregate in WHERE"),
    ("SELECT name FROM products GROUP BY count(*)", "an aggregate in GROUP BY"),
    (f"SELECT T1.name {JOIN.replace('T1.id = T2.product_id', 'sum(T2.amount) > 1')}", "an aggregate in ON"),
    ("SELECT first_value(name) FROM products", "a window function (no OVER in the grammar)"),
    ("SELECT name FROM products, sales, products", "a FROM beyond the ordered choices"),
    ("SELECT x.category FROM (SELECT category FROM products) AS x", "a derived table's alias qualifies nothing"),
    ("SELECT name", "no FROM"),
    ("SELECT name\nFROM products", "a line break only ends the query"),
    ("SELECT name FROM products AS T1 JOIN\n\n", "a blank line where the query is not complete"),
    ("SELECT " + ", ".join(["name"] * 9) + " FROM products", "at most 8 results"),
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_admits(both: SqlGrammar, byte_tokenizer, sql: str) -> None:  # type: ignore[no-untyped-def]
    ok, prefix = accepts(both, sql, byte_tokenizer)
    assert ok, f"refused after {prefix!r}"


@pytest.mark.parametrize("sql,why", REFUSED)
def test_refuses(both: SqlGrammar, byte_tokenizer, sql: str, why: str) -> None:  # type: ignore[no-untyped-def]
    assert not accepts(both, sql, byte_tokenizer)[0], why


def test_a_set_admits_only_its_tables(shop: Schema, byte_tokenizer) -> None:  # type: ignore[no-untyped-def]
    only = build_set_grammar(shop, ["products"])
    assert accepts(only, "SELECT products.name FROM products", byte_tokenizer)[0]
    assert not accepts(only, "SELECT amount FROM sales", byte_tokenizer)[0]
    assert not accepts(only, "SELECT name FROM products WHERE id IN (SELECT product_id FROM sales)",
                       byte_tokenizer)[0]
    assert only.tables == ("products",) and "amount" not in only.columns


def test_every_admitted_query_names_only_its_own_tables_columns(both: SqlGrammar, shop: Schema,
                                                                byte_tokenizer) -> None:  # type: ignore[no-untyped-def]
    # each alias.column pairing the grammar admits is one the schema has
    for first, second in (("products", "sales"), ("sales", "products")):
        for alias, table in (("T1", first), ("T2", second)):
            for column in ("name", "amount", "year", "price", "id"):
                sql = (f"SELECT {alias}.{column} FROM {first} AS T1 JOIN {second} AS T2 "
                       f"ON T1.id = T2.id")
                admitted = accepts(both, sql, byte_tokenizer)[0]
                has = shop.table(table).column(column) is not None  # type: ignore[union-attr]
                assert admitted is has, sql
                if admitted:
                    assert unknown_identifiers(sql, shop) == []


def test_from_orders_and_explicit_orders(shop: Schema, byte_tokenizer) -> None:  # type: ignore[no-untyped-def]
    assert from_orders(["a", "b", "c"]) == [("a",), ("b",), ("c",), ("a", "b"), ("a", "c"), ("b", "a"), ("b", "c"),
                                            ("c", "a"), ("c", "b"), ("a", "b", "c"), ("a", "c", "b"), ("b", "a", "c"),
                                            ("b", "c", "a"), ("c", "a", "b"), ("c", "b", "a")]
    sql = "SELECT T1.name FROM products AS T1 JOIN products AS T2 ON T1.price < T2.price"  # a self-join
    assert query_from_orders(sql) == [("products", "products")]
    assert not accepts(build_set_grammar(shop, ["products"]), sql, byte_tokenizer)[0]
    assert accepts(build_set_grammar(shop, ["products"], orders=query_from_orders(sql)), sql, byte_tokenizer)[0]


def test_errors_are_clear(shop: Schema) -> None:
    with pytest.raises(SqlGrammarError, match="customers"):
        build_set_grammar(shop, ["products", "customers"])
    with pytest.raises(SqlGrammarError, match="not a table of the set"):
        build_set_grammar(shop, ["products"], orders=[("sales",)])
    with pytest.raises(SqlGrammarError, match="dialect"):
        build_set_grammar(shop, ["products"], dialect="oracle")


def test_set_grammars_are_cached_per_set(shop_db: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import openautoglm.sql.bound as bound

    monkeypatch.setattr(bound, "_CACHE", {})
    with Database(f"sqlite:///{shop_db}") as db:
        first = set_grammar_for(db, ["sales", "products"])
        assert set_grammar_for(db, ["sales", "products"]) is first
        assert set_grammar_for(db, ["products"]) is not first
    assert len(bound._CACHE) == 2


def test_generation_orders_stay_within_the_copy_budget() -> None:
    schema = _chain()
    orders, derived = generation_orders(schema, ["singer", "singer_in_concert", "concert"])
    assert orders[:4] == [("singer",), ("singer_in_concert",), ("concert",), ("singer", "singer_in_concert", "concert")]
    assert ("singer", "concert") not in orders  # not joined by a foreign key
    assert ("concert", "singer_in_concert") in orders and len(orders) <= MAX_COPIES
    assert not derived  # the budget is spent
    assert generation_orders(schema, ["singer", "weather"]) == (
        [("singer",), ("weather",), ("singer", "weather"), ("weather", "singer")], True)


# -- table sets ---------------------------------------------------------------------------------
def _chain() -> Schema:
    """singer <- singer_in_concert -> concert -> stadium, and an unrelated table."""
    return Schema([
        Table("singer", [Column("singer_id", "INT"), Column("name", "TEXT")]),
        Table("singer_in_concert", [Column("singer_id", "INT"), Column("concert_id", "INT")],
              foreign_keys=[ForeignKey("singer_id", "singer", "singer_id"),
                            ForeignKey("concert_id", "concert", "concert_id")]),
        Table("concert", [Column("concert_id", "INT"), Column("stadium_id", "INT")],
              foreign_keys=[ForeignKey("stadium_id", "stadium", "stadium_id")]),
        Table("stadium", [Column("stadium_id", "INT"), Column("capacity", "INT")]),
        Table("weather", [Column("day", "TEXT")]),
    ])


def test_table_sets_join_linked_tables_through_bridges() -> None:
    schema = _chain()
    scores = {"singer": 2.5, "concert": 2.0, "stadium": 0.2, "singer_in_concert": 0.1, "weather": 0.0}
    sets = table_sets(schema, Linking(list(scores), {}, scores=scores), n=3)
    assert sets[0] == ["singer", "singer_in_concert", "concert"]  # the bridge joins the two named tables
    assert sets[1] == ["singer"]
    assert sets[2][0] == "stadium" and len({frozenset(s) for s in sets}) == 3  # concert's grows into set 0
    lone = {"weather": 3.0}
    assert table_sets(schema, Linking(["weather"], {}, scores=lone), n=3)[:2] == [["weather"], ["singer"]]


# -- Spider dev gold, over the tokenizer the decoder uses -----------------------------------------
@pytest.mark.slow
def test_spider_dev_gold_is_admitted_by_its_table_sets_grammar(spider_dir: Path) -> None:
    """Every dev gold query is admitted by the grammar a candidate gets for the query's own
    tables (in the order it names them), but for three kinds the grammar cannot bind: a table
    twice in one FROM (a self-join), an alias numbered past its FROM (``... EXCEPT SELECT
    T3.x FROM a AS T3``: Spider numbers aliases across the whole query), and an alias on a
    lone table (the grammar follows Spider's convention: none)."""
    import re

    import sqlglot
    from sqlglot import exp

    from openautoglm.sql.grammar import load_tokenizer

    try:
        tokenizer = load_tokenizer()
    except Exception as exc:  # noqa: BLE001 - the embedded model's files are not installed here
        pytest.skip(f"embedded model tokenizer unavailable: {exc}")
    dev = json.loads((spider_dir / "dev.json").read_text(encoding="utf-8"))
    schemas: dict[str, Schema] = {}
    rejected, unbindable = [], 0
    for item in dev:
        db_id, sql = item["db_id"], item["query"].strip()
        if db_id not in schemas:
            with Database(f"sqlite:///{spider_dir / 'database' / db_id / (db_id + '.sqlite')}") as db:
                schemas[db_id] = db.schema(sample_values=0)
        schema = schemas[db_id]
        tree = sqlglot.parse_one(sql, read="sqlite")
        tables = list(dict.fromkeys(schema.table(t.name).name for t in tree.find_all(exp.Table)))  # type: ignore
        orders, derived = generation_orders(schema, tables)
        if accepts(build_set_grammar(schema, tables, orders=orders, derived=derived), sql, tokenizer)[0]:
            continue
        froms = query_from_orders(sql)
        numbers = [int(n) for n in re.findall(r"\bAS T(\d+)\b", sql, flags=re.I)]
        self_join = any(len(set(map(str.lower, f))) < len(f) for f in froms)
        lone_alias = any(len(f) == 1 for f in froms) and numbers and max(map(len, froms)) == 1
        if self_join or lone_alias or max(numbers, default=0) > max(map(len, froms)):
            unbindable += 1
        else:
            rejected.append(sql)
    assert rejected == [] and unbindable <= 8
