"""The data toolkit on Ray (``--engine ray``): per-row steps on workers, whole-dataset steps
once, globally, on the driver.

How each step combines shards (a *chunk* is ``batch`` consecutive rows sent to one worker):

* ``clean``: repairs, Unicode normalisation, whitespace, dropping empty rows, the language
  filter and PII redaction are functions of one row and run on the workers.  Each worker
  also shingles and MinHash-signs the texts it keeps (the costly part of near dedup).  The
  driver then takes the rows in input order and does the two global steps over all of
  them: exact dedup (SHA-1 of the casefolded text, first occurrence kept) and near dedup,
  an LSH join of the workers' signatures in one index (each candidate verified by the exact
  Jaccard of the shingle sets).  So a duplicate pair in two different chunks (or machines)
  is found, and the output and audit are those of the in-process engine.  With
  ``shingle_unit="auto"`` the first chunk is signed on the driver, which settles the unit
  exactly as in-process (char shingles for CJK-heavy text); later chunks are signed on the
  workers with that unit.  The driver holds what in-process holds: one key per distinct
  row and the shingle sets of the kept rows (not the rows).
* ``profile``: every per-row measure (length, emptiness, encoding flags, mixed scripts,
  language, PII counts) is computed on the workers and summed on the driver; exact and near
  duplicates are counted by the same global pass as in ``clean``.

The data never touches a store; workers only return results to the driver.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from .dedup import sign

if TYPE_CHECKING:
    from .clean import CleanConfig, Cleaner
    from .dedup import NearDuplicateIndex

Row = tuple[int, Mapping[str, Any], str]


class CleanWorker:
    """On a Ray worker: the per-row steps of :class:`~.clean.Cleaner`, then signing."""

    def __init__(self, config: "CleanConfig") -> None:
        from .clean import Cleaner

        self.config = config
        self.cleaner = Cleaner(dataclasses.replace(config, dedup=False, near_dedup=False))

    def __call__(self, chunk: tuple[list[int], list[str], str | None]) -> tuple[list[Any], list[Any] | None]:
        rows, texts, unit = chunk
        outs = []
        for row, text in zip(rows, texts):
            entries: list[dict[str, Any]] = []
            outs.append((self.cleaner.prepare(row, text, entries), entries))
        signed = None
        if unit is not None:
            cfg = self.config
            signed = sign([t for t, _ in outs if t is not None], unit, cfg.shingle_size, num_perm=cfg.num_perm)
        return outs, signed


def _chunks(rows: Iterable[Row], batch: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for item in rows:
        chunk.append(item)
        if len(chunk) >= batch:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _payload(chunk: list[Row], unit: str | None) -> tuple[list[int], list[str], str | None]:
    return [r for r, _, _ in chunk], [t for _, _, t in chunk], unit


def clean_on_ray(cleaner: "Cleaner", rows: Iterable[Row], signatures: dict[int, Any], *, batch: int,
                 address: str | None = None, workers: int | None = None, worker_cpus: float | None = None
                 ) -> Iterator[tuple[int, Mapping[str, Any], str | None, list[dict[str, Any]]]]:
    """``(row, record, text or None, audit entries)`` of each row after the per-row steps, in
    input order; the workers' signatures of kept texts land in ``signatures[row]`` for the
    caller's global near-dedup pass (:meth:`~.clean.Cleaner.near_duplicates`)."""
    from ..core.engines.ray_map import chunk_pool

    index = cleaner.index

    def emit(chunk: list[Row], result: tuple[list[Any], list[Any] | None]) -> Iterator[Any]:
        outs, signed = result
        kept = iter(signed or ())
        for (row, record, _), (text, entries) in zip(chunk, outs):
            if text is not None and signed is not None:
                signatures[row] = next(kept)
            yield row, record, text, entries

    chunks = _chunks(rows, batch)
    with chunk_pool(CleanWorker, (cleaner.config,), address=address, workers=workers,
                    worker_cpus=worker_cpus) as pool:
        if index is not None and index.unit == "auto":
            first = next(chunks, None)
            if first is None:
                return
            (result,) = pool.map([_payload(first, None)])
            yield from emit(first, result)  # the caller's first near-dedup pass settles the unit
            if index.unit == "auto":  # it has not run yet (only if batch exceeds its batch)
                index.unit_for([t for t, _ in result[0] if t is not None])
        unit = index.unit if index is not None else None
        sent: deque[list[Row]] = deque()

        def payloads() -> Iterator[tuple[list[int], list[str], str | None]]:
            for chunk in chunks:
                sent.append(chunk)
                yield _payload(chunk, unit)

        for result in pool.map(payloads()):
            yield from emit(sent.popleft(), result)


class ProfileWorker:
    """On a Ray worker: :func:`~.profile.row_facts` of each text, then signing."""

    def __init__(self, pii: bool, languages: bool, lang_engine: str, shingle_size: int, num_perm: int) -> None:
        from .pii import PIIDetector

        self.detector = PIIDetector() if pii else None
        self.lang = None
        if languages:
            from .langid import LanguageDetector

            self.lang = LanguageDetector(lang_engine)
        self.shingle_size, self.num_perm = shingle_size, num_perm

    def __call__(self, chunk: tuple[list[str], str | None]) -> tuple[list[dict[str, Any]], list[Any] | None]:
        from .profile import row_facts

        texts, unit = chunk
        facts = [row_facts(t, self.detector, self.lang) for t in texts]
        signed = None
        if unit is not None:
            signed = sign([t for t, f in zip(texts, facts) if not f.get("empty")], unit, self.shingle_size,
                          num_perm=self.num_perm)
        return facts, signed


def profile_on_ray(rows: Iterable[Row], index: "NearDuplicateIndex | None", *, batch: int, pii: bool,
                   languages: bool, lang_engine: str, address: str | None = None, workers: int | None = None,
                   worker_cpus: float | None = None) -> Iterator[tuple[int, Mapping[str, Any], str, dict[str, Any],
                                                                        Any]]:
    """``(row, record, text, facts, signed or None)`` of each row, in input order (the caller
    counts, and joins the signatures of non-duplicate rows in ``index``)."""
    from ..core.engines.ray_map import chunk_pool

    def emit(chunk: list[Row], result: tuple[list[dict[str, Any]], list[Any] | None]) -> Iterator[Any]:
        facts, signed = result
        kept = iter(signed or ())
        for (row, record, text), f in zip(chunk, facts):
            yield row, record, text, f, (next(kept) if signed is not None and not f.get("empty") else None)

    chunks = _chunks(rows, batch)
    args = (pii, languages, lang_engine, index.shingle_size if index else 3, index.hasher.num_perm if index else 128)
    with chunk_pool(ProfileWorker, args, address=address, workers=workers, worker_cpus=worker_cpus) as pool:
        if index is not None and index.unit == "auto":
            first = next(chunks, None)
            if first is None:
                return
            (result,) = pool.map([([t for _, _, t in first], None)])
            yield from emit(first, result)
            if index.unit == "auto":  # as in-process: settled by the first 200 distinct non-empty texts
                seen: dict[str, str] = {}
                for (_, _, text), f in zip(first, result[0]):
                    if not f.get("empty"):
                        seen.setdefault(f["key"], text)
                index.unit_for(list(seen.values())[:200])
        unit = index.unit if index is not None else None
        sent: deque[list[Row]] = deque()

        def payloads() -> Iterator[tuple[list[str], str | None]]:
            for chunk in chunks:
                sent.append(chunk)
                yield [t for _, _, t in chunk], unit

        for result in pool.map(payloads()):
            yield from emit(sent.popleft(), result)
