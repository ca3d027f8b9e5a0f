"""A Bloom filter over the response cache's key hashes, so a cache miss costs no SQLite read.

Most lookups of a fresh run are misses; asking SQLite costs a read transaction and a
b-tree search each (3-8 µs per call, more than everything else the cache does). The
filter answers "certainly absent" from memory; "maybe present" still goes to SQLite,
so a false positive costs one lookup and a stale filter (entries another process wrote
since the last refresh) costs one recomputation of a deterministic answer, never a
wrong one.

Keys are SHA-256 hex digests, so their first 64 bits are already uniformly random:
the two probe positions come straight from that number, with no hashing here.
"""

from __future__ import annotations

BITS_PER_KEY = 16  # two probes at 16 bits/key: ~1.4 % false positives


def key_hash(key: str) -> int:
    """The signed 64-bit number SQLite indexes a cache key by (its first 16 hex digits)."""
    return int(key[:16], 16) - (1 << 63)


class KeyFilter:
    """Set-membership with no false negatives for the hashes added (see the module docstring)."""

    def __init__(self, expected: int = 0) -> None:
        self.count = 0
        self._resize(expected)

    def _resize(self, expected: int) -> None:
        bits = 1 << max(16, (max(expected, 1) * BITS_PER_KEY - 1).bit_length())
        self._mask = bits - 1
        self._bits = bytearray(bits >> 3)

    @property
    def capacity(self) -> int:
        return (self._mask + 1) // BITS_PER_KEY

    def add(self, h: int) -> None:
        """Add one key hash (the caller rebuilds with :meth:`rebuild` once ``full``)."""
        bits, mask = self._bits, self._mask
        a, b = h & mask, (h >> 32) & mask
        bits[a >> 3] |= 1 << (a & 7)
        bits[b >> 3] |= 1 << (b & 7)
        self.count += 1

    def might_contain(self, h: int) -> bool:
        bits, mask = self._bits, self._mask
        a, b = h & mask, (h >> 32) & mask
        return bool(bits[a >> 3] & (1 << (a & 7))) and bool(bits[b >> 3] & (1 << (b & 7)))

    @property
    def full(self) -> bool:
        return self.count > self.capacity

    def rebuild(self, hashes: "list[int]") -> None:
        """Start over with room for twice ``hashes`` and add them."""
        self.count = 0
        self._resize(2 * len(hashes))
        for h in hashes:
            self.add(h)
