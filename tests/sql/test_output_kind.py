"""``output: sql``: the text-to-SQL application's output kind, found by name like any plug-in."""

from __future__ import annotations

import pytest

pytest.importorskip("sqlglot")

from openautoglm import Pipeline, Task  # noqa: E402
from openautoglm.core.outputs import output_kind  # noqa: E402


def _run(responses: list[str], **task: object):  # type: ignore[no-untyped-def]
    t = Task(template="-- Question: {question}", output="sql", format="text", answer_prefix="-- SQL:", **task)
    model = {"model": "fake", "responses": responses}
    return Pipeline(model=model, task=t, store=False).run(question="How many products?")


def test_the_kind_is_found_by_name_through_its_entry_point() -> None:
    assert type(output_kind("sql")).__module__ == "openautoglm.sql.output"


def test_a_valid_select_is_returned_as_checked() -> None:
    result = _run(["```sql\nselect count(*) from products;\n```"])
    assert result.valid is True and result["sql"] == "SELECT COUNT(*) FROM products"
    assert result["tables"] == ["products"] and result.attempts == 1


def test_an_unsafe_answer_is_reasked_with_the_reason() -> None:
    result = _run(["DROP TABLE products", "SELECT name FROM products"], max_retries=1)
    assert result.valid is True and result["sql"] == "SELECT name FROM products" and result.attempts == 2


def test_no_valid_select_after_the_retries_is_reported_not_hidden() -> None:
    result = _run(["DELETE FROM products"], max_retries=1)
    assert result.valid is False and result["sql"] is None and result.attempts == 2
    assert result.errors and "SELECT" in result.errors[0]
