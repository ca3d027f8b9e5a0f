"""Exact and near-duplicate detection (MinHash + LSH banding), streaming, any script.

* Exact duplicates: SHA-1 of the text after casefolding and whitespace collapsing
  (:func:`exact_key`).
* Near duplicates: shingles → MinHash signature → LSH bands → candidate pairs →
  verified by the true Jaccard similarity of the shingle sets (so the threshold means
  what it says; LSH only proposes candidates).
* Shingles: ``unit="word"`` (word n-grams), ``"char"`` (character n-grams, needed for
  Chinese/Japanese, which have no spaces) or ``"auto"`` (char for CJK-heavy text, word
  otherwise), ``size`` n.
* Signatures are computed with numpy for a whole batch of documents at once (the
  universal hash family of datasketch's MinHash: ``(a·h + b) mod (2^61−1)``); the band
  count follows datasketch's criterion for the optimal (b, r) (:func:`optimal_bands`).
* Clusters: connected components of the duplicate graph (scipy.sparse.csgraph).

:class:`NearDuplicateIndex` is incremental: ``add(texts)`` returns, for each text, the id of
an earlier document it duplicates (or ``None``), which is what streaming ``clean`` needs.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

from ..embeddings import cjk_share

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

_WS = re.compile(r"\s+")
_TOKEN = re.compile(r"\w+", re.UNICODE)
_MERSENNE = (1 << 61) - 1
_MAX_HASH = (1 << 32) - 1
#: weight of false positives when choosing LSH bands for verified search (false negatives: 1 - this)
FP_WEIGHT = 0.1


def exact_key(text: str) -> str:
    """Key for exact-duplicate detection: casefolded, whitespace-collapsed, SHA-1."""
    norm = _WS.sub(" ", str(text).casefold()).strip()
    return hashlib.sha1(norm.encode("utf-8")).hexdigest()


def shingles(text: str, size: int = 3, unit: str = "auto") -> set[str]:
    """The set of word or character n-grams of ``text`` (whole text if it is shorter than n)."""
    text = _WS.sub(" ", str(text).casefold()).strip()
    if unit == "auto":
        unit = "char" if cjk_share([text]) > 0.3 else "word"
    if unit == "word":
        tokens = _TOKEN.findall(text)
        if len(tokens) <= size:
            return {" ".join(tokens)} if tokens else set()
        return {" ".join(tokens[i:i + size]) for i in range(len(tokens) - size + 1)}
    if unit == "char":
        text = text.replace(" ", "")
        if len(text) <= size:
            return {text} if text else set()
        return {text[i:i + size] for i in range(len(text) - size + 1)}
    raise ValueError(f"unknown shingle unit {unit!r}; use 'word', 'char' or 'auto'")


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int, fp_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with ``bands * rows <= num_perm`` for an LSH index at Jaccard ``threshold``.

    The criterion of datasketch's ``MinHashLSH`` (Mining of Massive Datasets, ch. 3): a pair of
    similarity ``s`` becomes a candidate with probability ``P(s) = 1 - (1 - s**r)**b``; choose
    (b, r) minimising ``fp_weight * ∫_0^t P(s) ds + (1 - fp_weight) * ∫_t^1 (1 - P(s)) ds``.
    datasketch's default weight is 0.5; verified indexes use a low ``fp_weight``, since a false
    candidate only costs one exact Jaccard check while a missed pair is lost.  Unlike
    ``MinHashLSH`` this also answers for thresholds that want a single band (e.g. 1.0).
    """
    from scipy.integrate import quad

    def candidate(s: float, b: int, r: int) -> float:
        return 1.0 - (1.0 - s ** r) ** b

    def missed(s: float, b: int, r: int) -> float:
        return (1.0 - s ** r) ** b

    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = quad(candidate, 0.0, threshold, args=(b, r))[0]
            fn = quad(missed, threshold, 1.0, args=(b, r))[0]
            err = fp * fp_weight + fn * (1.0 - fp_weight)
            if err < best_err:
                best, best_err = (b, r), err
    return best


