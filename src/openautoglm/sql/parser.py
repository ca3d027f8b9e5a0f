"""``SemanticParser``: questions in natural language → one safe, executed SELECT.

Per question: link the schema and the literal values, retrieve similar examples,
render a CREATE TABLE-style prompt, and generate one greedy and several sampled
candidates through the core's verify-and-revise loop, whose verifier is *execution*:
a candidate that fails the safety check or the database rejects goes back to the model
with the error message, up to ``max_attempts``.  So does one that runs but is degenerate
(:mod:`.plausibility`: a condition on constants or a column against itself, a WHERE value
the question does not name); repeated select results and sort keys are dropped without
asking the model again.  The candidates that run are grouped by their result rows and the
largest group wins (execution-result voting), a group with a flawless member before any
without; its vote share is the confidence.  A candidate whose correction no longer runs
keeps its earlier answer that did.  Every model call, attempt and verdict is traced by the core.

On a backend that enforces grammars (``"grammar" in backend.constraints``: the local
backend), every candidate is generated under a SELECT grammar, so the model cannot name a
table or column that does not exist; correction and voting work on top of it unchanged.
With ``bind_tables`` (the default) each candidate gets one of the table sets schema linking
proposes (:func:`.linking.table_sets`, a different set per candidate where there are
several): its prompt shows those tables only and its grammar (:mod:`.bound`) admits only
them, with ``T1``..``Tk`` bound to them so ``T1.col`` names a column of ``T1``'s table.
Without it, the database's grammar (:mod:`.grammar`, any table, aliases unbound).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..core.client import ModelClient
from ..core.strategy import DEMOS_KEY
from ..errors import BackendError, OpenAutoGLMError
from .database import Database, DatabaseError, QueryResult
from .examples import Example, ExamplePool
from .bound import set_grammar_for
from .grammar import DEFAULT_MAX_DEPTH, SqlGrammar, SqlGrammarError, grammar_for
from .linking import Linking, link, match_values, table_sets, value_index
from .plausibility import dedupe, implausibility
from .safety import UnsafeQueryError, check_select, require_encodable, transpile

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.base import Backend, Completion, Constraint, GenerationRequest
    from ..core.task import Task
    from ..store.sqlite import Store

SQL_STOPS = ["\n\n", ";", "\n--", "\n#", "```"]
#: context key: the words a query's values may come from (the question, and a conversation's earlier turns)
ASKED_KEY = "__asked__"
_STATEMENT_WORDS = frozenset("""SELECT WITH INSERT UPDATE DELETE DROP CREATE ALTER REPLACE TRUNCATE PRAGMA ATTACH
DETACH VACUUM COPY GRANT REVOKE SET BEGIN COMMIT ROLLBACK DO CALL EXPLAIN ANALYZE""".split())
DIALECT_TITLE = {"sqlite": "SQLite", "postgres": "PostgreSQL", "duckdb": "DuckDB", "mysql": "MySQL"}


@dataclass
class Candidate:
    sql: str
    source: str  # "greedy" or "sample"
    ok: bool = False
    error: str | None = None
    attempts: int = 1
    result: QueryResult | None = None
    votes: int = 0
    #: why a query that runs is still degenerate (:func:`.plausibility.implausibility`), or None
    flaw: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"sql": self.sql, "source": self.source, "ok": self.ok, "error": self.error,
                "attempts": self.attempts, "votes": self.votes, "flaw": self.flaw,
                "row_count": len(self.result.rows) if self.result else None}


@dataclass
class ParseResult:
    """What :meth:`SemanticParser.parse` returns."""

    question: str
    sql: str
    confidence: float
    candidates: list[Candidate]
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] | None = None
    truncated: bool = False
    error: str | None = None
    explanation: dict[str, Any] = field(default_factory=dict)

    @property
    def logical_form(self) -> str:
        """The executable query (the product's original name for ``sql``)."""
        return self.sql

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self, max_rows: int = 50) -> dict[str, Any]:
        return {"question": self.question, "sql": self.sql, "confidence": round(self.confidence, 4),
                "ok": self.ok, "error": self.error, "columns": self.columns,
                "rows": [list(r) for r in (self.rows or [])[:max_rows]], "truncated": self.truncated,
                "explanation": self.explanation, "candidates": [c.to_dict() for c in self.candidates]}


