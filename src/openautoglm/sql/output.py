"""``output: sql``: a task whose answer is one read-only SELECT, checked before it is returned.

A plug-in output kind of the text-to-SQL application (declared in the entry-point group
``openautoglm.outputs``): the model's text is cut down to its first statement
(:func:`~.parser.extract_sql`), checked by :func:`~.safety.check_select` (one SELECT,
allowed functions only) and returned regenerated from the checked tree.  An answer
that fails the check is re-asked with the reason, up to the task's ``max_retries``;
the result says ``valid`` and keeps the last ``errors``.  The dialect is SQLite's; a
subclass registered under another name can set ``dialect = "postgres"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..backends.base import GenerationRequest, Prompt
from ..core.outputs import OutputKind, reask
from ..core.result import Result

if TYPE_CHECKING:  # pragma: no cover
    from ..core.client import ModelClient
    from ..core.task import Task


class Sql(OutputKind):
    name = "sql"
    dialect = "sqlite"

    def instruction(self, task: "Task") -> str:
        return "Answer with one SQL SELECT query and nothing else."

    def answer(self, task: "Task", client: "ModelClient", prompts: Sequence[Prompt], *, step: str,
               record_keys: Sequence[str], attempt: int = 0, fields: Sequence[Mapping[str, Any]] | None = None,
               **_: Any) -> list[Result]:
        from .parser import extract_sql
        from .safety import UnsafeQueryError, check_select

        results: list[Result | None] = [None] * len(prompts)
        conversations, tokens, attempts = list(prompts), [0] * len(prompts), [0] * len(prompts)
        errors: list[list[str]] = [[] for _ in prompts]
        pending = list(range(len(prompts)))
        for retry in range(task.max_retries + 1):
            if not pending:
                break
            reqs = [GenerationRequest(conversations[i], max_tokens=task.max_tokens, temperature=task.temperature,
                                      stop=tuple(task.stop), fields=fields[i] if fields is not None else None)
                    for i in pending]
            comps = client.generate(reqs, step=step, record_keys=[record_keys[i] for i in pending],
                                    attempt=attempt + retry)
            still = []
            for i, comp in zip(pending, comps):
                tokens[i] += comp.prompt_tokens + comp.completion_tokens
                attempts[i] += 1
                try:
                    checked = check_select(extract_sql(comp.text), self.dialect)
                except UnsafeQueryError as exc:
                    errors[i] = [exc.message]
                    conversations[i] = reask(conversations[i], comp.text, errors[i], what="SQL query")
                    still.append(i)
                    continue
                results[i] = Result(sql=checked.sql, output=checked.sql, valid=True, tables=list(checked.tables))
            pending = still
        out = []
        for i, res in enumerate(results):
            res = res if res is not None else Result(sql=None, output=None, valid=False, errors=errors[i])
            res["attempts"], res["tokens"] = attempts[i], tokens[i]
            out.append(res)
        return out

    def vote_key(self, task: "Task", result: Result) -> str | None:
        return result.get("sql") if result.valid else None

    def shown(self, task: "Task", result: Result) -> str:
        return str(result.get("sql") or "(no valid SELECT)")
