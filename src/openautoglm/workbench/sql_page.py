"""The SQL page: questions in a chat, answered by :class:`openautoglm.sql.SemanticParser`.

Databases are the operator's (``openautoglm serve --sql-db NAME=URL``): the browser names one,
never a URL, and URLs are never sent back (only names and dialects).  Each conversation has its
own parser (a :class:`~openautoglm.sql.Conversation`, so follow-ups see the earlier turns) on the
served model, with the library's guards: read-only connections, the SELECT-only checker with its
function allow-list, and the execution deadline.  Every answer shows its SQL, rows, confidence,
candidates and the correction attempts (each rejected SQL with the feedback the model got),
read back from the traces the parser wrote to the project store.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import InputDataError, OpenAutoGLMError
from ..redact import mask_secrets, mask_text
from ..serve.jobs import JobNotFound
from ..serve.validation import require_valid_unicode

#: conversations kept in memory (the oldest is closed beyond this)
MAX_CONVERSATIONS = 64
MAX_TURNS = 50
MAX_ROWS = 50


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, data: Any) -> Any:
        return require_valid_unicode(data)


class OpenBody(_Strict):
    database: str = Field(max_length=64, description="a name from GET /api/sql/databases")
    candidates: int = Field(default=3, ge=1, le=8, description="SQL candidates per question (voted by result)")


class AskBody(_Strict):
    question: str = Field(min_length=1, max_length=2000)


class _Conversation:
    def __init__(self, database: str, parser: Any) -> None:
        self.database = database
        self.parser = parser
        self.chat = parser.conversation()
        self.turns: list[dict[str, Any]] = []
        self.lock = threading.Lock()


class SqlSessions:
    """The operator's databases and the open conversations over them."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.urls: dict[str, str] = dict(state.config.sql_dbs)
        self._conversations: OrderedDict[str, _Conversation] = OrderedDict()
        self._lock = threading.Lock()

    def _url(self, name: str) -> str:
        if name not in self.urls:
            known = ", ".join(self.urls) or "none (start the server with --sql-db NAME=URL)"
            raise InputDataError(f"no database named {name!r}", hint=f"databases: {known}")
        return self.urls[name]

    def databases(self) -> list[dict[str, Any]]:
        """Each database's name, dialect and tables (no URL); an unreachable one says why."""
        from ..sql import Database

        out = []
        for name, url in self.urls.items():
            entry: dict[str, Any] = {"name": name}
            try:
                with Database(url) as db:
                    schema = db.schema(sample_values=0)
                    entry.update(dialect=db.dialect,
                                 tables=[{"name": t.name, "columns": [c.name for c in t.columns]} for t in schema.tables])
            except OpenAutoGLMError as exc:
                entry["error"] = mask_text(exc.message)
            out.append(entry)
        return out

    def open(self, database: str, candidates: int = 3) -> dict[str, Any]:
        from ..sql import SemanticParser

        url = self._url(database)
        conv_id = "sql-" + secrets.token_hex(6)
        parser = SemanticParser(self.state.backend, url, n_candidates=candidates, max_attempts=3,
                                store=str(self.state.store.path), run_id=conv_id)
        with self._lock:
            self._conversations[conv_id] = _Conversation(database, parser)
            while len(self._conversations) > MAX_CONVERSATIONS:
                _, old = self._conversations.popitem(last=False)
                old.parser.close()
        return {"conversation_id": conv_id, "database": database, "turns": []}

    def _get(self, conv_id: str) -> _Conversation:
        with self._lock:
            conv = self._conversations.get(conv_id)
        if conv is None:
            raise JobNotFound(f"no conversation {conv_id!r}", hint="open one with POST /api/sql/conversations")
        return conv

    def view(self, conv_id: str) -> dict[str, Any]:
        conv = self._get(conv_id)
        return {"conversation_id": conv_id, "database": conv.database, "turns": conv.turns}

    def ask(self, conv_id: str, question: str) -> dict[str, Any]:
        """Answer one question with the conversation's history; the turn as the page shows it."""
        conv = self._get(conv_id)
        with conv.lock:
            if len(conv.turns) >= MAX_TURNS:
                raise InputDataError(f"this conversation has {MAX_TURNS} turns", hint="open a new conversation")
            started = time.time()
            last = self.state.store.execute("SELECT COALESCE(MAX(id), 0) AS id FROM calls")[0]["id"]
            follow_up = bool(conv.chat.history)
            result = conv.chat.ask(question)
            turn = mask_secrets(json.loads(json.dumps(result.to_dict(MAX_ROWS), default=str)))
            turn.update(follow_up=follow_up, seconds=round(time.time() - started, 3),
                        attempts=self._attempts(conv_id, last, len(result.candidates)))
            conv.turns.append(turn)
            return turn

    def _attempts(self, conv_id: str, after_id: int, n: int) -> list[list[dict[str, Any]]]:
        """Per candidate (greedy first), each verified attempt: its SQL, whether it passed, the feedback."""
        from ..sql.parser import extract_sql

        rows = self.state.store.execute(
            "SELECT record_key, attempt, prompt, response FROM calls WHERE run_id = ? AND kind = 'verify'"
            " AND id > ? ORDER BY id", (conv_id, after_id))
        by_key: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        for row in rows:
            verdict, answer = _json(row["response"], {}), _json(row["prompt"], row["prompt"] or "")
            by_key.setdefault(row["record_key"] or "", []).append({
                "attempt": row["attempt"], "sql": extract_sql(str(answer)),
                "ok": bool(verdict.get("ok")) if isinstance(verdict, dict) else False,
                "feedback": mask_text(str(verdict.get("feedback") or "")) if isinstance(verdict, dict) else ""})

        def order(key: str) -> tuple[int, int]:
            tail = key.rsplit("#", 1)[-1]
            return (0, 0) if tail == "greedy" else (1, int(tail[1:]) if tail[1:].isdigit() else 0)

        return [by_key[k] for k in sorted(by_key, key=order)][:n]

    def close(self) -> None:
        with self._lock:
            for conv in self._conversations.values():
                conv.parser.close()
            self._conversations.clear()


