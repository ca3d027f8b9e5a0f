"""The data toolkit on a small made-up review set, through the Python API (< 1 min on 2 cores).

    python examples/data/run_example.py          # writes into out/data-example/

The same through the CLI:

    openautoglm data profile examples/data/reviews.csv -l label -o out/data-example/profile
    openautoglm data clean examples/data/reviews.csv -o out/data-example/clean.csv --languages en,zh
    openautoglm data label-issues examples/data/reviews.csv -l label --embedder char-ngram -o out/data-example/issues.csv
    openautoglm data qc examples/data/annotations.csv --annotators ann1,ann2,ann3 --guideline examples/data/guideline.yaml
    openautoglm data drift examples/data/reviews.csv --time-column date -l label --no-embeddings
"""

from __future__ import annotations

from pathlib import Path

from openautoglm.data import agreement, check_guideline, clean, drift, find_label_issues, profile, read_table

HERE = Path(__file__).resolve().parent
OUT = Path("out/data-example")


def main() -> None:
    report = profile(HERE / "reviews.csv", label_column="label")
    paths = report.save(OUT / "profile")
    s = report.stats
    print(f"profile: {s['rows']} rows, {s['exact_duplicates']} exact + {s['near_duplicates']} near duplicates, "
          f"languages {s['languages']}, PII {s['pii']}, mojibake rows {s['encoding']['mojibake_rows']} → {paths['html']}")

    cleaned = clean(HERE / "reviews.csv", OUT / "clean.csv", keep_languages=["en", "zh"], pii="pseudonymize")
    print(f"clean: {cleaned.rows_in} → {cleaned.rows_out} rows; {dict(cleaned.actions)}; audit {cleaned.audit}")

    rows = read_table(OUT / "clean.csv")
    issues = find_label_issues(records=rows, embedder="char-ngram", method="cl")
    print(f"label issues: {len(issues.issues)} flagged")
    for row in issues.issues[:5]:
        print(f"  row {row['row']}: {row['given_label']} → {row['suggested_label']}: {row['text']}")

    ann = read_table(HERE / "annotations.csv")
    agree = agreement(ann, ["ann1", "ann2", "ann3"])
    print(f"agreement: Cohen {agree.pairwise}, Fleiss {agree.fleiss}")
    for v in check_guideline(ann, HERE / "guideline.yaml"):
        print(f"  guideline: row {v['row']} {v['rule']} ({v['field']}): {v['message']}")

    early = [r for r in rows if r["date"] < "2024-02"]
    late = [r for r in rows if r["date"] >= "2024-03"]
    result = drift(early, late, label_column="label", embeddings=False)
    print(f"drift Jan vs Mar: {({k: round(v, 3) for k, v in result.metrics.items()})}, failed: {result.failed or 'none'}")


if __name__ == "__main__":
    main()
