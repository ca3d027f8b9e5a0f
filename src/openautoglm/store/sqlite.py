"""The project store: one SQLite database (WAL mode) per project directory.

Tables:

* ``calls``   – every model call: backend, model, params, prompt, response, tokens,
  latency, error, run id, step, record, attempt (full-text searchable via ``calls_fts``);
* ``cache``   – responses of deterministic requests, keyed by a request hash (appended in
  rowid order and found through an index on the hash's first 64 bits: inserting by the
  64-character key itself scattered every write over a b-tree, 9-20 µs per entry);
* ``runs``    – one row per batch run (config hash, input, status, counts);
* ``records`` – per-record state and output of each run (the resume checkpoint).

Writes are batched: the driver commits one chunk of records together with their
call records and new cache entries in a single transaction, so a crash loses at most
the chunk in flight and never leaves a record half-written.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from .calls import CallRecord
from .fastjson import dumps
from .keyfilter import KeyFilter, key_hash

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    run_id TEXT,
    step TEXT,
    record_key TEXT,
    attempt INTEGER DEFAULT 0,
    kind TEXT NOT NULL,
    backend TEXT,
    model TEXT,
    params TEXT,
    prompt TEXT,
    response TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_ms REAL,
    error TEXT,
    cached INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS calls_run ON calls(run_id, record_key);
CREATE TABLE IF NOT EXISTS cache (
    id INTEGER PRIMARY KEY,
    h INTEGER NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_h ON cache(h);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT,
    config_hash TEXT,
    input TEXT,
    output TEXT,
    status TEXT NOT NULL,
    total INTEGER,
    done INTEGER DEFAULT 0,
    failed INTEGER DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    meta TEXT
);
CREATE TABLE IF NOT EXISTS records (
    run_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    record_key TEXT,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT,
    ts REAL NOT NULL,
    input_hash TEXT,
    PRIMARY KEY (run_id, idx)
);
"""