def _json(text: Any, default: Any) -> Any:
    """``text`` read as JSON (the store keeps prompts and responses as JSON when they are not plain text)."""
    if not isinstance(text, str):
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def build_sql_router(state: Any, pages: Any) -> APIRouter:
    router = APIRouter()
    sessions = SqlSessions(state)
    state.on_close.append(sessions.close)
    limiter = anyio.CapacityLimiter(4)

    async def in_thread(fn: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)

    @router.get("/sql", include_in_schema=False)
    async def sql_page(request: Request) -> HTMLResponse:
        return pages.render("sql.html", request, databases=list(sessions.urls))

    @router.get("/api/sql/databases", tags=["sql"])
    async def databases() -> dict[str, Any]:
        """The operator's databases (``--sql-db``): name, dialect, tables and columns; never the URL."""
        return {"databases": await in_thread(sessions.databases)}

    @router.post("/api/sql/conversations", tags=["sql"])
    async def open_conversation(req: OpenBody) -> dict[str, Any]:
        """Open a conversation over one of the operator's databases."""
        return await in_thread(sessions.open, req.database, req.candidates)

    @router.get("/api/sql/conversations/{conv_id}", tags=["sql"])
    async def get_conversation(conv_id: str) -> dict[str, Any]:
        return sessions.view(conv_id)

    @router.post("/api/sql/conversations/{conv_id}/ask", tags=["sql"])
    async def ask(conv_id: str, req: AskBody) -> dict[str, Any]:
        """Ask a question (follow-ups see the earlier turns): SQL, rows, confidence, candidates, attempts."""
        return await in_thread(sessions.ask, conv_id, req.question)

    return router
