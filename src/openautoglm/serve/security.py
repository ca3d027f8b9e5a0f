"""API keys (hashed at rest), per-key rate limits and a request-size limit.

Keys live in the project's SQLite store, table ``api_keys``: only the SHA-256 of a key
is kept (keys are 32 random bytes, so a fast hash is enough), with a short prefix to
recognise it in listings.  The plain key is shown once, when it is created.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException

from ..errors import OpenAutoGLMError

KEY_PREFIX = "oag-"

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    rate_per_min REAL,
    created REAL NOT NULL,
    revoked REAL
);
"""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only accepts connections from this machine."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    prefix: str
    rate_per_min: float | None
    created: float
    revoked: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "prefix": self.prefix, "rate_per_min": self.rate_per_min,
                "created": self.created, "revoked": self.revoked}


class KeyStore:
    """API keys in a SQLite file (the project store by default)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def add(self, name: str, rate_per_min: float | None = None) -> tuple[str, KeyInfo]:
        """Create a key; returns ``(plain key, info)`` - the plain key is not stored."""
        name = name.strip()
        if not name:
            raise OpenAutoGLMError("an API key needs a name", hint="e.g. `openautoglm serve keys add ci-bot`")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        info = KeyInfo(id=secrets.token_hex(4), name=name, prefix=key[:10], rate_per_min=rate_per_min,
                       created=time.time())
        with self._lock:
            self._conn.execute(
                "INSERT INTO api_keys (id, name, hash, prefix, rate_per_min, created) VALUES (?,?,?,?,?,?)",
                (info.id, info.name, hash_key(key), info.prefix, rate_per_min, info.created),
            )
        return key, info

    def list(self, include_revoked: bool = True) -> list[KeyInfo]:
        sql = "SELECT id, name, prefix, rate_per_min, created, revoked FROM api_keys"
        if not include_revoked:
            sql += " WHERE revoked IS NULL"
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY created").fetchall()
        return [KeyInfo(*row) for row in rows]

    def revoke(self, id_or_name: str) -> int:
        """Revoke keys by id or name; returns how many were revoked."""
        with self._lock:
            cur = self._conn.execute(
                "UPDATE api_keys SET revoked = ? WHERE revoked IS NULL AND (id = ? OR name = ?)",
                (time.time(), id_or_name, id_or_name),
            )
        return cur.rowcount

    def active_count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM api_keys WHERE revoked IS NULL").fetchone()[0]

    def verify(self, key: str) -> KeyInfo | None:
        digest = hash_key(key)
        with self._lock:
            row = self._conn.execute(
                "SELECT id, name, prefix, rate_per_min, created, revoked, hash FROM api_keys WHERE hash = ?",
                (digest,),
            ).fetchone()
        if row is None or row[5] is not None or not hmac.compare_digest(row[6], digest):
            return None
        return KeyInfo(*row[:6])


class Authenticator:
    """Checks a presented key against static keys (given at start-up) and the key store."""

    def __init__(self, required: bool, static_keys: list[str] | None = None, store: KeyStore | None = None,
                 default_rate_per_min: float | None = None) -> None:
        self.required = required
        self.store = store
        self.default_rate = default_rate_per_min
        self._static = {hash_key(k): KeyInfo(id=f"static{i}", name="--api-key", prefix=k[:6], rate_per_min=None,
                                             created=0.0) for i, k in enumerate(static_keys or []) if k}

    def check(self, key: str | None) -> KeyInfo | None:
        if not key:
            return None
        found = self._static.get(hash_key(key))
        if found is not None:
            return found
        return self.store.verify(key) if self.store is not None else None

    def rate_for(self, info: KeyInfo | None) -> float | None:
        if info is not None and info.rate_per_min is not None:
            return info.rate_per_min
        return self.default_rate


class RateLimiter:
    """Token buckets per client: ``rate_per_min`` requests a minute, bursts up to ``burst``."""

    def __init__(self, burst: int | None = None) -> None:
        self.burst = burst
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # id -> (tokens, last time)

    def allow(self, client: str, rate_per_min: float) -> tuple[bool, float]:
        """Take one token; returns (allowed, seconds until the next token)."""
        capacity = float(self.burst or max(1.0, rate_per_min / 6))  # ten seconds' worth by default
        per_s = rate_per_min / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * per_s)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return True, 0.0
            self._buckets[client] = (tokens, now)
            return False, (1.0 - tokens) / per_s if per_s > 0 else 60.0


def _too_large_message(max_bytes: int) -> str:
    return f"request body larger than {max_bytes} bytes"


class BodyTooLarge(HTTPException):
    """Raised while a body streams in past the limit.  An HTTP exception, so that FastAPI's
    body parsing passes it on (it turns other exceptions into "error parsing the body", 400)
    and the app answers 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, _too_large_message(max_bytes))


class BodySizeLimit:
    """ASGI middleware: requests whose body exceeds ``max_bytes`` get 413, whether they declare
    their length or not (a chunked body is counted as it streams)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Any) -> None:
        import json

        body = json.dumps({"error": {"message": _too_large_message(self.max_bytes),
                                     "type": "invalid_request_error", "param": None,
                                     "code": "request_too_large"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