# The full-text index is brought up to date lazily, when someone searches, so that
# logging a call costs one plain INSERT (an FTS trigger doubled the per-call cost).
FTS_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS calls_fts USING fts5(prompt, response, content='calls', content_rowid='id');
CREATE TABLE IF NOT EXISTS fts_state (id INTEGER PRIMARY KEY CHECK (id = 0), last_indexed INTEGER NOT NULL);
INSERT OR IGNORE INTO fts_state VALUES (0, 0);
"""


def default_store_path() -> Path:
    """``$OPENAUTOGLM_HOME/store.db``, else ``./.openautoglm/store.db``."""
    home = os.environ.get("OPENAUTOGLM_HOME")
    base = Path(home).expanduser() if home else Path.cwd() / ".openautoglm"
    return base / "store.db"


def _dumps(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return dumps(value)


class Store:
    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else default_store_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        self._use_wal(deadline=time.monotonic() + 30)
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._set_aside_text_keyed_cache()
        self._conn.executescript(SCHEMA)
        self._migrate()
        self._filter: KeyFilter | None = None  # built on the first one-key lookup
        self._filter_last_id = 0
        self._filter_refreshed = 0.0
        try:
            self._conn.executescript(FTS_SCHEMA)
            self.has_fts = True
        except sqlite3.OperationalError:  # SQLite built without FTS5
            self.has_fts = False

    def _use_wal(self, deadline: float) -> None:
        """Switch to WAL mode.  Two processes creating the same store at once can get "database
        is locked" here at once: SQLite refuses the second switch without waiting (it would
        deadlock), so it is retried until ``deadline``."""
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _has_table(self, name: str) -> bool:
        return self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                  (name,)).fetchone() is not None

    def _text_keyed_cache(self) -> bool:
        """Whether ``cache`` still has the layout before 2026-12-07 (keyed by its text key)."""
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(cache)")}
        return bool(columns) and "h" not in columns

    def _set_aside_text_keyed_cache(self) -> None:
        """Rename an old-layout ``cache`` to ``cache_v1``, to be copied over by :meth:`_migrate`
        (checked again under the write lock: another process may be doing it too)."""
        if self._text_keyed_cache():
            with self._transaction():
                if self._text_keyed_cache():
                    self._conn.execute("ALTER TABLE cache RENAME TO cache_v1")

    def _migrate(self) -> None:
        """Bring a store written by an older version up to this schema."""
        if self._has_table("cache_v1"):
            with self._transaction():
                if self._has_table("cache_v1"):  # not copied by another process meanwhile
                    rows = self._conn.execute("SELECT key, kind, payload, created FROM cache_v1").fetchall()
                    self._conn.executemany("INSERT INTO cache (h, key, kind, payload, created) VALUES (?,?,?,?,?)",
                                           [(key_hash(k), k, kind, p, c) for k, kind, p, c in rows])
                    self._conn.execute("DROP TABLE cache_v1")
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(records)")}
        if "input_hash" not in columns:  # added with content-checked resume
            self._conn.execute("ALTER TABLE records ADD COLUMN input_hash TEXT")
        # no query orders or filters calls by ts (listings go by id), and the index cost every
        # logged call a third b-tree insert
        self._conn.execute("DROP INDEX IF EXISTS calls_ts")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------
    def _insert_calls(self, calls: Iterable[CallRecord], run_id: str | None) -> None:
        rows = [
            (
                c.ts, run_id, c.step, c.record_key, c.attempt, c.kind, c.backend, c.model,
                _dumps(c.params), _dumps(c.prompt), _dumps(c.response), c.prompt_tokens,
                c.completion_tokens, c.latency_s * 1000.0, c.error, int(c.cached),
            )
            for c in calls
        ]
        if rows:
            self._conn.executemany(
                "INSERT INTO calls (ts, run_id, step, record_key, attempt, kind, backend, model, params,"
                " prompt, response, prompt_tokens, completion_tokens, latency_ms, error, cached)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )

    def _insert_cache(self, entries: dict[str, tuple[str, dict[str, Any]]]) -> list[int] | None:
        """Append ``entries`` (inside a write transaction).  Returns their key hashes for
        :meth:`_filter_add` when they took the next ids, None when the filter must be refreshed.

        Appended: a key written twice (two processes missing at once) has two equal rows, and
        a lookup takes the newest.  When nobody wrote since the filter's last refresh, the new
        rows take the next ids (``INTEGER PRIMARY KEY`` is max + 1 under the write lock), so
        their hashes can go straight into the filter instead of being read back.
        """
        if not entries:
            return []
        now = time.time()
        rows = [(key_hash(k), k, kind, dumps(p), now) for k, (kind, p) in entries.items()]
        in_step = self._filter is not None and \
            self._conn.execute("SELECT max(id) FROM cache").fetchone()[0] == self._filter_last_id
        self._conn.executemany("INSERT INTO cache (h, key, kind, payload, created) VALUES (?,?,?,?,?)", rows)
        return [row[0] for row in rows] if in_step else None

    def _filter_add(self, added: list[int] | None) -> None:
        """After a commit: the written entries' hashes into the key filter (None: read back)."""
        filt = self._filter
        if filt is None:
            return
        if added is None:
            self._refresh_filter()
            return
        for h in added:
            filt.add(h)
        self._filter_last_id += len(added)
        if filt.full:
            self._refresh_filter()  # rebuilds it bigger

    def log(
        self,
        calls: Sequence[CallRecord],
        cache: dict[str, tuple[str, dict[str, Any]]] | None = None,
        run_id: str | None = None,
    ) -> None:
        """Write call records and cache entries in one transaction."""
        with self._transaction():
            self._insert_calls(calls, run_id)
            added = self._insert_cache(cache or {})
        self._filter_add(added)

    def commit_chunk(
        self,
        run_id: str,
        records: Sequence[tuple[Any, ...]],
        calls: Sequence[CallRecord],
        cache: dict[str, tuple[str, dict[str, Any]]],
    ) -> None:
        """Checkpoint: records ``(idx, key, status, output, error[, input_hash])`` + their calls, atomically."""
        now = time.time()
        rows = [(run_id, i, k, s, _dumps(o), e, now, h) for i, k, s, o, e, h in ((*r, None)[:6] for r in records)]
        with self._transaction():
            self._insert_calls(calls, run_id)
            added = self._insert_cache(cache)
            # the run's counters move by this chunk's change (a COUNT over the run's records per
            # chunk made a long run quadratic: 2,900 -> 1,160 records/s over a million records)
            before = self._statuses(run_id, [r[1] for r in rows])
            self._conn.executemany(
                "INSERT OR REPLACE INTO records (run_id, idx, record_key, status, output, error, ts, input_hash)"
                " VALUES (?,?,?,?,?,?,?,?)",
                rows,
            )
            after = {r[1]: r[3] for r in rows}
            done = sum(s == "done" for s in after.values()) - sum(s == "done" for s in before.values())
            failed = sum(s == "error" for s in after.values()) - sum(s == "error" for s in before.values())
            self._conn.execute("UPDATE runs SET done = done + ?, failed = failed + ?, updated = ? WHERE run_id = ?",
                               (done, failed, now, run_id))
        self._filter_add(added)

    def _statuses(self, run_id: str, indices: Sequence[int]) -> dict[int, str]:
        """The stored status of those of ``indices`` the run already has (a retried record's old one)."""
        found: dict[int, str] = {}
        unique = list(dict.fromkeys(indices))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self._conn.execute(
                f"SELECT idx, status FROM records WHERE run_id = ? AND idx IN ({marks})", (run_id, *chunk)))
        return found

    class _Tx:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def __enter__(self) -> None:
            self.conn.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type: object, *rest: object) -> None:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")

    def _transaction(self) -> "Store._Tx":
        return Store._Tx(self._conn)

    # -- cache -----------------------------------------------------------------
    def cache_get(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The cached payloads of those of ``keys`` that are in the cache."""
        if len(keys) == 1:  # the single-record path: mostly misses, answered from the filter
            key = keys[0]
            h = key_hash(key)
            if not self._maybe_cached(h):
                return {}
            for k, payload in self._conn.execute(
                    "SELECT key, payload FROM cache WHERE h = ? ORDER BY id DESC", (h,)):
                if k == key:
                    return {key: json.loads(payload)}
            return {}
        found: dict[str, dict[str, Any]] = {}
        wanted = set(keys)
        for start in range(0, len(keys), 500):
            chunk = [key_hash(k) for k in keys[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            for key, payload in self._conn.execute(
                f"SELECT key, payload FROM cache WHERE h IN ({marks}) ORDER BY id", chunk
            ):
                if key in wanted:
                    found[key] = json.loads(payload)
        return found

    #: how stale the filter may be before a lookup reads the entries other processes added
    FILTER_REFRESH_S = 1.0

    def _maybe_cached(self, h: int) -> bool:
        if self._filter is None or time.monotonic() - self._filter_refreshed > self.FILTER_REFRESH_S:
            self._refresh_filter()
        assert self._filter is not None
        return self._filter.might_contain(h)

    def _refresh_filter(self) -> None:
        """Add the cache rows written since the last refresh (by anyone) to the key filter."""
        rows = self._conn.execute("SELECT id, h FROM cache WHERE id > ? ORDER BY id", (self._filter_last_id,)).fetchall()
        if self._filter is None:
            self._filter = KeyFilter(len(rows))
        for _, h in rows:
            self._filter.add(h)
        if rows:
            self._filter_last_id = rows[-1][0]
        if self._filter.full:
            self._filter.rebuild([h for (h,) in self._conn.execute("SELECT h FROM cache")])
        self._filter_refreshed = time.monotonic()

    # -- runs ------------------------------------------------------------------
    def start_run(self, run_id: str, *, name: str, config_hash: str, input: str | None, output: str | None,
                  total: int | None, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create the run, or reopen it (status 'running') if it exists.  Returns the row."""
        now = time.time()
        with self._transaction():
            row = self._conn.execute("SELECT run_id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                self._conn.execute(
                    "INSERT INTO runs (run_id, name, config_hash, input, output, status, total, created, updated, meta)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (run_id, name, config_hash, input, output, "running", total, now, now, _dumps(meta)),
                )
            else:
                # reopened: recount once (commits then move the counters by each chunk's change)
                self._conn.execute(
                    "UPDATE runs SET status = 'running', updated = ?, total = COALESCE(?, total),"
                    " done = (SELECT COUNT(*) FROM records WHERE run_id = ? AND status = 'done'),"
                    " failed = (SELECT COUNT(*) FROM records WHERE run_id = ? AND status = 'error')"
                    " WHERE run_id = ?",
                    (now, total, run_id, run_id, run_id),
                )
        return self.get_run(run_id) or {}

    def finish_run(self, run_id: str, status: str) -> None:
        self._conn.execute("UPDATE runs SET status = ?, updated = ? WHERE run_id = ?", (status, time.time(), run_id))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        cur = self._conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row)) if row else None

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        cur = self._conn.execute("SELECT * FROM runs ORDER BY updated DESC LIMIT ?", (limit,))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def done_indices(self, run_id: str) -> set[int]:
        return {
            r[0] for r in self._conn.execute("SELECT idx FROM records WHERE run_id = ? AND status = 'done'", (run_id,))
        }

    def iter_records(self, run_id: str, status: str | None = None) -> Iterator[dict[str, Any]]:
        sql = "SELECT idx, record_key, status, output, error, input_hash FROM records WHERE run_id = ?"
        args: list[Any] = [run_id]
        if status:
            sql += " AND status = ?"
            args.append(status)
        for idx, key, st, output, error, input_hash in self._conn.execute(sql + " ORDER BY idx", args):
            yield {"idx": idx, "record_key": key, "status": st,
                   "output": json.loads(output) if output else None, "error": error, "input_hash": input_hash}

    # -- reading calls -------------------------------------------------------------
    def _sync_fts(self) -> None:
        with self._transaction():
            (last,) = self._conn.execute("SELECT last_indexed FROM fts_state").fetchone()
            (top,) = self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM calls").fetchone()
            if top > last:
                self._conn.execute(
                    "INSERT INTO calls_fts(rowid, prompt, response) SELECT id, prompt, response FROM calls"
                    " WHERE id > ? AND id <= ?", (last, top))
                self._conn.execute("UPDATE fts_state SET last_indexed = ?", (top,))

    def recent_calls(self, limit: int = 20, search: str | None = None, run_id: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        if search:
            if self.has_fts:
                self._sync_fts()
                where.append("c.id IN (SELECT rowid FROM calls_fts WHERE calls_fts MATCH ?)")
                args.append(_fts_query(search))
            else:
                where.append("(c.prompt LIKE ? OR c.response LIKE ?)")
                args += [f"%{search}%", f"%{search}%"]
        if run_id:
            where.append("c.run_id = ?")
            args.append(run_id)
        sql = "SELECT c.* FROM calls c" + (" WHERE " + " AND ".join(where) if where else "")
        cur = self._conn.execute(sql + " ORDER BY c.id DESC LIMIT ?", (*args, limit))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run one SQL statement and return its rows as dicts (for tables that extensions add)."""
        cur = self._conn.execute(sql, tuple(args))
        cols = [d[0] for d in cur.description] if cur.description else []
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def add_schema(self, script: str) -> None:
        """Create an extension's tables (``CREATE TABLE IF NOT EXISTS ...`` statements)."""
        self._conn.executescript(script)

    def call_counts(self, run_id: str) -> dict[str, int]:
        """Number of (uncached) model calls per record key in a run."""
        return dict(
            self._conn.execute(
                "SELECT record_key, COUNT(*) FROM calls WHERE run_id = ? AND cached = 0 GROUP BY record_key",
                (run_id,),
            ).fetchall()
        )


def _fts_query(text: str) -> str:
    """Quote each term so user text cannot inject FTS syntax."""
    terms = [t.replace('"', '""') for t in text.split() if t]
    return " ".join(f'"{t}"' for t in terms) or '""'
