"""Write reviews.csv, a small made-up dataset with the problems the toolkit finds.

    python examples/data/make_reviews.py

Everything here is synthetic (written for this example; identifiers are random and only
valid in form): duplicates, near duplicates, mojibake, control characters, PII, a few
flipped labels, Chinese and French rows.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
POS = ["a warm, funny and moving film", "the acting is superb and the score is lovely", "a delightful story for the whole family",
       "sharp writing and a great cast", "beautifully shot and well paced", "I smiled from start to finish",
       "one of the best films this year", "clever, kind and surprisingly deep"]
NEG = ["a dull and tiresome mess", "the plot makes no sense at all", "two hours I will never get back",
       "wooden acting and a lazy script", "boring, loud and far too long", "the jokes fall flat every time",
       "a waste of a good cast", "I walked out after an hour"]
EXTRA = [
    ("我很喜欢这部电影，演员表演非常好", "positive"), ("剧情拖沓，看得我想睡觉", "negative"),
    ("Un film magnifique, je le recommande", "positive"),
    ("Great film! Contact me at reviewer42@example.com or 13812345678 for the screening.", "positive"),
    ("Refund to card 6222 0212 3456 7890 128 please, the film was awful", "negative"),
    ("cafÃ© scenes were the best part, a charming film", "positive"),
    ("terrible\x07 sound and\u200b a boring plot", "negative"),
]


def main() -> None:
    rng = random.Random(7)
    rows = []
    for i in range(60):
        label = "positive" if i % 3 else "negative"
        words = POS if label == "positive" else NEG
        text = f"{rng.choice(words)}; {rng.choice(words)}"
        if i % 17 == 5:  # a flipped label
            label = "negative" if label == "positive" else "positive"
        rows.append({"id": i, "text": text, "label": label, "date": f"2024-0{1 + i // 20}-{1 + i % 28:02d}"})
    rows += [{"id": 60 + k, "text": t, "label": lab, "date": "2024-03-15"} for k, (t, lab) in enumerate(EXTRA)]
    rows.append({**rows[3], "id": 100})                                     # exact duplicate
    rows.append({**rows[4], "id": 101, "text": rows[4]["text"] + "!"})     # near duplicate
    with (HERE / "reviews.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "text", "label", "date"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {HERE / 'reviews.csv'}")


if __name__ == "__main__":
    main()
