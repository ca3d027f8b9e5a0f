"""The schema grammar: what it admits and refuses, checked with llguidance's matcher (the
engine the local decoder uses) over a byte-level tokenizer; Spider dev gold over SmolLM2's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openautoglm.sql.compare import unknown_identifiers
from openautoglm.sql.database import Database
from openautoglm.sql.grammar import (SqlGrammar, SqlGrammarError, accepts, build_grammar, check_compiles,
                                     grammar_for)
from openautoglm.sql.schema import Column, Schema, Table

llguidance = pytest.importorskip("llguidance")


@pytest.fixture()
def shop_grammar(shop_db: Path) -> SqlGrammar:
    with Database(f"sqlite:///{shop_db}") as db:
        return build_grammar(db.schema(sample_values=0), database="shop")


ACCEPTED = [
    "SELECT name FROM products",
    " select NAME from PRODUCTS;",
    "SELECT p.name, s.amount FROM products AS p JOIN sales AS s ON p.id = s.product_id WHERE s.year = 2023",
    "SELECT products.name FROM products, sales WHERE products.id = sales.product_id",
    "SELECT category, count(*) FROM products GROUP BY category HAVING count(*) > 1 ORDER BY count(*) DESC LIMIT 2",
    "SELECT name FROM products WHERE price > (SELECT avg(price) FROM products)",
    "SELECT name FROM products WHERE id NOT IN (SELECT product_id FROM sales WHERE year = 2022)",
    "SELECT name FROM products WHERE category = 'Books' UNION SELECT name FROM products WHERE price < 100",
    "SELECT name FROM products INTERSECT SELECT name FROM products WHERE name LIKE '%o%'",
    "SELECT DISTINCT category FROM products WHERE price BETWEEN 10 AND 1e3 AND NOT name IS NULL",
    'SELECT "name", `price`, [category] FROM "products" WHERE name = "Desk"',
    "SELECT CASE WHEN price > 100 THEN 'high' ELSE 'low' END AS band FROM products",
    "SELECT CAST(price AS INTEGER), round(price, 1), upper(name) FROM products AS x WHERE x.name = 'it''s'",
    "SELECT t.category FROM (SELECT category, max(price) AS top FROM products GROUP BY category) AS t",
    "SELECT count(DISTINCT year) FROM sales LIMIT 1 OFFSET 0",
]

REFUSED = [
    ("SELECT name FROM product", "table not in the schema"),
    ("SELECT name FROM productss", "table name glued to an alias"),
    ("SELECT names FROM products", "column name glued to an alias"),
    ("SELECT colour FROM products", "column not in the schema"),
    ("SELECT products.year FROM products", "a real column of another table"),
    ("SELECT p.colour FROM products AS p", "an alias with an invented column"),
    ("SELECT name FROM products ORDER BY total", "an output alias is not a column"),
    ("SELECT load_extension('x') FROM products", "function not on the allow-list"),
    ("SELECT approx_top_k(name) FROM products", "allowed by sqlglot but not a SQLite function"),
    ("SELECT name FROM products WHERE name = 'Desk", "unterminated string"),
    ("SELECT name FROM products WHERE price = 1.2.3", "malformed number"),
    ("SELECT name FROM products union", "keyword taken for an alias"),
    ("SELECTname FROM products", "keyword glued to a name"),
    ("SELECT name", "no FROM"),
    ("DELETE FROM products", "not a SELECT"),
    ("SELECT name FROM products; DROP TABLE products", "a second statement"),
    ("WITH t AS (SELECT name FROM products) SELECT name FROM t", "CTE names would be free table names"),
    ("SELECT pName.name FROM products AS pName", "a table alias is T1..T99 or a letter (+ digit)"),
    ("SELECT battle_name_between.name FROM products", "an undefined free-form qualifier"),
]


@pytest.mark.parametrize("sql", ACCEPTED)
def test_accepts_the_select_subset(shop_grammar: SqlGrammar, byte_tokenizer, sql: str) -> None:  # type: ignore[no-untyped-def]
    ok, prefix = accepts(shop_grammar, sql, byte_tokenizer)
    assert ok, f"refused after {prefix!r}"


@pytest.mark.parametrize("sql,why", REFUSED)
def test_refuses(shop_grammar: SqlGrammar, byte_tokenizer, sql: str, why: str) -> None:  # type: ignore[no-untyped-def]
    assert not accepts(shop_grammar, sql, byte_tokenizer)[0], why


def test_nesting_depth_is_bounded(shop_db: Path, byte_tokenizer) -> None:  # type: ignore[no-untyped-def]
    with Database(f"sqlite:///{shop_db}") as db:
        schema = db.schema(sample_values=0)
    nested = "SELECT name FROM products WHERE id IN (SELECT product_id FROM sales WHERE year IN (SELECT year FROM sales))"
    assert accepts(build_grammar(schema, max_depth=2), nested, byte_tokenizer)[0]
    assert not accepts(build_grammar(schema, max_depth=1), nested, byte_tokenizer)[0]


def _schema(dialect: str) -> Schema:
    return Schema([Table("Singer", [Column("Name", "TEXT"), Column("age", "INT")]),
                   Table("concert", [Column("singer_id", "INT"), Column("Official_ratings_(millions)", "REAL")])],
                  dialect)


@pytest.mark.parametrize("dialect,sql,ok", [
    ("postgres", 'SELECT "Name" FROM "Singer" WHERE age::text ILIKE \'1%\'', True),
    ("postgres", "SELECT name FROM singer", False),  # unquoted names fold to lower case: no such table
    ("postgres", "SELECT singer_id FROM CONCERT WHERE age > DATE '2020-01-01'", True),
    ("postgres", "SELECT singer_id FROM concert WHERE singer_id = \"x\"", False),  # "x" is an identifier there
    ("postgres", "SELECT DISTINCT ON (singer_id) singer_id FROM concert", True),
    ("duckdb", 'SELECT name, "official_ratings_(millions)" FROM singer, concert', True),
    ("duckdb", "SELECT `age` FROM singer", False),
    ("sqlite", "SELECT [Official_ratings_(millions)] FROM concert LIMIT 1, 2", True),
    ("sqlite", "SELECT Official_ratings_(millions) FROM concert", False),  # needs quoting
    ("sqlite", "SELECT age::text FROM singer", False),
    ("mysql", "SELECT `Name` FROM singer WHERE name = \"x\"", True),
    ("mysql", "SELECT [Name] FROM singer", False),
    # no boolean literals: the model wrote `SELECT tRUE, tRUE FROM people` when a `t` began no column
    ("sqlite", "SELECT tRUE FROM singer WHERE name = 'x'", False),
    ("sqlite", "SELECT name FROM singer WHERE TRUE = age", False),
    ("postgres", "SELECT singer_id FROM concert WHERE FALSE", False),
    ("sqlite", "SELECT name FROM singer WHERE age IS NULL", True),
])
def test_dialects(byte_tokenizer, dialect: str, sql: str, ok: bool) -> None:  # type: ignore[no-untyped-def]
    assert accepts(build_grammar(_schema(dialect)), sql, byte_tokenizer)[0] is ok


@pytest.mark.parametrize("name", ['we"ird', "back\\slash", "sp ace", "ünïcode", "new\nline", "brack]et", "a'b"])
def test_unusual_names_compile_and_are_reachable_quoted(byte_tokenizer, name: str) -> None:  # type: ignore[no-untyped-def]
    grammar = build_grammar(Schema([Table("t", [Column(name, "TEXT")])]), database="odd")
    check_compiles(grammar)
    assert accepts(grammar, 'SELECT "' + name.replace('"', '""') + '" FROM t', byte_tokenizer)[0]
    assert not accepts(grammar, 'SELECT "' + name.replace('"', '""') + '" FROM t2', byte_tokenizer)[0]


def test_a_grammar_that_does_not_compile_names_the_database() -> None:
    broken = SqlGrammar("sqlite:///data/shop.db", "sqlite", "start: missing_rule\n", ("t",), ("c",))
    with pytest.raises(SqlGrammarError) as err:
        check_compiles(broken)
    assert "sqlite:///data/shop.db" in err.value.message and "does not compile" in err.value.message


def test_grammar_for_checks_compilation_and_names_the_database(shop_db: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import openautoglm.sql.grammar as grammar_module

    def broken(schema: Schema, **kw) -> SqlGrammar:  # type: ignore[no-untyped-def]
        return SqlGrammar(kw["database"], "sqlite", "start: ( \n", (), ())

    monkeypatch.setattr(grammar_module, "build_grammar", broken)
    monkeypatch.setattr(grammar_module, "_CACHE", {})
    with Database(f"sqlite:///{shop_db}") as db, pytest.raises(SqlGrammarError) as err:
        grammar_for(db)
    assert "shop.db" in err.value.message


def test_database_without_tables_is_a_clear_error(tmp_path: Path) -> None:
    import sqlite3

    sqlite3.connect(tmp_path / "empty.db").close()
    with Database(f"sqlite:///{tmp_path / 'empty.db'}") as db, pytest.raises(SqlGrammarError) as err:
        grammar_for(db)
    assert "empty.db" in err.value.message and "no tables" in err.value.message


def test_unknown_dialect_is_a_clear_error() -> None:
    with pytest.raises(SqlGrammarError) as err:
        build_grammar(_schema("oracle"), database="ora")
    assert "oracle" in err.value.message and "ora" in err.value.message


def test_grammar_is_built_once_per_database(shop_db: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import openautoglm.sql.grammar as grammar_module

    built: list[str] = []
    real = grammar_module.build_grammar

    def counting(schema: Schema, **kw) -> SqlGrammar:  # type: ignore[no-untyped-def]
        built.append(kw["database"])
        return real(schema, **kw)

    monkeypatch.setattr(grammar_module, "build_grammar", counting)
    monkeypatch.setattr(grammar_module, "_CACHE", {})
    with Database(f"sqlite:///{shop_db}") as one, Database(f"sqlite:///{shop_db}") as two:
        first, again, other = grammar_for(one), grammar_for(one), grammar_for(two)
    assert first is again is other and len(built) == 1


# -- the metric the benchmark reports ------------------------------------------------------------
@pytest.mark.parametrize("sql,found", [
    ("SELECT name FROM products", []),
    ("SELECT colour FROM products", ["column colour"]),
    ("SELECT name FROM product", ["table product"]),
    ("SELECT q.name FROM products AS p", ["alias q"]),
    ("SELECT p.colour FROM products AS p", ["column p.colour"]),
    ("SELECT p.amount FROM products AS p JOIN sales AS s ON p.id = s.product_id", ["column p.amount"]),
    ("SELECT products.year FROM products", ["column products.year"]),
    ("SELECT T1.name FROM products AS T1 UNION SELECT T1.amount FROM sales AS T1", []),  # T1 reused
    ("SELECT x.name FROM (SELECT name FROM products) AS x", []),
    ("SELECT count(*) AS n FROM products ORDER BY n", []),
    ('SELECT name FROM products WHERE name = "Desk"', []),  # a string to SQLite
])
def test_unknown_identifiers(shop_db: Path, sql: str, found: list[str]) -> None:
    with Database(f"sqlite:///{shop_db}") as db:
        assert unknown_identifiers(sql, db.schema(sample_values=0)) == found


# -- Spider dev gold, over the tokenizer the decoder uses -----------------------------------------
@pytest.mark.slow
def test_spider_dev_gold_is_accepted(spider_dir: Path) -> None:
    from openautoglm.sql.grammar import load_tokenizer

    try:
        tokenizer = load_tokenizer()
    except Exception as exc:  # noqa: BLE001 - the embedded model's files are not installed here
        pytest.skip(f"embedded model tokenizer unavailable: {exc}")
    dev = json.loads((spider_dir / "dev.json").read_text(encoding="utf-8"))
    grammars: dict[str, SqlGrammar] = {}
    rejected = []
    for item in dev:
        if item["db_id"] not in grammars:
            with Database(f"sqlite:///{spider_dir / 'database' / item['db_id'] / (item['db_id'] + '.sqlite')}") as db:
                grammars[item["db_id"]] = build_grammar(db.schema(sample_values=0), database=item["db_id"])
        ok, prefix = accepts(grammars[item["db_id"]], item["query"].strip(), tokenizer)
        if not ok:
            rejected.append((item["db_id"], item["query"], prefix))
    assert len(rejected) <= 0.01 * len(dev), rejected
