"""The schema grammar on the embedded model: the local decoder must keep every candidate inside
its table set's grammar, so no answer names a table or column the database lacks, or qualifies
a column with an alias whose table lacks it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openautoglm.sql.bound import set_grammar_for
from openautoglm.sql.compare import unknown_identifiers
from openautoglm.sql.grammar import accepts, load_tokenizer
from openautoglm.sql.parser import SemanticParser

pytestmark = pytest.mark.slow

# the questions of Spider dev on which the unconstrained parser invented names (issue 18)
QUESTIONS = ["How many singers do we have?", "What are the names of the stadiums without any concerts?",
             "Show the name and the release year of the song by the youngest singer."]


@pytest.fixture()
def local_model(local_model):  # type: ignore[no-untyped-def]
    """The SQL tests' embedded model (conftest), where it enforces grammars."""
    if "grammar" not in local_model.constraints:
        pytest.skip("the local backend does not enforce grammars yet")
    return local_model


def test_candidates_stay_inside_the_schema(local_model, spider_dir: Path) -> None:  # type: ignore[no-untyped-def]
    db = spider_dir / "database" / "concert_singer" / "concert_singer.sqlite"
    pool = [json.loads(line) for line in (spider_dir / "train_pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    parser = SemanticParser(local_model, f"sqlite:///{db}", examples=pool[:400], n_candidates=2, max_attempts=2,
                            max_tokens=80, grammar=True)
    tokenizer = load_tokenizer()
    schema = parser.db.schema()
    for question in QUESTIONS:
        result = parser.parse(question)
        assert result.explanation["grammar"] is True
        sets = result.explanation["table_sets"]
        for j, cand in enumerate(result.candidates):
            # candidate j was generated under the grammar of table set j (modulo their number)
            grammar = set_grammar_for(parser.db, sets[j % len(sets)])
            complete, prefix = accepts(grammar, cand.sql, tokenizer)
            # every answer is a query the grammar admits, or a prefix of one (cut at max_tokens)
            assert prefix.strip() == cand.sql.strip(), (question, cand.sql)
            if complete:  # no unknown table/column, no alias naming a column its table lacks, no undefined alias
                assert unknown_identifiers(cand.sql, schema) == [], cand.sql
    parser.close()
