from __future__ import annotations

import numpy as np
import pandas as pd

from openautoglm.automl.prep import feature_kinds, leakage_check, make_preparer
from openautoglm.automl.profile import profile_frame


def frame(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    df = pd.DataFrame({
        "num": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
        "cat": rng.choice(["a", "b", None], n),
        "when": pd.date_range("2021-01-01", periods=n, freq="h").strftime("%Y-%m-%d %H:%M"),
        "note": [" ".join(rng.choice(["red", "blue", "green", "big", "small", "very", "quite"], 5)) for _ in range(n)],
        "copy": np.where(y == 1, "pos", "neg"),
    })
    return df, y


def test_flavours_give_finite_or_native_features():
    df, _ = frame()
    prof = profile_frame(df)
    groups = feature_kinds(prof, ["num", "cat", "when", "note"])
    assert groups == {"numeric": ["num"], "categorical": ["cat"], "datetime": ["when"], "text": ["note"]}
    for flavour in ("linear", "trees"):
        X = make_preparer(groups, flavour).fit_transform(df)
        assert np.isfinite(X).all()
        assert X.shape[0] == len(df) and X.shape[1] >= 1 + 6 + 1
    native = make_preparer(groups, "native").fit_transform(df)
    assert np.isnan(native[:, 0]).sum() == df["num"].isna().sum()  # NaN kept for LightGBM/HGB
    # unseen category at prediction time does not fail
    prep = make_preparer(groups, "linear").fit(df)
    new = df.head(3).copy()
    new["cat"] = "zzz"
    assert prep.transform(new).shape[0] == 3


def test_leakage_check_flags_a_copy_of_the_target_only():
    df, y = frame()
    prof = profile_frame(df)
    groups = feature_kinds(prof, ["num", "cat", "copy"])
    found = leakage_check(df, y, groups, "binary")
    assert list(found) == ["copy"]


def test_integer_categories_survive_a_float_column_at_prediction_time():
    train = pd.DataFrame({"senior": [0, 1] * 30, "plan": ["a", "b", "c"] * 20})
    groups = {"numeric": [], "categorical": ["senior", "plan"], "datetime": [], "text": []}
    prep = make_preparer(groups, "linear").fit(train)
    later = pd.DataFrame({"senior": [1.0, np.nan], "plan": ["a", "b"]})  # a missing value made it float
    assert np.array_equal(prep.transform(later)[:1], prep.transform(train.iloc[[1]].assign(plan="a")))
