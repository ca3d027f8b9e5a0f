"""Train AutoML from an instruction, show the plan and leaderboard, score held-out rows, write the report."""

from __future__ import annotations

import argparse
from pathlib import Path

from openautoglm.automl import AutoML, read_table

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--llm", action="store_true", help="plan with the embedded model (default: heuristic planner)")
    ap.add_argument("--budget", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=Path("runs/adult-example"))
    args = ap.parse_args()

    train = read_table(HERE / "adult_sample.csv")  # '?' → missing, ', ' separators
    test = read_table(HERE / "adult_sample_test.csv")
    automl = AutoML("predict whether income exceeds 50K", time_budget=args.budget, seed=0,
                    planner="auto" if args.llm else "heuristic", progress=True)
    automl.fit(train)
    print(automl.plan_.summary())
    print(automl.leaderboard()[["model", "roc_auc", "seconds", "weight"]].head(8).to_string(index=False))
    print(f"cross-validated AUC {automl.cv_score_:.3f}; held-out AUC {automl.score_metric(test):.3f} "
          f"(test labels '>50K.' are aligned to '>50K')")
    automl.save(args.out)
    print("report:", automl.report(args.out))


if __name__ == "__main__":
    main()
