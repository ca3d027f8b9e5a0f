"""SemanticParser under the schema grammar, with a scripted backend that declares the
``grammar`` capability and records the constraint each generation request carried."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import pytest

from openautoglm.backends.base import Completion, GenerationRequest
from openautoglm.backends.fake import FakeBackend, prompt_text
from openautoglm.errors import BackendError, OpenAutoGLMError
from openautoglm.sql.database import Database
from openautoglm.sql.grammar import grammar_for
from openautoglm.sql.parser import SemanticParser


class GrammarModel(FakeBackend):
    """Answers the scripted texts in order (as a constrained decoder would emit them) and keeps
    every request; ``fail_sampled`` makes temperature > 0 requests fail as a dead grammar would."""

    def __init__(self, responses: Sequence[str], constraints: Sequence[str] = ("grammar",),
                 fail_sampled: str | None = None, fail_all: str | None = None) -> None:
        super().__init__(responses=responses, constraints=constraints)
        self.requests: list[GenerationRequest] = []
        self.fail_sampled, self.fail_all = fail_sampled, fail_all

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        self.requests.extend(requests)
        if self.fail_all or (self.fail_sampled and any(r.temperature > 0 for r in requests)):
            raise BackendError(self.fail_all or self.fail_sampled or "")
        return super().generate([replace(r, constraint=None) for r in requests])


def _parser(model: FakeBackend, db: Path, **kw) -> SemanticParser:  # type: ignore[no-untyped-def]
    return SemanticParser(model, f"sqlite:///{db}", **kw)


def _grammar_text(db: Path) -> str:
    with Database(f"sqlite:///{db}") as handle:
        return grammar_for(handle).text


def test_every_candidate_is_generated_under_the_database_grammar(shop_db: Path) -> None:
    model = GrammarModel(["SELECT name FROM products WHERE price > 500"])
    result = _parser(model, shop_db, n_candidates=3, bind_tables=False).parse("Which products cost more than 500?")
    assert result.ok and result.explanation["grammar"] is True
    assert len(model.requests) == 3  # one greedy, two sampled
    expected = _grammar_text(shop_db)
    for req in model.requests:
        assert req.constraint is not None and req.constraint.kind == "grammar"
        assert req.constraint.value == expected
    assert "products" in expected and "sales" in expected


def test_correction_and_voting_stay_on_top(shop_db: Path) -> None:
    # an answer the grammar admits can still fail at run time (an aggregate in GROUP BY): it goes back
    model = GrammarModel(["SELECT name FROM products GROUP BY count(*)", "SELECT name FROM products WHERE price > 500"])
    result = _parser(model, shop_db, n_candidates=1, max_attempts=3).parse("Which products cost more than 500?")
    assert result.ok and result.candidates[0].attempts == 2
    assert "aggregate" in prompt_text(model.requests[1].prompt)
    assert all(r.constraint is not None and r.constraint.kind == "grammar" for r in model.requests)
    voted = GrammarModel(["SELECT name FROM products WHERE price > 500", "SELECT name FROM products",
                          "SELECT name FROM products WHERE category = 'Electronics'"])
    result = _parser(voted, shop_db, n_candidates=3).parse("Which electronics cost more than 500?")
    assert result.confidence == pytest.approx(2 / 3) and sorted(r[0] for r in result.rows or []) == ["Laptop", "Phone"]


def test_the_grammar_is_built_once_per_database(shop_db: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import openautoglm.sql.grammar as grammar_module

    built = []
    real = grammar_module.build_grammar
    monkeypatch.setattr(grammar_module, "_CACHE", {})
    monkeypatch.setattr(grammar_module, "build_grammar", lambda schema, **kw: built.append(1) or real(schema, **kw))
    model = GrammarModel(["SELECT name FROM products"])
    first = _parser(model, shop_db, n_candidates=1, bind_tables=False)
    first.parse("List the products.")
    first.parse("List them again.")
    _parser(model, shop_db, n_candidates=1, bind_tables=False).parse("And once more.")
    assert len(built) == 1 and len({r.constraint for r in model.requests}) == 1


def test_no_constraint_without_the_capability_or_when_turned_off(shop_db: Path) -> None:
    plain = GrammarModel(["SELECT name FROM products"], constraints=())
    result = _parser(plain, shop_db, n_candidates=1).parse("List the products.")
    assert result.ok and result.explanation["grammar"] is False and plain.requests[0].constraint is None
    off = GrammarModel(["SELECT name FROM products"])
    assert _parser(off, shop_db, n_candidates=1, grammar=False).parse("List them.").explanation["grammar"] is False
    assert off.requests[0].constraint is None
    reasoning = GrammarModel(["SELECT name FROM products"])
    _parser(reasoning, shop_db, n_candidates=1, chain_of_thought=True).parse("List them.")
    assert all(r.constraint is None for r in reasoning.requests)  # free reasoning comes before the SQL


def test_grammar_true_needs_a_backend_that_enforces_it(shop_db: Path) -> None:
    with pytest.raises(OpenAutoGLMError) as err:
        _parser(GrammarModel(["SELECT 1"], constraints=()), shop_db, grammar=True)
    assert "does not enforce grammars" in err.value.message
    with pytest.raises(OpenAutoGLMError):
        _parser(GrammarModel(["SELECT 1"]), shop_db, grammar=True, chain_of_thought=True)


def test_a_failing_constrained_decoder_is_a_recorded_error_not_a_crash(shop_db: Path, tmp_path: Path) -> None:
    from openautoglm.store.sqlite import Store

    store = Store(tmp_path / "store.db")
    model = GrammarModel(["SELECT name FROM products"], fail_sampled="the grammar admits no token")
    result = _parser(model, shop_db, n_candidates=3, store=store).parse("List the products.")
    assert result.ok and [c.source for c in result.candidates] == ["greedy", "sample", "sample"]
    assert [c.ok for c in result.candidates] == [True, False, False]
    assert all("admits no token" in (c.error or "") for c in result.candidates[1:])
    assert result.confidence == pytest.approx(1 / 3)
    errors = [c for c in store.recent_calls(limit=20) if c.get("error")]
    assert errors and all("admits no token" in c["error"] for c in errors)
    store.close()
    dead = GrammarModel(["SELECT name FROM products"], fail_all="the grammar admits no token")
    result = _parser(dead, shop_db, n_candidates=2).parse("List the products.")
    assert not result.ok and "admits no token" in (result.error or "") and result.confidence == 0.0


def test_unconstrained_backend_errors_still_raise(shop_db: Path) -> None:
    model = GrammarModel(["SELECT name FROM products"], constraints=(), fail_all="connection refused")
    with pytest.raises(BackendError):
        _parser(model, shop_db, n_candidates=1).parse("List the products.")


def test_candidates_are_bound_to_linked_table_sets(shop_db: Path) -> None:
    from openautoglm.sql.bound import set_grammar_for

    model = GrammarModel(["SELECT name FROM products WHERE price > 500"])
    result = _parser(model, shop_db, n_candidates=3).parse("Which products cost more than 500?")
    sets = result.explanation["table_sets"]
    # products is named; sales is linked through its product_id and joins it by a foreign key
    assert result.ok and sets == [["products", "sales"], ["products"]]
    with Database(f"sqlite:///{shop_db}") as db:
        expected = [set_grammar_for(db, tables).text for tables in sets]
    prompts: dict[str, list[str]] = {}
    for req in model.requests:
        assert req.constraint is not None and req.constraint.kind == "grammar"
        assert req.constraint.value != _grammar_text(shop_db)
        prompts.setdefault(req.constraint.value, []).append(prompt_text(req.prompt))
    # candidates 0 and 2 read set 0 (both tables in the prompt), candidate 1 set 1 (products only)
    assert sorted(map(len, prompts.values())) == [1, 2] and set(prompts) == set(expected)
    assert all("sales" in p for p in prompts[expected[0]])
    assert all("sales" not in p.split("-- Question")[-2] for p in prompts[expected[1]])


def test_when_nothing_runs_a_whole_query_is_preferred_to_a_cut_one(shop_db: Path) -> None:
    cut = "SELECT name, name, name, (CASE WHEN (CASE WHEN (price"  # ran out of tokens
    whole = "SELECT name FROM products WHERE price > 1 GROUP BY count(*)"  # whole, fails at run time
    model = GrammarModel([cut, whole, cut])
    result = _parser(model, shop_db, n_candidates=3, max_attempts=1, bind_tables=False).parse("List the products.")
    assert not result.ok and result.sql == whole and result.candidates[0].sql == cut
