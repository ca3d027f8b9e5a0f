"""Response-cache cost per call as the cache grows: the store's layout against the text-keyed one.

Each call of a fresh run is a cache miss: one lookup, then (at the next flush) one insert.
The store appends entries in id order, finds them through an index on the key's first
64 bits, and answers misses from an in-memory Bloom filter; the peer is the layout it
replaced (``key TEXT PRIMARY KEY``, ``INSERT OR REPLACE``, a point SELECT per miss), run
in the same process on the same disk, alternately.

    .venv/bin/python bench/cache_store.py                 # 10k, 100k, 300k entries
    .venv/bin/python bench/cache_store.py --sizes 10000   # one size
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    import openautoglm  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from openautoglm.store.sqlite import Store

PAYLOAD = {"logprobs": [-0.1, -2.3], "lengths": [1, 1], "prompt_tokens": 21, "exact": True}
FLUSH_EVERY = 256  # what a pipeline buffers between writes


def keys(start: int, n: int) -> list[str]:
    return [hashlib.sha256(f"request {i}".encode()).hexdigest() for i in range(start, start + n)]


class TextKeyed:
    """The cache layout before 2026-12-07, on the same pragmas as the store."""

    def __init__(self, path: Path) -> None:
        import json

        self._json = json
        self.conn = sqlite3.connect(str(path), isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("CREATE TABLE cache (key TEXT PRIMARY KEY, kind TEXT NOT NULL, payload TEXT NOT NULL,"
                          " created REAL NOT NULL)")

    def cache_get(self, ks: list[str]) -> dict[str, Any]:
        row = self.conn.execute("SELECT payload FROM cache WHERE key = ?", (ks[0],)).fetchone()
        return {ks[0]: self._json.loads(row[0])} if row else {}

    def log(self, _calls: list[Any], entries: dict[str, tuple[str, dict[str, Any]]]) -> None:
        now = time.time()
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany("INSERT OR REPLACE INTO cache (key, kind, payload, created) VALUES (?,?,?,?)",
                              [(k, kind, self._json.dumps(p), now) for k, (kind, p) in entries.items()])
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def fill(cache: Any, n: int) -> None:
    for start in range(0, n, 10_000):
        cache.log([], {k: ("score", PAYLOAD) for k in keys(start, min(10_000, n - start))})


def time_misses(cache: Any, start: int, n: int) -> tuple[float, float]:
    """µs per call spent looking up and (in batches of FLUSH_EVERY) inserting ``n`` new keys."""
    lookup = insert = 0.0
    pending: dict[str, tuple[str, dict[str, Any]]] = {}
    for key in keys(start, n):
        t0 = time.perf_counter()
        assert not cache.cache_get([key])
        lookup += time.perf_counter() - t0
        pending[key] = ("score", PAYLOAD)
        if len(pending) >= FLUSH_EVERY:
            t0 = time.perf_counter()
            cache.log([], pending)
            insert += time.perf_counter() - t0
            pending = {}
    return lookup / n * 1e6, insert / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000])
    ap.add_argument("--calls", type=int, default=5120, help="misses timed per size and layout")
    ap.add_argument("--store-dir", help="where the databases go (default $TMPDIR)")
    args = ap.parse_args()
    print(f"cache misses per call (lookup + insert at a flush of {FLUSH_EVERY}); {args.calls} calls per cell")
    print(f"{'entries':>8}  {'layout':<22} {'lookup µs':>9} {'insert µs':>9} {'total µs':>9} {'ratio':>6}")
    with tempfile.TemporaryDirectory(dir=args.store_dir) as tmp:
        for size in args.sizes:
            stores = {"store (id order+filter)": Store(Path(tmp) / f"new{size}.db"),
                      "text-keyed (before)": TextKeyed(Path(tmp) / f"old{size}.db")}
            for cache in stores.values():
                fill(cache, size)
            cells: dict[str, list[tuple[float, float]]] = {name: [] for name in stores}
            for rep in range(3):  # alternate the layouts, so load drift hits both
                for name, cache in stores.items():
                    cells[name].append(time_misses(cache, size + 1_000_000 * (rep + 1), args.calls))
            totals = {name: sorted(sum(c) for c in runs)[1] for name, runs in cells.items()}
            base = totals["text-keyed (before)"]
            for name, runs in cells.items():
                lookup = sorted(r[0] for r in runs)[1]
                insert = sorted(r[1] for r in runs)[1]
                print(f"{size:>8}  {name:<22} {lookup:>9.2f} {insert:>9.2f} {totals[name]:>9.2f} "
                      f"{totals[name] / base:>6.2f}")
            for cache in stores.values():
                cache.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
