"""Issue 18: CoNLL-2003 entity extraction as a JSON-schema task on the embedded model, with and
without constrained decoding (and outlines as a peer when it is importable).

    .venv/bin/python bench/conll_extraction.py --limit 50              # the recorded run
    .venv/bin/python bench/conll_extraction.py --limit 50 --outlines    # + outlines (own venv: see BENCHMARKS.md)

Sentences: every k-th sentence of the dev split (valid.txt = eng.testa) with at least 5 tokens,
``--limit`` of them.  Gold entities come from the IOB2 tags (tokens joined by spaces).  The
same chat prompt (instruction, the schema, two fixed train demonstrations) goes to every
system, greedy, ``--max-tokens`` answer tokens, one attempt (no re-ask), so what differs is
the decoding only.  Columns:

* valid: answers that parse as JSON and validate against the schema;
* F1: entity-level micro-F1 over (sentence, type, text) (an invalid answer predicts nothing);
* tok/s: completion tokens per second of generation wall time (forced tokens included);
* s/rec: generation wall time per sentence.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints

CONLL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "conll2003"
TYPES = {"PER": "persons", "ORG": "organisations", "LOC": "locations", "MISC": "misc"}


#: a sentence names a handful of entities: bounded lists and strings let a constrained decoder
#: close the answer where the 135M model would otherwise repeat one string until the token limit
Name = Annotated[str, StringConstraints(max_length=48)]
Names = Annotated[list[Name], Field(max_length=6)]


class Entities(BaseModel):
    persons: Names
    organisations: Names
    locations: Names
    misc: Names


INSTRUCTION = ("Extract the named entities of the sentence: people (persons), companies, teams and other "
               "organisations (organisations), places (locations), and other names such as nationalities "
               "and events (misc). Answer with only a JSON object with the keys persons, organisations, "
               "locations and misc, each a list of strings copied from the sentence.")
DEMOS = [
    ("EU rejects German call to boycott British lamb .",
     {"persons": [], "organisations": ["EU"], "locations": [], "misc": ["German", "British"]}),
    ("Peter Blackburn visited Brussels on Monday .",
     {"persons": ["Peter Blackburn"], "organisations": [], "locations": ["Brussels"], "misc": []}),
]


def read_sentences(path: Path) -> list[tuple[list[str], list[str]]]:
    sentences, tokens, tags = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip() or line.startswith("-DOCSTART-"):
            if tokens:
                sentences.append((tokens, tags))
            tokens, tags = [], []
            continue
        parts = line.split()
        tokens.append(parts[0])
        tags.append(parts[-1])
    return sentences


def gold_entities(tokens: list[str], tags: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {v: [] for v in TYPES.values()}
    cur: list[str] = []
    kind = None
    for tok, tag in list(zip(tokens, tags)) + [("", "O")]:
        if tag.startswith("I-") and kind == tag[2:]:
            cur.append(tok)
            continue
        if cur and kind:
            out[TYPES[kind]].append(" ".join(cur))
        cur, kind = ([tok], tag[2:]) if tag.startswith(("B-", "I-")) else ([], None)
    return out


def sample(limit: int) -> list[tuple[str, dict[str, list[str]]]]:
    sents = [s for s in read_sentences(CONLL / "valid.txt") if len(s[0]) >= 5]
    step = max(1, len(sents) // limit)
    return [(" ".join(t), gold_entities(t, g)) for t, g in sents[::step][:limit]]


def messages(sentence: str) -> list[dict[str, str]]:
    schema = json.dumps(Entities.model_json_schema())
    msgs = [{"role": "system", "content": f"{INSTRUCTION}\nJSON schema: {schema}"}]
    for text, answer in DEMOS:
        msgs += [{"role": "user", "content": f"Sentence: {text}"},
                 {"role": "assistant", "content": json.dumps(answer)}]
    return msgs + [{"role": "user", "content": f"Sentence: {sentence}"}]


def parse(text: str) -> dict[str, list[str]] | None:
    from openautoglm.core.schema import extract_json

    value, error = extract_json(text)
    if error:
        return None
    try:
        return Entities.model_validate(value).model_dump()
    except Exception:  # noqa: BLE001 - invalid under the schema
        return None


def score(preds: list[dict[str, list[str]] | None], golds: list[dict[str, list[str]]]) -> float:
    tp = fp = fn = 0
    for i, (pred, gold) in enumerate(zip(preds, golds)):
        g = {(i, k, e.strip()) for k, v in gold.items() for e in v}
        p = {(i, k, e.strip()) for k, v in (pred or {}).items() for e in v if e.strip()}
        tp, fp, fn = tp + len(p & g), fp + len(p - g), fn + len(g - p)
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    return 2 * prec * rec / (prec + rec) if prec + rec else 0.0


def run_local(backend: Any, records: list[tuple[str, dict[str, list[str]]]], batch: int, constrained: bool,
              max_tokens: int) -> dict[str, Any]:
    from openautoglm.backends.base import Constraint, GenerationRequest

    constraint = Constraint.json(Entities.model_json_schema()) if constrained else None
    reqs = [GenerationRequest(messages(s), max_tokens=max_tokens, constraint=constraint) for s, _ in records]
    texts, tokens, forced, wall = [], 0, 0, 0.0
    for lo in range(0, len(reqs), batch):
        t0 = time.perf_counter()
        comps = backend.generate(reqs[lo:lo + batch])
        wall += time.perf_counter() - t0
        texts += [c.text for c in comps]
        tokens += sum(c.completion_tokens for c in comps)
        forced += sum(getattr(c, "forced_tokens", 0) for c in comps)
    return summarise(texts, records, tokens, wall, forced=forced)


def summarise(texts: list[str], records: list[Any], tokens: int, wall: float, forced: int = 0) -> dict[str, Any]:
    preds = [parse(t) for t in texts]
    return {"valid": sum(p is not None for p in preds) / len(preds), "f1": score(preds, [g for _, g in records]),
            "tok_s": tokens / wall, "s_rec": wall / len(records), "tokens": tokens, "forced": forced,
            "examples": texts[:3]}


def run_outlines(records: list[Any], batch: int, max_tokens: int, model_dir: Path) -> dict[str, Any]:
    """The same task through outlines (transformers model from the embedded model's converted files)."""
    import outlines
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = outlines.from_transformers(hf, tok)
    t0 = time.perf_counter()
    gen = outlines.Generator(model, Entities)
    prompts = [tok.apply_chat_template(messages(s), tokenize=False, add_generation_prompt=True) for s, _ in records]
    gen(prompts[0], max_new_tokens=2)  # builds the schema's index over the vocabulary (timed apart)
    compile_s = time.perf_counter() - t0
    texts, tokens, wall = [], 0, 0.0
    for lo in range(0, len(prompts), batch):
        chunk = prompts[lo:lo + batch]
        t0 = time.perf_counter()
        outs = gen.batch(chunk, max_new_tokens=max_tokens) if len(chunk) > 1 else [gen(chunk[0], max_new_tokens=max_tokens)]
        wall += time.perf_counter() - t0
        texts += list(outs)
        tokens += sum(len(tok(o, add_special_tokens=False).input_ids) for o in outs)
    return {**summarise(texts, records, tokens, wall), "compile_s": compile_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--max-tokens", type=int, default=80)
    ap.add_argument("--outlines", action="store_true", help="also run outlines (must be importable)")
    ap.add_argument("--only-outlines", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args()
    records = sample(args.limit)
    rows = []
    batches = [int(b) for b in args.batches.split(",")]
    if not args.only_outlines:
        from openautoglm.backends.local import LocalBackend

        backend = LocalBackend()
        for batch in batches:
            for constrained in (False, True):
                res = run_local(backend, records, batch, constrained, args.max_tokens)
                rows.append({"system": f"openautoglm local {'+ llguidance' if constrained else '(no constraint)'}",
                             "batch": batch, **res})
                print(json.dumps(rows[-1]), flush=True)
    if args.outlines or args.only_outlines:
        from openautoglm.backends.weights import resolve_model_files

        model_dir = resolve_model_files(None).directory
        for batch in batches:
            res = run_outlines(records, batch, args.max_tokens, model_dir)
            rows.append({"system": "outlines + transformers", "batch": batch, **res})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\nCoNLL-2003 dev, {len(records)} sentences, max {args.max_tokens} tokens, greedy, "
          f"threads={os.environ.get('OPENAUTOGLM_THREADS', 'default')}")
    print("| system | batch | schema-valid | entity micro-F1 | tokens/s | s/record | forced tokens |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['system']} | {r['batch']} | {r['valid']:.0%} | {r['f1']:.3f} | {r['tok_s']:.1f} | "
              f"{r['s_rec']:.2f} | {r['forced']}/{r['tokens']} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