class MinHasher:
    """Batch MinHash signatures (``num_perm`` × uint32 per document), reproducible by ``seed``."""

    def __init__(self, num_perm: int = 128, seed: int = 1) -> None:
        import numpy as np

        rng = np.random.RandomState(seed)
        self.num_perm = num_perm
        self.a = rng.randint(1, _MERSENNE, size=num_perm, dtype=np.uint64)
        self.b = rng.randint(0, _MERSENNE, size=num_perm, dtype=np.uint64)

    def signatures(self, shingle_sets: Sequence[set[str]]) -> "np.ndarray":
        import numpy as np

        out = np.full((len(shingle_sets), self.num_perm), _MAX_HASH, dtype=np.uint64)
        for i, sh in enumerate(shingle_sets):
            if not sh:
                continue
            hv = np.fromiter((zlib.crc32(s.encode("utf-8")) for s in sh), dtype=np.uint64, count=len(sh))
            phv = ((hv[:, None] * self.a + self.b) % _MERSENNE) & _MAX_HASH
            out[i] = phv.min(axis=0)
        return out


@dataclass
class DuplicateHit:
    """``index`` duplicates the earlier document ``of`` with Jaccard ``similarity``."""

    index: int
    of: int
    similarity: float


class NearDuplicateIndex:
    """Incremental near-duplicate index over documents added in order.

    ``threshold``: Jaccard similarity of shingle sets at or above which two documents are
    near duplicates; ``num_perm``: MinHash permutations; ``shingle_size``/``unit``: see
    :func:`shingles`; ``verify``: check candidates by exact Jaccard (recommended).
    """

    def __init__(self, threshold: float = 0.8, *, num_perm: int = 128, shingle_size: int = 3,
                 unit: str = "auto", seed: int = 1, verify: bool = True) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        self.threshold = threshold
        self.shingle_size = shingle_size
        self.unit = unit
        self.verify = verify
        self.hasher = MinHasher(num_perm, seed)
        self.bands, self.rows = optimal_bands(threshold, num_perm, FP_WEIGHT if verify else 0.5)
        self._tables: list[dict[bytes, list[int]]] = [{} for _ in range(self.bands)]
        self._shingles: dict[int, set[str]] = {}
        self._sigs: dict[int, "np.ndarray"] = {}
        self._size = 0

    def __len__(self) -> int:
        """Documents seen so far (indexed or not); the next one gets this id."""
        return self._size

    def unit_for(self, texts: Sequence[str]) -> str:
        """The shingle unit; ``"auto"`` is settled by the first batch (char for CJK-heavy text)."""
        if self.unit == "auto":
            self.unit = "char" if cjk_share(texts[:200]) > 0.3 else "word"
        return self.unit

    def add(self, texts: Sequence[str], *, keep_duplicates: bool = False) -> list[DuplicateHit | None]:
        """Add a batch; for each text the earlier (kept) document it duplicates, else ``None``.

        Duplicates are not indexed unless ``keep_duplicates`` (so clusters keep their first
        member as the representative).
        """
        signed = sign(texts, self.unit_for(texts), self.shingle_size, self.hasher)
        return self.add_signed(signed, keep_duplicates=keep_duplicates)

    def add_all(self, texts: Sequence[str]) -> list[DuplicateHit]:
        """Index every text; return every (later, earlier) pair at or above the threshold."""
        hits: list[DuplicateHit] = []
        for doc, sh, sig, keys in self._documents(texts):
            hits += [DuplicateHit(doc, cand, sim) for cand, sim in self._matches(sh, sig, keys)]
            self._insert(doc, sh, sig, keys)
        return hits

    def add_signed(self, signed: Sequence[tuple[set[str], "np.ndarray"]], *,
                   keep_duplicates: bool = False) -> list[DuplicateHit | None]:
        """:meth:`add` for documents signed elsewhere (:func:`sign`, e.g. on Ray workers, with this
        index's ``unit``, ``shingle_size``, ``num_perm`` and ``seed``): the global LSH join."""
        hits: list[DuplicateHit | None] = []
        for doc, sh, sig, keys in self._numbered(signed):
            best: DuplicateHit | None = None
            for cand, sim in self._matches(sh, sig, keys):
                if best is None or sim > best.similarity:
                    best = DuplicateHit(doc, cand, sim)
            hits.append(best)
            if best is None or keep_duplicates:
                self._insert(doc, sh, sig, keys)
        return hits

    def _documents(self, texts: Sequence[str]) -> Iterator[tuple[int, set[str], "np.ndarray", list[bytes]]]:
        """(id, shingles, signature, band keys) of each text, numbering them from ``len(self)``."""
        unit = self.unit_for(texts)
        yield from self._numbered(sign(texts, unit, self.shingle_size, self.hasher))

    def _numbered(self, signed: Iterable[tuple[set[str], "np.ndarray"]]
                  ) -> Iterator[tuple[int, set[str], "np.ndarray", list[bytes]]]:
        for sh, sig in signed:
            doc = self._size
            self._size += 1
            yield doc, sh, sig, [sig[b * self.rows:(b + 1) * self.rows].tobytes() for b in range(self.bands)]

    def _matches(self, sh: set[str], sig: "np.ndarray", keys: list[bytes]) -> Iterator[tuple[int, float]]:
        """Indexed documents sharing a band with this one and at or above the threshold."""
        seen: set[int] = set()
        for table, key in zip(self._tables, keys):
            for cand in table.get(key, ()):
                if cand in seen:
                    continue
                seen.add(cand)
                sim = jaccard(sh, self._shingles[cand]) if self.verify else self._estimate(sig, cand)
                if sim >= self.threshold:
                    yield cand, sim

    def _insert(self, doc: int, sh: set[str], sig: "np.ndarray", keys: list[bytes]) -> None:
        for table, key in zip(self._tables, keys):
            table.setdefault(key, []).append(doc)
        self._shingles[doc] = sh
        if not self.verify:
            self._sigs[doc] = sig

    def _estimate(self, sig: "np.ndarray", cand: int) -> float:
        return float((self._sigs[cand] == sig).mean())


