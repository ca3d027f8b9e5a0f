from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATA = Path(__file__).resolve().parents[2] / "../shared/data"


def shared(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture
def churn_frame() -> pd.DataFrame:
    """A small synthetic churn table: an id, numbers, categories, a numeric-text column, a target."""
    rng = np.random.default_rng(0)
    n = 400
    tenure = rng.integers(0, 72, n)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n, p=[0.5, 0.3, 0.2])
    monthly = rng.normal(70, 20, n).round(2)
    logit = -0.05 * tenure + (contract == "Month-to-month") * 1.5 + 0.01 * (monthly - 70)
    churn = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "Yes", "No")
    total = [f"{v:.2f}" if i % 50 else " " for i, v in enumerate(tenure * monthly)]
    return pd.DataFrame({"customerID": [f"{i:04d}-ABCD" for i in range(n)], "tenure": tenure, "Contract": contract,
                         "MonthlyCharges": monthly, "TotalCharges": total, "Churn": churn})
