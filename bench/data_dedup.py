"""Near-dedup benchmark: openautoglm.data near-duplicate search vs a plain datasketch pipeline.

Corpus: the AG News train subset (10,001 articles) plus perturbed copies of 20 % of them
(seeded edits: word drops, word swaps, typos, case and punctuation changes, a few added
words), and the same for ChnSentiCorp train reviews (Chinese; character shingles).  Both
systems use the same shingles (word 3-grams for English, character 3-grams for Chinese),
128 permutations and the same Jaccard threshold.

* peer ("plain datasketch"): ``MinHash.update`` per shingle, ``MinHashLSH(threshold)``
  insert, then ``query`` for every document; a pair is reported when LSH returns it.
* peer, tuned: the same with ``MinHash.update_batch`` (numpy per document);
* ours: ``near_duplicate_pairs`` – batch numpy signatures, recall-weighted bands, every
  candidate verified by its exact Jaccard.

Pair recall: share of injected (original, copy) pairs reported.  Precision: share of reported
pairs whose true Jaccard reaches the threshold.  docs/s: end to end, shingling included.

    python bench/data_dedup.py            # AG News 10,001 + ChnSentiCorp 4,000 (~3-5 min on 2 busy cores)
    python bench/data_dedup.py --quick    # 2,000 + 1,000
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))

from openautoglm.data.dedup import jaccard, near_duplicate_pairs, shingles  # noqa: E402

THRESHOLD = 0.7
NUM_PERM = 128


def perturb_words(text: str, rng: random.Random) -> str:
    words = text.split()
    for _ in range(max(1, len(words) // 25)):
        op = rng.choice(["drop", "swap", "typo", "add", "case", "punct"])
        i = rng.randrange(len(words))
        if op == "drop" and len(words) > 5:
            words.pop(i)
        elif op == "swap" and i + 1 < len(words):
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op == "typo" and len(words[i]) > 3:
            j = rng.randrange(len(words[i]) - 1)
            words[i] = words[i][:j] + words[i][j + 1] + words[i][j] + words[i][j + 2:]
        elif op == "add":
            words.insert(i, rng.choice(["really", "also", "reportedly", "said"]))
        elif op == "case":
            words[i] = words[i].upper()
        else:
            words[i] = words[i] + rng.choice([",", ".", "!"])
    return " ".join(words)


def perturb_chars(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(max(1, len(chars) // 40)):
        i = rng.randrange(len(chars))
        op = rng.choice(["drop", "add", "punct"])
        if op == "drop" and len(chars) > 10:
            chars.pop(i)
        elif op == "add":
            chars.insert(i, rng.choice("的了很也"))
        else:
            chars.insert(i, rng.choice("，。！"))
    return "".join(chars)


def corpus(name: str, n: int, seed: int = 0) -> tuple[list[str], list[tuple[int, int]], str]:
    rng = random.Random(seed)
    if name == "ag_news":
        lines = (DATA / "ag_news" / "train_subset_alps.tsv").read_text(encoding="utf-8").splitlines()
        base = [ln.split("\t")[0] for ln in lines if ln.strip()][:n]
        make, unit = perturb_words, "word"
    else:
        lines = (DATA / "chnsenticorp" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
        base = [ln.split("\t", 1)[1] for ln in lines if "\t" in ln and len(ln) > 40][:n]
        make, unit = perturb_chars, "char"
    pairs = []
    texts = list(base)
    for i in rng.sample(range(len(base)), len(base) // 5):
        pairs.append((i, len(texts)))
        texts.append(make(base[i], rng))
    return texts, pairs, unit


def plain_datasketch(texts: list[str], unit: str, batch: bool = False) -> set[tuple[int, int]]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    hashes = []
    for i, text in enumerate(texts):
        m = MinHash(num_perm=NUM_PERM)
        if batch:
            m.update_batch([sh.encode("utf-8") for sh in shingles(text, 3, unit)])
        else:
            for sh in shingles(text, 3, unit):
                m.update(sh.encode("utf-8"))
        lsh.insert(i, m)
        hashes.append(m)
    found = set()
    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j != i:
                found.add((min(i, j), max(i, j)))
    return found


def ours(texts: list[str], unit: str) -> set[tuple[int, int]]:
    return {(h.of, h.index) for h in near_duplicate_pairs(texts, THRESHOLD, num_perm=NUM_PERM, unit=unit)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    sizes = {"ag_news": 2000, "chnsenticorp": 1000} if args.quick else {"ag_news": 10001, "chnsenticorp": 4000}
    header = f"{'corpus':<13} {'docs':>6} {'system':<20} {'docs/s':>8} {'pairs':>6} {'recall':>7} {'precision':>9} {'recall@J>=t':>11}"
    print(f"threshold {THRESHOLD}, {NUM_PERM} permutations, 3-gram shingles")
    print(header)
    print("-" * len(header))
    for name, n in sizes.items():
        texts, injected, unit = corpus(name, n)
        sets = [shingles(t, 3, unit) for t in texts]
        above = {p for p in injected if jaccard(sets[p[0]], sets[p[1]]) >= THRESHOLD}
        systems = (("plain datasketch", plain_datasketch),
                   ("datasketch batch", lambda t, u: plain_datasketch(t, u, batch=True)), ("openautoglm", ours))
        for label, fn in systems:
            t0 = time.perf_counter()
            found = fn(texts, unit)
            sec = time.perf_counter() - t0
            recall = len(found & set(injected)) / len(injected)
            recall_above = len(found & above) / max(1, len(above))
            precision = sum(jaccard(sets[i], sets[j]) >= THRESHOLD for i, j in found) / max(1, len(found))
            print(f"{name:<13} {len(texts):>6} {label:<20} {len(texts) / sec:>8.0f} {len(found):>6} "
                  f"{recall:>7.3f} {precision:>9.3f} {recall_above:>11.3f}")
        print(f"{'':<13} injected pairs: {len(injected)}, of which {len(above)} have true Jaccard >= {THRESHOLD}")


if __name__ == "__main__":
    main()
