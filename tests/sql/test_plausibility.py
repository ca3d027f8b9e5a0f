"""Degenerate queries that run: the checks, and what the parser does with them (scripted model, real SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest

from openautoglm.sql.parser import SemanticParser
from openautoglm.sql.plausibility import dedupe, implausibility

from .test_parser import ScriptedModel


@pytest.mark.parametrize("sql, words", [
    ("SELECT is_male, is_male, is_male FROM singer", "repeats is_male"),
    ("SELECT T1.name, T1.NAME FROM singer AS T1", "repeats T1.NAME"),
    ("SELECT count(*), COUNT(*) FROM singer", "repeats COUNT(*)"),
    ("SELECT a FROM (SELECT b, b FROM t) AS x", "repeats b"),            # a subquery's list too
    ("SELECT a AS x, a AS y FROM t", "repeats a"),                       # aliases do not make it new
    ("SELECT name FROM stadium WHERE 2014 = 2014 AND 2015 = 2015", "compares two constants"),
    ("SELECT name FROM t WHERE 'x' LIKE 'x%'", "compares two constants"),
    ("SELECT name FROM t WHERE age = age", "compares a column with itself"),
    ("SELECT T1.a FROM t AS T1 JOIN u AS T2 ON T1.id = T1.id", "compares a column with itself"),
])
def test_degenerate_queries_are_named(sql: str, words: str) -> None:
    flaw = implausibility(sql)
    assert flaw is not None and words in flaw


@pytest.mark.parametrize("sql", [
    "SELECT name, age FROM singer WHERE age > 20",
    "SELECT T1.name, T2.name FROM a AS T1 JOIN b AS T2 ON T1.id = T2.a_id",  # same column name, two tables
    "SELECT avg(age), max(age), min(age) FROM singer",                        # one column, different aggregates
    "SELECT name FROM t UNION SELECT name FROM u",                            # each branch lists it once
    "SELECT name FROM t WHERE -1 < age",
    "SELECT name FROM t WHERE",                                               # not SQL: execution reports it
])
def test_ordinary_queries_pass(sql: str) -> None:
    assert implausibility(sql) is None


def test_a_repeated_select_list_is_repaired_without_a_model_call(shop_db: Path) -> None:
    model = ScriptedModel(["SELECT name, price, name, price FROM products WHERE price > 500 ORDER BY name, name"])
    result = SemanticParser(model, f"sqlite:///{shop_db}", n_candidates=1, max_attempts=2).parse(
        "Name and price of the products above 500?")
    assert result.sql == "SELECT name, price FROM products WHERE price > 500 ORDER BY name"
    assert result.rows == [("Laptop", 900.0), ("Phone", 600.0)] and result.columns == ["name", "price"]
    assert len(model.prompts) == 1 and result.candidates[0].flaw is None


def test_a_value_the_question_does_not_name_goes_back_to_the_model(shop_db: Path) -> None:
    model = ScriptedModel(["SELECT name FROM products WHERE category = 'Books'",
                           "SELECT name FROM products WHERE category = 'Furniture'"])
    result = SemanticParser(model, f"sqlite:///{shop_db}", n_candidates=1, max_attempts=2).parse(
        "Which furniture do we sell?")
    assert result.sql == "SELECT name FROM products WHERE category = 'Furniture'"
    assert result.candidates[0].attempts == 2 and result.candidates[0].flaw is None
    assert "does not mention 'Books'" in model.prompts[1] and "does not mention" not in model.prompts[0]


def test_an_implausible_query_that_ran_beats_a_correction_that_fails(shop_db: Path) -> None:
    # the correction does not run: the earlier answer, which did, is kept (with its flaw), not an error
    model = ScriptedModel(["SELECT name FROM products WHERE 1 = 1", "SELECT nme FROM products"])
    result = SemanticParser(model, f"sqlite:///{shop_db}", n_candidates=1, max_attempts=2).parse("List the products")
    assert result.ok and result.sql == "SELECT name FROM products WHERE 1 = 1" and len(result.rows or []) == 6
    assert "compares two constants" in (result.candidates[0].flaw or "")


def test_flawless_candidates_outvote_flawed_ones(shop_db: Path) -> None:
    model = ScriptedModel([
        "SELECT name FROM products WHERE price > 600",  # greedy, twice: 600 is not in the question
        "SELECT name FROM products WHERE price > 600",
        "SELECT name FROM products WHERE price > 500",  # a sample without the flaw
    ])
    result = SemanticParser(model, f"sqlite:///{shop_db}", n_candidates=2, max_attempts=2).parse(
        "Which products cost more than 500?")
    assert result.sql == "SELECT name FROM products WHERE price > 500"
    assert [c.flaw is not None for c in result.candidates] == [True, False]


@pytest.mark.parametrize("question, sql, flawed", [
    ("Show the hometowns shared by at least two teachers.",
     "SELECT Hometown FROM teacher WHERE Hometown LIKE '%Blackrod Urban District%'", True),   # copied from the prompt
    ("Show the hometowns shared by at least two teachers.",
     "SELECT Hometown FROM teacher GROUP BY Hometown HAVING count(*) >= 2", False),          # HAVING is not judged
    ("Which teachers are older than two?", "SELECT name FROM teacher WHERE age > 2", False),  # spelled out
    ("Which teachers are older than 32?", "SELECT name FROM teacher WHERE age > 32.0", False),
    ("Which teachers are older than 32?", "SELECT name FROM teacher WHERE age > 3", True),   # 3 is not 32
    ("Teachers from Little Lever Urban District?",
     "SELECT name FROM teacher WHERE hometown LIKE '%little lever%'", False),
    ("Who is the oldest teacher?",
     "SELECT name FROM teacher WHERE age = (SELECT age FROM teacher ORDER BY age DESC LIMIT 1)", False),
])
def test_where_values_must_come_from_the_question(question: str, sql: str, flawed: bool) -> None:
    flaw = implausibility(sql, question=question)
    assert (flaw is not None) is flawed
    if flawed:
        assert "does not mention" in flaw  # type: ignore[operator]
    assert implausibility(sql) is None  # without a question only the structural checks apply


@pytest.mark.parametrize("sql, repaired", [
    ("SELECT name, age, name, age FROM singer ORDER BY name DESC, name DESC",
     "SELECT name, age FROM singer ORDER BY name DESC"),
    ("SELECT T1.name, T1.NAME AS n FROM singer AS T1", "SELECT T1.name FROM singer AS T1"),
    ("SELECT count(*), city FROM employee GROUP BY city, city", "SELECT COUNT(*), city FROM employee GROUP BY city"),
    ("SELECT a FROM t WHERE a IN (SELECT b, b FROM u)", "SELECT a FROM t WHERE a IN (SELECT b FROM u)"),
    ("SELECT a FROM t UNION SELECT a, a FROM u", "SELECT a FROM t UNION SELECT a, a FROM u"),  # branches keep width
    ("SELECT name ,  age FROM singer", "SELECT name ,  age FROM singer"),  # nothing repeats: text untouched
    ("SELECT name FROM", "SELECT name FROM"),
])
def test_dedupe(sql: str, repaired: str) -> None:
    assert dedupe(sql) == repaired


def test_spider_dev_gold_queries_are_almost_never_flagged(spider_dir: Path) -> None:
    import json

    dev = json.loads((spider_dir / "dev.json").read_text(encoding="utf-8"))
    flagged = [d["query"] for d in dev if implausibility(d["query"], question=d["question"])]
    changed = [d["query"] for d in dev if dedupe(d["query"]) != d["query"]]
    # 3 literals the question spells differently ('France' for "French", 'usa', 'NorthCarolina') and
    # one gold query that selects T1.student_id twice (which dedupe repairs)
    assert len(flagged) == 4 and len(changed) == 1 and changed[0] in flagged


@pytest.mark.parametrize("question, sql, flawed", [
    ("What are the different countries with singers above age 20?",
     "SELECT Country, DATE(country) AS date FROM singer WHERE age > 20", True),
    ("Names of visitors older than 4?", "SELECT name, PRINTF(age) FROM visitor WHERE age > 4", True),
    ("Which sections are there?", "SELECT CASE WHEN section_id > 0 THEN 'a' END FROM sections", True),
    ("How many countries, and the average age?", "SELECT count(DISTINCT country), avg(age) FROM singer", False),
    ("What is the length of the longest name?", "SELECT max(length(name)) FROM singer", False),  # asked for
])
def test_functions_the_question_does_not_ask_for(question: str, sql: str, flawed: bool) -> None:
    flaw = implausibility(sql, question=question)
    assert (flaw is not None) is flawed
    if flawed:
        assert "does not ask for" in flaw  # type: ignore[operator]


def test_a_follow_up_may_reuse_the_values_of_earlier_turns(shop_db: Path) -> None:
    follow_up = "SELECT name, category FROM products WHERE price > 500"
    history = [("Which products cost more than 500?", "SELECT name FROM products WHERE price > 500")]
    model = ScriptedModel([follow_up])
    result = SemanticParser(model, f"sqlite:///{shop_db}", n_candidates=1, max_attempts=2).parse(
        "And their categories?", history=history)
    assert result.sql == follow_up and result.candidates[0].attempts == 1 and result.candidates[0].flaw is None
    alone = ScriptedModel([follow_up, follow_up])  # the same answer without the conversation: 500 was never asked
    result = SemanticParser(alone, f"sqlite:///{shop_db}", n_candidates=1, max_attempts=2).parse("And their categories?")
    assert result.candidates[0].attempts == 2 and "500" in str(result.candidates[0].flaw)