def extract_sql(text: str) -> str:
    """The SQL in a model answer: code fences and chatter removed, one statement."""
    text = text.strip()
    fence = re.search(r"```(?:sql)?\s*(.*?)(?:```|$)", text, flags=re.S | re.I)
    if fence:
        text = fence.group(1)
    start = re.search(r"\b(SELECT|WITH)\b", text, flags=re.I)
    if start:
        text = text[start.start():]
    elif text and text.split()[0].upper() not in _STATEMENT_WORDS:
        text = "SELECT " + text  # the model continued after an implied SELECT
    return " ".join(text.split(";")[0].split())


def result_signature(result: QueryResult) -> tuple:
    """Rows as an order-free bag, for voting (column names and row order ignored)."""
    return tuple(sorted((tuple(_norm(v) for v in row) for row in result.rows), key=repr))


def _norm(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    return value


class SemanticParser:
    """Text-to-SQL over one database.

    ``model`` is any backend spec (``"local"``, ``"openai:..."``, a Backend; ``model_path`` is an
    alias, the origin articles' spelling);
    ``db`` a URL (``sqlite:///x.db``, ``postgresql://...``, ``duckdb:///x.duckdb``) or a
    :class:`Database`; ``examples`` a question/SQL pool (a .jsonl path, a list of dicts,
    an :class:`ExamplePool`, or ``None``).  ``grammar``: generate under the database's SELECT
    grammar (``None``: whenever the backend enforces grammars and ``chain_of_thought`` is off;
    ``True``: require it; ``False``: never); ``grammar_depth`` bounds subquery nesting;
    ``bind_tables``: under a grammar, each candidate reads one linked table set with bound aliases.
    """

    def __init__(self, model: "str | Backend | None" = None, db: "str | Database | None" = None, *,
                 examples: "str | Path | ExamplePool | Sequence[dict[str, Any]] | None" = None,
                 n_examples: int = 4, n_candidates: int = 4, max_attempts: int = 3, temperature: float = 0.7,
                 chain_of_thought: bool = False, execute: bool = True, timeout_s: float = 10.0,
                 max_rows: int = 1000, max_tokens: int = 160, max_columns: int = 60,
                 store: "Store | str | Path | bool | None" = None, exclude_example_db: str | None = None,
                 link_values: bool = True, run_id: str | None = None, examples_dialect: str = "sqlite",
                 seed: int = 0, model_path: "str | Backend | None" = None, grammar: bool | None = None,
                 grammar_depth: int = DEFAULT_MAX_DEPTH, bind_tables: bool = True) -> None:
        from ..backends.registry import create_backend

        if db is None:
            raise OpenAutoGLMError("SemanticParser needs a database", hint='pass db="sqlite:///path/to/file.db"')
        self.db = db if isinstance(db, Database) else Database(str(db), timeout_s=timeout_s, max_rows=max_rows)
        if model_path is not None and model is not None and model != model_path:
            raise OpenAutoGLMError("give SemanticParser `model=` or its alias `model_path=`, not both")
        self.backend = create_backend(model if model is not None else model_path)
        self.pool = _as_pool(examples)
        self.n_examples = n_examples
        self.n_candidates = max(1, n_candidates)
        self.max_attempts = max(1, max_attempts)
        self.temperature = temperature
        self.chain_of_thought = chain_of_thought
        self.execute = execute
        self.max_tokens = max_tokens
        self.max_columns = max_columns
        self.exclude_example_db = exclude_example_db
        self.store = _as_store(store)
        self.link_values = link_values
        self.examples_dialect = examples_dialect
        self.seed = seed
        self.run_id = run_id
        self._counter = 0
        self._values: dict[str, list[Any]] | None = None
        self.use_grammar = grammar
        self.grammar_depth = grammar_depth
        self.bind_tables = bind_tables
        enforced = "grammar" in getattr(self.backend, "constraints", ())
        if grammar and not enforced:
            raise OpenAutoGLMError(f"backend {self.backend.name!r} does not enforce grammars",
                                   hint="use the local backend, or grammar=None to use it only where enforced")
        if grammar and chain_of_thought:
            raise OpenAutoGLMError("grammar=True constrains the whole answer: it cannot follow free reasoning",
                                   hint="turn chain_of_thought off, or leave grammar=None")

    def schema_grammar(self) -> SqlGrammar | None:
        """The grammar candidates are generated under (built once per schema), or ``None``."""
        if self.use_grammar is False or self.chain_of_thought or "grammar" not in self.backend.constraints:
            return None
        return grammar_for(self.db, max_depth=self.grammar_depth)

    # -- prompt --------------------------------------------------------------------------
    def _task(self, temperature: float, seed: int | None = None) -> "Task":
        from ..core.task import Task

        strategy = {"name": "verify_revise", "max_attempts": self.max_attempts,
                    "inner": "chain_of_thought" if self.chain_of_thought else "direct",
                    "verifier": {"type": "callable", "function": self._verify}}
        title = DIALECT_TITLE.get(self.db.dialect, self.db.dialect)
        return Task(name="text_to_sql", template="{schema}-- Question: {question}", output="text", format="text",
                    system=f"-- Write one {title} SELECT query that answers the question.",
                    answer_prefix="-- SQL:", stop=SQL_STOPS, max_tokens=self.max_tokens,
                    temperature=temperature, seed=seed, strategy=strategy)

    def context(self, question: str, history: Sequence[tuple[str, str]] = ()) -> tuple[dict[str, Any], Linking, list[Example]]:
        """The prompt context for ``question`` (pruned schema, value hints, examples, history)."""
        schema = self.db.schema()
        if self.link_values and self._values is None:
            self._values = value_index(self.db, schema)  # once per parser, not per question
        values = match_values(self.db, schema, question, index=self._values) if self.link_values else []
        linking = link(schema, question, values=values, max_columns=self.max_columns)
        demos = self.pool.retrieve(question, self.n_examples, exclude_db=self.exclude_example_db) if self.pool else []
        # what the plausibility check may find a query's values in: a follow-up reuses the earlier turns'
        # (the last three, as the prompt shows them)
        asked = " ".join([question, *(f"{q} {sql}" for q, sql in history[-3:])])
        ctx = {"schema": self._schema_text(linking, linking.tables, history), "question": question.strip(),
               ASKED_KEY: asked,
               DEMOS_KEY: [{"schema": "", "question": d.question, "output": self._in_dialect(d.sql)} for d in demos]}
        return ctx, linking, demos

    def _schema_text(self, linking: Linking, tables: Sequence[str], history: Sequence[tuple[str, str]] = ()) -> str:
        """The prompt's schema part: ``tables`` (linked columns only), value hints about them, history."""
        text = self.db.schema().to_prompt(tables, linking.columns)
        shown = {t.lower() for t in tables}
        values = [v for v in linking.values if v.table.lower() in shown]
        if values:
            text += "\n-- Values mentioned in the question: " + "; ".join(v.hint() for v in values)
        for prev_q, prev_sql in history[-3:]:
            text += f"\n-- Earlier question: {prev_q}\n-- Its SQL: {prev_sql}"
        return text + "\n\n"

    def _plans(self, ctx: dict[str, Any], linking: Linking, grammar: SqlGrammar | None, history: Sequence[tuple[str, str]]
               ) -> list[tuple[dict[str, Any], "Constraint | None", list[int], list[str]]]:
        """Which candidates (0: greedy) run with which prompt and constraint: one group per
        table set under ``bind_tables`` (candidate j takes set j modulo their number), else one."""
        everyone = list(range(self.n_candidates if self.temperature > 0 else 1))
        sets = table_sets(self.db.schema(), linking, n=len(everyone)) if grammar is not None and self.bind_tables else []
        if not sets:
            return [(ctx, grammar.constraint() if grammar else None, everyone, [])]
        plans = []
        for i, tables in enumerate(sets):
            try:
                constraint = set_grammar_for(self.db, tables, max_depth=self.grammar_depth).constraint()
            except SqlGrammarError:
                constraint, tables = grammar.constraint(), list(linking.tables)  # type: ignore[union-attr]
            members = [j for j in everyone if j % len(sets) == i]
            plans.append(({**ctx, "schema": self._schema_text(linking, tables, history)}, constraint, members, tables))
        return plans

    def _in_dialect(self, sql: str) -> str:
        """Examples are written for ``examples_dialect`` (Spider: SQLite); show them in the database's."""
        if self.db.dialect == self.examples_dialect:
            return sql
        try:
            return transpile(sql, read=self.examples_dialect, write=self.db.dialect)
        except Exception:  # noqa: BLE001 - an example sqlglot cannot translate is shown as written
            return sql

    # -- verification (execution) -----------------------------------------------------------
    def _sql(self, text: str) -> str:
        """The query in a model answer, repeated select results and sort/group keys dropped."""
        return dedupe(extract_sql(text), self.db.dialect)

    def _verify(self, output: dict[str, Any], context: dict[str, Any]) -> tuple[bool, str]:
        sql = self._sql(output.get("text", ""))
        cache = context["__results__"]
        try:
            checked = check_select(sql, self.db.dialect)
        except UnsafeQueryError as exc:
            cache[sql] = exc.message
            return False, exc.message
        if not self.execute:
            cache[sql] = None
            return True, ""
        if sql not in cache:
            try:
                cache[sql] = self.db.execute(checked.sql, checked=False)
            except DatabaseError as exc:
                cache[sql] = exc.message
        value = cache[sql]
        if isinstance(value, str):
            return False, f"the database rejected it: {value}"
        flaw = implausibility(sql, self.db.dialect, question=context.get(ASKED_KEY, context.get("question")))
        if flaw is not None:
            return False, f"it runs, but {flaw}"
        return True, ""

    # -- parsing --------------------------------------------------------------------------------
    def parse(self, question: str, *, history: Sequence[tuple[str, str]] = ()) -> ParseResult:
        """Answer one question (``history``: earlier (question, sql) turns of a conversation)."""
        if not question or not question.strip():
            raise OpenAutoGLMError("empty question", hint="ask something the database can answer")
        for text in (question, *(q for q, _ in history)):
            require_encodable(text, "question")  # model tokenizers raise TypeError on lone surrogates
        ctx, linking, demos = self.context(question, history)
        results_cache: dict[str, Any] = {}
        ctx["__results__"] = results_cache
        grammar = self.schema_grammar()
        cache_get = self.store.cache_get if self.store else None
        self._counter += 1
        key = f"q{self._counter}"
        seed = _stable_seed(question, self.seed)  # the same question gets the same candidates
        plans = self._plans(ctx, linking, grammar, history)
        found: dict[int, Candidate] = {}
        for plan_ctx, constraint, members, _ in plans:
            client = (ModelClient(self.backend, cache_get=cache_get) if constraint is None
                      else ConstrainedClient(self.backend, constraint, cache_get=cache_get))
            runs = [(self._task(0.0), [0])] if 0 in members else []
            if any(j > 0 for j in members):
                runs.append((self._task(self.temperature, seed), [j for j in members if j > 0]))
            for task, js in runs:
                sources = ["greedy" if j == 0 else "sample" for j in js]
                keys = [f"{key}#greedy" if j == 0 else f"{key}#s{j - 1}" for j in js]
                try:
                    outs = task.run_many(client, [plan_ctx] * len(keys), step="sql", record_keys=keys)
                except BackendError as exc:
                    if constraint is None:
                        raise
                    # a constrained decoder that fails (e.g. the grammar admits no token) fails these candidates only
                    found.update((j, Candidate("", src, error=f"constrained generation failed: {exc.message}"))
                                 for j, src in zip(js, sources))
                    continue
                found.update((j, self._candidate(out, src, results_cache, ctx[ASKED_KEY]))
                             for j, out, src in zip(js, outs, sources))
            if self.store is not None:
                calls, cache = client.drain()
                self.store.log(calls, cache, run_id=self.run_id)
        result = self._vote(question, [found[j] for j in sorted(found)], linking, demos)
        result.explanation["grammar"] = grammar is not None
        if any(tables for *_, tables in plans):
            result.explanation["table_sets"] = [tables for *_, tables in plans]
        return result

    def _candidate(self, out: dict[str, Any], source: str, results: dict[str, Any], question: str | None = None
                   ) -> Candidate:
        sql = self._sql(out.get("text", ""))
        value = results.get(sql)
        cand = Candidate(sql, source, attempts=int(out.get("attempts", 1)))
        if not isinstance(value, QueryResult):
            # the last attempt did not run: an earlier one that ran but was sent back as implausible is better
            for failed in out.get("failed_attempts", []):
                earlier = self._sql(str(failed.get("answer", "")))
                if isinstance(results.get(earlier), QueryResult):
                    sql, value = earlier, results[earlier]
                    cand.sql = sql
                    break
        if isinstance(value, QueryResult):
            cand.ok, cand.result = True, value
            cand.flaw = implausibility(sql, self.db.dialect, question=question)
        elif value is None and not self.execute and out.get("verified"):
            cand.ok = True
        else:
            cand.error = value if isinstance(value, str) else "not checked"
        return cand

    def _vote(self, question: str, candidates: list[Candidate], linking: Linking, demos: list[Example]) -> ParseResult:
        groups: dict[Any, list[Candidate]] = {}
        for c in candidates:
            if c.ok:
                sig = result_signature(c.result) if c.result is not None else c.sql
                groups.setdefault(sig, []).append(c)
        for members in groups.values():
            for c in members:
                c.votes = len(members)
        explanation: dict[str, Any] = {"linked_tables": linking.tables,
                                       "values": [v.hint() for v in linking.values],
                                       "examples": [d.question for d in demos]}
        if not groups:  # nothing ran: the first candidate that is at least a whole query (not cut at max_tokens)
            best = next((c for c in candidates if _complete(c.sql, self.db.dialect)), candidates[0])
            return ParseResult(question, best.sql, 0.0, candidates, error=best.error or "no candidate ran",
                               explanation=explanation)
        # a group with a flawless member first, then the largest; ties go to the group holding the
        # greedy candidate, then to the first
        winner = max(groups.values(), key=lambda m: (any(c.flaw is None for c in m), len(m),
                                                     any(c.source == "greedy" for c in m)))
        best = min(winner, key=lambda c: (c.flaw is not None, c.source != "greedy"))
        explanation.update(_used(best.sql, self.db.dialect))
        res = best.result
        return ParseResult(question, best.sql, len(winner) / len(candidates), candidates,
                           columns=res.columns if res else [], rows=res.rows if res else None,
                           truncated=res.truncated if res else False, explanation=explanation)

    def conversation(self) -> "Conversation":
        """A stateful session: follow-up questions see the earlier turns."""
        return Conversation(self)

    def close(self) -> None:
        self.db.close()
        if self.store is not None:
            self.store.close()


@dataclass
class Conversation:
    parser: SemanticParser
    history: list[tuple[str, str]] = field(default_factory=list)

    def ask(self, question: str) -> ParseResult:
        result = self.parser.parse(question, history=self.history)
        if result.ok:
            self.history.append((question, result.sql))
        return result


class ConstrainedClient(ModelClient):
    """A model client that sends ``constraint`` with every generation request lacking one."""

    def __init__(self, backend: "Backend", constraint: "Constraint", **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        self.constraint = constraint

    def generate(self, requests: Sequence["GenerationRequest"], **kwargs: Any) -> list["Completion"]:
        constrained = [r if r.constraint is not None else replace(r, constraint=self.constraint) for r in requests]
        return super().generate(constrained, **kwargs)


def _stable_seed(question: str, seed: int) -> int:
    import hashlib

    digest = hashlib.sha256(f"{seed}|{question.strip()}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _complete(sql: str, dialect: str) -> bool:
    """Whether ``sql`` parses as one statement (a candidate cut at ``max_tokens`` does not)."""
    import sqlglot

    try:
        return bool(sql) and sqlglot.parse_one(sql, read=dialect) is not None
    except Exception:  # noqa: BLE001 - any parse failure means incomplete here
        return False


def _used(sql: str, dialect: str) -> dict[str, Any]:
    """Tables and columns a query reads (for the explanation)."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except Exception:  # noqa: BLE001 - explanation only
        return {}
    return {"tables": sorted({t.name for t in tree.find_all(exp.Table)}),
            "columns": sorted({c.name for c in tree.find_all(exp.Column) if c.name})}


def _as_pool(examples: Any) -> ExamplePool | None:
    if examples is None or isinstance(examples, ExamplePool):
        return examples
    if isinstance(examples, (str, Path)):
        return ExamplePool.from_jsonl(examples)
    return ExamplePool.from_records(list(examples))


def _as_store(store: Any) -> "Store | None":
    if store is None or store is False:
        return None
    from ..store.sqlite import Store

    if store is True:
        return Store()
    return store if isinstance(store, Store) else Store(store)
