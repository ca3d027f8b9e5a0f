"""Schema linking (which tables/columns a question mentions) and value linking
(which literal values in the question occur in the database).

Lexical and fast: question words are matched against table/column names split on
``_`` and camelCase (with light stemming), and question n-grams against the distinct
values of text columns.  The pruned schema keeps the best tables, the tables that join
them (foreign keys), and for wide tables only keys plus the best-matching columns, so
schemas with hundreds of columns fit a small context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .database import Database
    from .schema import Schema

_WORD = re.compile(r"[A-Za-z0-9]+|[\u4e00-\u9fff]")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
STOPWORDS = frozenset("""a an the of in on for to by with and or is are was were be been what which who whom whose
how many much show list give find return all each every that this those these there their its from at as do does
did have has had me please""".split())


def _stem(word: str) -> str:
    w = word.lower()
    for suffix in ("ies", "es", "s"):
        if len(w) > 4 and w.endswith(suffix):
            return w[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return w


def words(text: str) -> list[str]:
    """Lower-cased stems of the words of a question or an identifier."""
    text = _CAMEL.sub(" ", text.replace("_", " "))
    return [_stem(w) for w in _WORD.findall(text)]


@dataclass
class ValueMatch:
    table: str
    column: str
    value: str

    def hint(self) -> str:
        return f"{self.table}.{self.column} = {self.value!r}"


@dataclass
class Linking:
    """What the question was linked to; ``tables``/``columns`` drive the pruned schema."""

    tables: list[str]
    columns: dict[str, set[str]]
    values: list[ValueMatch] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)

    def explain(self) -> str:
        parts = [f"tables: {', '.join(self.tables)}"]
        if self.values:
            parts.append("values: " + "; ".join(v.hint() for v in self.values))
        return " · ".join(parts)


def _name_score(question_words: set[str], name: str) -> float:
    parts = [w for w in words(name) if w not in ("id",)] or words(name)
    if not parts:
        return 0.0
    hit = sum(1 for w in parts if w in question_words)
    return hit / len(parts)


def value_index(db: "Database", schema: "Schema", *, per_column: int = 5000) -> dict[str, list[ValueMatch]]:
    """Distinct values of every text column (at most ``per_column`` each), keyed by their
    stripped lower-case form: read once per database, then matched per question."""
    from .database import DatabaseError
    from .schema import _ident

    index: dict[str, list[ValueMatch]] = {}
    for t in schema.tables:
        for c in t.columns:
            if not c.is_text:
                continue
            sql = f"SELECT DISTINCT {_ident(c.name, db.dialect)} FROM {_ident(t.name, db.dialect)} LIMIT {per_column}"
            try:
                values = db.execute(sql, timeout_s=2.0, max_rows=per_column).rows
            except DatabaseError:
                continue
            for (value,) in values:
                if isinstance(value, str) and not value.isdigit():
                    index.setdefault(value.strip().lower(), []).append(ValueMatch(t.name, c.name, value))
    return index


def match_values(db: "Database", schema: "Schema", question: str, *, per_column: int = 5000,
                 max_matches: int = 6, index: dict[str, list[ValueMatch]] | None = None) -> list[ValueMatch]:
    """Question n-grams (and quoted strings) that equal a value of a text column
    (``index``: a :func:`value_index` built earlier, else read now)."""
    if index is None:
        index = value_index(db, schema, per_column=per_column)
    tokens = re.findall(r"[\w'.-]+|[\u4e00-\u9fff]+", question)
    grams = set()
    for n in (4, 3, 2, 1):
        for i in range(len(tokens) - n + 1):
            gram = " ".join(tokens[i:i + n]).strip(".'")
            if gram and (n > 1 or gram.lower() not in STOPWORDS) and len(gram) > 1:
                grams.add(gram.lower())
    grams |= {q.lower() for q in re.findall(r"['\"“”‘’]([^'\"“”‘’]{1,60})['\"“”‘’]", question)}
    matches = [m for gram in grams for m in index.get(gram, [])]
    matches.sort(key=lambda m: -len(m.value))  # longer literal matches are more specific
    return matches[:max_matches]


def link(schema: "Schema", question: str, *, values: list[ValueMatch] | None = None, max_tables: int = 4,
         max_columns: int = 60, columns_per_table: int = 12) -> Linking:
    """Choose the tables and columns to show the model for ``question``."""
    qwords = set(words(question)) - STOPWORDS
    values = values or []
    scores: dict[str, float] = {}
    col_scores: dict[str, dict[str, float]] = {}
    for t in schema.tables:
        per_col = {c.name: _name_score(qwords, c.name) for c in t.columns}
        for v in values:
            if v.table == t.name:
                per_col[v.column] = per_col.get(v.column, 0.0) + 1.0
        col_scores[t.name] = per_col
        scores[t.name] = 1.5 * _name_score(qwords, t.name) + max(per_col.values(), default=0.0) \
            + 0.1 * sum(1 for s in per_col.values() if s > 0)
    ranked = sorted(schema.tables, key=lambda t: -scores[t.name])
    if schema.column_count <= max_columns:
        chosen = [t.name for t in schema.tables]
    else:
        chosen = [t.name for t in ranked[:max_tables] if scores[t.name] > 0] or [ranked[0].name]
        # add bridge tables that join two chosen tables
        for t in schema.tables:
            if t.name not in chosen and len(schema.neighbours(t.name) & set(chosen)) >= 2:
                chosen.append(t.name)
    columns: dict[str, set[str]] = {}
    budget = max(columns_per_table, max_columns // max(1, len(chosen)))
    for name in chosen:
        table = schema.table(name)
        assert table is not None
        if len(table.columns) <= budget:
            columns[name] = {c.name for c in table.columns}
        else:
            best = sorted(table.columns, key=lambda c: -col_scores[name][c.name])[:budget]
            columns[name] = {c.name for c in best}
    return Linking(chosen, columns, values, {k: round(v, 3) for k, v in scores.items()})


def table_sets(schema: "Schema", linking: Linking, *, n: int = 3, max_tables: int = 3,
               min_score: float = 1.0) -> list[list[str]]:
    """Up to ``n`` different table sets a query for the question may read, best first.

    Each set grows from a seed table (the linked tables, best score first): it takes each
    further table that scores at least ``min_score`` and half the seed's score, with the
    table that joins it to the set (foreign keys) when it is not joined directly, up to
    ``max_tables``.  The first set grows from the best table, the second is that table
    alone, the others grow from the next seeds."""
    ranked = sorted((t.name for t in schema.tables if t.columns), key=lambda t: -linking.scores.get(t, 0.0))
    if not ranked:
        return []

    def grow(seed: str) -> list[str]:
        chosen = [seed]
        floor = max(min_score, 0.5 * linking.scores.get(seed, 0.0))
        for other in ranked:
            if other in chosen or linking.scores.get(other, 0.0) < floor or len(chosen) >= max_tables:
                continue
            near = schema.neighbours(other)
            if any(t in near for t in chosen):
                chosen.append(other)
                continue
            bridges = [b for b in ranked if b not in chosen and b in near and schema.neighbours(b) & set(chosen)]
            if bridges and len(chosen) + 2 <= max_tables:
                chosen += [bridges[0], other]
        return chosen

    sets: list[list[str]] = []
    for candidate in [grow(ranked[0]), [ranked[0]], *(grow(seed) for seed in ranked[1:])]:
        if len(sets) >= n:
            break
        if set(candidate) not in [set(s) for s in sets]:
            sets.append(candidate)
    return sets