def sign(texts: Sequence[str], unit: str, shingle_size: int = 3, hasher: MinHasher | None = None,
         num_perm: int = 128, seed: int = 1) -> list[tuple[set[str], "np.ndarray"]]:
    """Each text's shingle set and MinHash signature (what :meth:`NearDuplicateIndex.add_signed`
    joins); ``unit`` must be settled (``word`` or ``char``), not ``auto``."""
    sets = [shingles(t, shingle_size, unit) for t in texts]
    return list(zip(sets, (hasher or MinHasher(num_perm, seed)).signatures(sets)))


def near_duplicate_pairs(texts: Sequence[str], threshold: float = 0.8, *, num_perm: int = 128,
                         shingle_size: int = 3, unit: str = "auto", batch_size: int = 2048) -> list[DuplicateHit]:
    """All (later, earlier) pairs at or above ``threshold`` (every document is indexed)."""
    index = NearDuplicateIndex(threshold, num_perm=num_perm, shingle_size=shingle_size, unit=unit)
    hits: list[DuplicateHit] = []
    for start in range(0, len(texts), batch_size):
        hits += index.add_all(texts[start:start + batch_size])
    return hits


def duplicate_clusters(n: int, hits: Iterable[DuplicateHit]) -> list[int]:
    """Cluster id (the smallest member index) of each of ``n`` documents: connected components of the hits."""
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.array([(h.index, h.of) for h in hits], dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    smallest = np.full(labels.max() + 1 if n else 0, n, dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(n))
    return smallest[labels].tolist()
