"""SemanticParser logic on a real SQLite database with a scripted (fake) model."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pytest

from openautoglm.backends.base import Completion, GenerationRequest
from openautoglm.backends.fake import FakeBackend, prompt_text
from openautoglm.sql.database import Database
from openautoglm.sql.examples import ExamplePool
from openautoglm.sql.parser import SemanticParser, extract_sql
from openautoglm.sql.safety import check_select

from .hostile import INJECTED_QUESTIONS, REFUSED


class ScriptedModel(FakeBackend):
    """Answers with the scripted SQL texts in order and remembers every prompt."""

    def __init__(self, responses: Sequence[str]) -> None:
        super().__init__(responses=responses)
        self.prompts: list[str] = []

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        self.prompts.extend(prompt_text(r.prompt) for r in requests)
        return super().generate(requests)


def _parser(model: FakeBackend, db: Path, **kw) -> SemanticParser:  # type: ignore[no-untyped-def]
    return SemanticParser(model, f"sqlite:///{db}", **kw)


def test_execution_error_goes_back_to_the_model(shop_db: Path) -> None:
    model = ScriptedModel(["SELECT nme FROM products", "SELECT name FROM products WHERE price > 500"])
    result = _parser(model, shop_db, n_candidates=1, max_attempts=3).parse("Which products cost more than 500?")
    assert result.ok and result.sql == "SELECT name FROM products WHERE price > 500"
    assert sorted(r[0] for r in result.rows or []) == ["Laptop", "Phone"]
    assert result.candidates[0].attempts == 2
    assert "no such column: nme" in model.prompts[1] and "no such column" not in model.prompts[0]


def test_gives_up_after_max_attempts(shop_db: Path) -> None:
    model = ScriptedModel(["SELECT nope FROM products"])
    result = _parser(model, shop_db, n_candidates=1, max_attempts=2).parse("anything")
    assert not result.ok and "no such column" in (result.error or "")
    assert result.confidence == 0.0 and len(model.prompts) == 2


def test_execution_result_voting(shop_db: Path) -> None:
    model = ScriptedModel([
        "SELECT name FROM products WHERE price > 500",               # greedy
        "SELECT name FROM products WHERE category = 'Electronics'",  # same rows
        "SELECT name FROM products",                                  # different rows
        "SELECT p.name FROM products AS p WHERE p.price >= 500.0",   # same rows again
    ])
    # (every value compared with is one the question names: a candidate comparing with another goes back)
    result = _parser(model, shop_db, n_candidates=4).parse("Which electronics cost more than 500?")
    assert result.confidence == pytest.approx(0.75)
    assert result.sql == "SELECT name FROM products WHERE price > 500"  # the greedy member of the winning group
    assert [c.votes for c in result.candidates] == [3, 3, 1, 3]


def test_largest_group_wins_over_greedy(shop_db: Path) -> None:
    model = ScriptedModel(["SELECT name FROM products", "SELECT count(*) FROM products",
                           "SELECT COUNT(id) FROM products"])
    result = _parser(model, shop_db, n_candidates=3).parse("How many products?")
    assert result.rows == [(6,)] and result.confidence == pytest.approx(2 / 3)


@pytest.mark.parametrize("question", INJECTED_QUESTIONS)
def test_injected_questions_have_no_effect_even_if_the_model_obeys(shop_db: Path, question: str) -> None:
    before = shop_db.read_bytes()
    model = ScriptedModel([s for s in REFUSED if s.strip()][:12])
    result = _parser(model, shop_db, n_candidates=3, max_attempts=2).parse(question)
    # extract_sql keeps only the first statement, so "SELECT 1; DROP ..." may run as "SELECT 1"
    if result.ok:
        assert check_select(result.sql, "sqlite").sql.upper().startswith("SELECT")
    for cand in result.candidates:
        assert cand.ok == (cand.error is None)
        if not cand.ok:
            assert cand.error and "Traceback" not in cand.error
    assert shop_db.read_bytes() == before
    with Database(f"sqlite:///{shop_db}") as db:
        assert db.execute("SELECT count(*) FROM sales").rows == [(7,)]


def test_refusal_reason_is_fed_back_without_stack_traces(shop_db: Path) -> None:
    model = ScriptedModel(["DELETE FROM sales", "SELECT count(*) FROM sales"])
    result = _parser(model, shop_db, n_candidates=1).parse("How many sales?")
    assert result.rows == [(7,)]
    assert "only SELECT queries are allowed" in model.prompts[1]
    assert "Traceback" not in model.prompts[1]


def test_follow_up_questions_see_the_conversation(shop_db: Path) -> None:
    model = ScriptedModel(["SELECT name FROM products WHERE category = 'Books'",
                           "SELECT name FROM products WHERE category = 'Books' AND price > 20"])
    session = _parser(model, shop_db, n_candidates=1).conversation()
    session.ask("Which books do we sell?")
    second = session.ask("and only those above 20?")
    assert second.rows == [("Atlas",)]
    assert "Earlier question: Which books do we sell?" in model.prompts[1]
    assert "category = 'Books'" in model.prompts[1]
    assert len(session.history) == 2


def test_prompt_has_schema_values_and_retrieved_examples(shop_db: Path) -> None:
    pool = ExamplePool.from_records([
        {"question": "How many singers are there?", "query": "SELECT count(*) FROM singer"},
        {"question": "What is the total revenue of each year?", "query": "SELECT year, sum(x) FROM t GROUP BY year"},
        {"question": "Name the oldest dog.", "query": "SELECT name FROM dogs ORDER BY age DESC LIMIT 1"},
    ])
    model = ScriptedModel(["SELECT year, sum(amount) FROM sales GROUP BY year"])
    parser = _parser(model, shop_db, n_candidates=1, examples=pool, n_examples=2)
    result = parser.parse("What is the total amount of Laptop sales per year?")
    prompt = model.prompts[0]
    assert "CREATE TABLE products" in prompt and "FOREIGN KEY (product_id) REFERENCES products(id)" in prompt
    assert "products.name = 'Laptop'" in prompt  # value linking
    assert "SELECT year, sum(x) FROM t GROUP BY year" in prompt  # the most similar example
    shown = [q for q in ("How many singers", "Name the oldest dog", "total revenue") if q in prompt]
    assert len(shown) == 2 and shown[-1] == "total revenue"  # k=2; the most similar sits next to the question
    assert prompt.index("total revenue") > max(prompt.find("singers"), prompt.find("oldest dog"))
    assert result.explanation["tables"] == ["sales"] and "amount" in result.explanation["columns"]


def test_result_aliases_and_json(shop_db: Path) -> None:
    model = ScriptedModel(["SELECT category, count(*) FROM products GROUP BY category"])
    result = _parser(model, shop_db, n_candidates=1).parse("How many products per category?")
    assert result.logical_form == result.sql
    data = result.to_dict()
    assert data["ok"] and [c.lower() for c in data["columns"]] == ["category", "count(*)"] and len(data["rows"]) == 3


@pytest.mark.parametrize("text,expected", [
    (" SELECT name FROM t;", "SELECT name FROM t"),
    ("```sql\nSELECT a\nFROM t\n```", "SELECT a FROM t"),
    ("Here is the query: SELECT 1", "SELECT 1"),
    ("name FROM t", "SELECT name FROM t"),
])
def test_extract_sql(text: str, expected: str) -> None:
    assert extract_sql(text) == expected


def test_calls_and_attempts_land_in_the_store(shop_db: Path, tmp_path: Path) -> None:
    from openautoglm.store.sqlite import Store

    store = Store(tmp_path / "store.db")
    model = ScriptedModel(["SELECT nme FROM products", "SELECT name FROM products"])
    _parser(model, shop_db, n_candidates=1, store=store).parse("List the products.")
    calls = store.recent_calls(limit=20)
    kinds = sorted(c["kind"] for c in calls)
    assert kinds.count("generate") == 2 and kinds.count("verify") == 2
    store.close()


def test_examples_are_shown_in_the_database_dialect(postgres_url: str) -> None:
    pool = ExamplePool.from_records([
        {"question": "What are the names of the 3 cheapest products?",
         "query": "SELECT name FROM products ORDER BY price LIMIT 3"},
        {"question": "Show the first name in upper case.", "query": "SELECT upper(substr(name, 1, 3)) FROM products"},
    ])
    model = ScriptedModel(["SELECT name FROM products ORDER BY price LIMIT 3"])
    parser = SemanticParser(model, postgres_url, examples=pool, n_candidates=1, n_examples=2)
    result = parser.parse("Show the first three letters of each name in upper case.")
    assert "SUBSTRING(name FROM 1 FOR 3)" in model.prompts[0]  # SQLite substr() transpiled for PostgreSQL
    assert "Write one PostgreSQL SELECT query" in model.prompts[0]
    assert [r[0] for r in result.rows or []] == ["Novel", "Atlas", "Chair"]
    parser.close()
