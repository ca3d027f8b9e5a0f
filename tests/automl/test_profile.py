from __future__ import annotations

import numpy as np
import pandas as pd

from openautoglm.automl.profile import profile_frame


def test_type_inference_covers_every_kind():
    n = 120
    rng = np.random.default_rng(1)
    words = ["good", "bad", "slow", "fast", "cheap", "pricey", "service", "was", "really", "not"]
    df = pd.DataFrame({
        "row_id": np.arange(n),
        "code": [f"C{i:05d}" for i in range(n)],
        "amount": rng.normal(size=n),
        "amount_text": [f"{v:.2f}" for v in rng.normal(size=n)],
        "signup": pd.date_range("2020-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
        "review": [" ".join(rng.choice(words, 6)) for _ in range(n)],
        "plan": rng.choice(["a", "b", "c"], n),
        "flag": rng.choice(["yes", "no"], n),
        "same": ["x"] * n,
    })
    kinds = {c.name: c.kind for c in profile_frame(df).columns}
    assert kinds == {"row_id": "id", "code": "id", "amount": "numeric", "amount_text": "numeric",
                     "signup": "datetime", "review": "text", "plan": "categorical", "flag": "boolean",
                     "same": "constant"}
    prof = profile_frame(df)
    assert prof["amount_text"].numeric_text
    assert "rows" in prof.describe()
