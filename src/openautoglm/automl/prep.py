"""Feature preparation: one scikit-learn transformer per model flavour.

* ``native`` (LightGBM, histogram GB): numbers keep NaN, categories become
  ordinal codes the model treats as categorical;
* ``trees`` (random forest, extra trees): median imputation + missing flags,
  ordinal codes;
* ``linear``: median imputation + missing flags + standard scaling, one-hot
  categories (rare ones pooled).

Datetime columns become calendar features, free text becomes TF-IDF → SVD
components.  Everything is target-independent, so a fold's preparation can be
fitted once and reused by every trial of the search.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from .profile import DataProfile

FLAVOURS = ("native", "trees", "linear")


class ToFloat(BaseEstimator, TransformerMixin):
    """Numbers (also numbers stored as text) → float64 with NaN for missing."""

    def fit(self, X: Any, y: Any = None) -> "ToFloat":
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        df = pd.DataFrame(X)
        out = np.empty(df.shape, dtype=np.float64)
        for i, col in enumerate(df.columns):
            s = df[col]
            if not pd.api.types.is_numeric_dtype(s):
                s = pd.to_numeric(s.astype(str).str.replace(",", "", regex=False).str.strip(), errors="coerce")
            out[:, i] = s.astype(float).to_numpy()
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(input_features if input_features is not None else [], dtype=object)


class ToStr(BaseEstimator, TransformerMixin):
    """Categories → strings, missing stays NaN (so encoders see one type)."""

    def fit(self, X: Any, y: Any = None) -> "ToStr":
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        df = pd.DataFrame(X)
        out = np.empty(df.shape, dtype=object)
        for i, col in enumerate(df.columns):
            s = df[col]
            if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
                # 1 and 1.0 are the same category (a column turns float when a value is missing)
                s = s.map(lambda v: v if _is_missing(v) else (str(int(v)) if float(v).is_integer() else str(v)))
            out[:, i] = s.astype(str).where(s.notna(), np.nan).to_numpy(dtype=object)
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(input_features if input_features is not None else [], dtype=object)


class DatetimeFeatures(BaseEstimator, TransformerMixin):
    """Each datetime column → year, month, day, weekday, hour, days since 1970."""

    PARTS = ("year", "month", "day", "weekday", "hour", "epoch_days")

    def fit(self, X: Any, y: Any = None) -> "DatetimeFeatures":
        self.columns_ = list(pd.DataFrame(X).columns)
        return self

    def transform(self, X: Any) -> np.ndarray:
        df = pd.DataFrame(X)
        cols = []
        for col in df.columns:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                d = pd.to_datetime(df[col], errors="coerce", format="mixed")
            cols += [d.dt.year, d.dt.month, d.dt.day, d.dt.day_of_week, d.dt.hour,
                     (d - pd.Timestamp("1970-01-01")).dt.days]
        return np.column_stack([c.astype(float).to_numpy() for c in cols]) if cols else np.empty((len(df), 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray([f"{c}__{p}" for c in self.columns_ for p in self.PARTS], dtype=object)


class TextSVD(BaseEstimator, TransformerMixin):
    """One free-text column → TF-IDF (words + bigrams) → ``n_components`` SVD components."""

    def __init__(self, n_components: int = 20, max_features: int = 20000, random_state: int = 0) -> None:
        self.n_components = n_components
        self.max_features = max_features
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> "TextSVD":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        text = self._text(X)
        self.tfidf_ = TfidfVectorizer(max_features=self.max_features, ngram_range=(1, 2), sublinear_tf=True, min_df=2)
        try:
            m = self.tfidf_.fit_transform(text)
        except ValueError:  # empty vocabulary
            self.tfidf_ = TfidfVectorizer(max_features=self.max_features, analyzer="char_wb", ngram_range=(2, 4))
            m = self.tfidf_.fit_transform(text)
        k = max(1, min(self.n_components, m.shape[1] - 1, m.shape[0] - 1))
        self.svd_ = TruncatedSVD(n_components=k, random_state=self.random_state).fit(m)
        return self

    def transform(self, X: Any) -> np.ndarray:
        return self.svd_.transform(self.tfidf_.transform(self._text(X)))

    @staticmethod
    def _text(X: Any) -> list[str]:
        s = X.iloc[:, 0] if isinstance(X, pd.DataFrame) else pd.Series(np.asarray(X).ravel())
        return s.map(lambda v: "" if _is_missing(v) else str(v)).tolist()

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        name = input_features[0] if input_features is not None and len(input_features) else "text"
        return np.asarray([f"{name}__svd{i}" for i in range(self.svd_.n_components)], dtype=object)


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT


def feature_kinds(profile: DataProfile, features: Sequence[str]) -> dict[str, list[str]]:
    """Group feature columns by how they are prepared."""
    groups: dict[str, list[str]] = {"numeric": [], "categorical": [], "datetime": [], "text": []}
    for c in features:
        kind = profile[c].kind
        if kind == "numeric":
            groups["numeric"].append(c)
        elif kind in ("categorical", "boolean"):
            groups["categorical"].append(c)
        elif kind in ("datetime", "text"):
            groups[kind].append(c)
    return groups


def make_preparer(groups: dict[str, list[str]], flavour: str, *, seed: int = 0) -> Any:
    """A ``ColumnTransformer`` for ``flavour`` (see the module docstring)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r}")
    parts: list[tuple[str, Any, Any]] = []
    num, cat, dt, txt = groups["numeric"], groups["categorical"], groups["datetime"], groups["text"]
    dense_num = flavour != "native"
    if num:
        steps: list[Any] = [ToFloat()]
        if dense_num:
            steps.append(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True))
        if flavour == "linear":
            steps.append(StandardScaler())
        parts.append(("num", make_pipeline(*steps), num))
    if dt:
        steps = [DatetimeFeatures()]
        if dense_num:
            steps.append(SimpleImputer(strategy="median", keep_empty_features=True))
        if flavour == "linear":
            steps.append(StandardScaler())
        parts.append(("dt", make_pipeline(*steps), dt))
    if cat:
        if flavour == "linear":
            enc = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=10, max_categories=40,
                                sparse_output=False)
            parts.append(("cat", make_pipeline(ToStr(), SimpleImputer(strategy="constant", fill_value="__missing__"), enc), cat))
        else:
            enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                 encoded_missing_value=np.nan if flavour == "native" else -1, dtype=np.float64)
            if flavour == "trees":
                enc.set_params(unknown_value=-1)
            parts.append(("cat", make_pipeline(ToStr(), enc), cat))
    for i, col in enumerate(txt):
        steps = [TextSVD(random_state=seed)]
        if flavour == "linear":
            steps.append(StandardScaler())
        parts.append((f"text{i}", make_pipeline(*steps), [col]))
    if not parts:
        raise ValueError("no usable feature columns")
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0, verbose_feature_names_out=False)


def categorical_indices(groups: dict[str, list[str]], flavour: str) -> list[int]:
    """Column positions of the ordinal-coded categories in a ``native`` preparer's output."""
    if flavour != "native" or not groups["categorical"]:
        return []
    start = len(groups["numeric"]) + 6 * len(groups["datetime"])
    return list(range(start, start + len(groups["categorical"])))


def leakage_check(df: pd.DataFrame, y: np.ndarray, groups: dict[str, list[str]], task: str,
                  *, seed: int = 0, threshold: float = 0.995) -> dict[str, str]:
    """Features that alone predict the target (almost) perfectly on held-out rows.

    Each feature gets a depth-4 tree trained on half the rows and scored on the
    other half (accuracy for classes, R² for numbers); at or above ``threshold``
    it is reported with its score.
    """
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    n = len(df)
    if n < 20:
        return {}
    idx = np.arange(n)
    if n > 20000:
        idx = np.random.default_rng(seed).choice(n, 20000, replace=False)
    strat = y[idx] if task != "regression" and np.min(np.bincount(y[idx].astype(int))) >= 2 else None
    a, b = train_test_split(idx, test_size=0.5, random_state=seed, stratify=strat)
    found: dict[str, str] = {}
    majority = 0.0 if task == "regression" else float(np.bincount(y[b].astype(int)).max() / len(b))
    for kind in ("numeric", "categorical"):
        for col in groups[kind]:
            raw = df[[col]]
            x = ToFloat().fit_transform(raw) if kind == "numeric" else _codes(raw[col])
            x = np.nan_to_num(x, nan=-1e12)
            model = DecisionTreeRegressor(max_depth=4, random_state=seed) if task == "regression" \
                else DecisionTreeClassifier(max_depth=4, random_state=seed)
            model.fit(x[a], y[a])
            score = float(model.score(x[b], y[b]))
            if score >= threshold and score > majority + 0.01:
                what = "R²" if task == "regression" else "accuracy"
                found[col] = f"alone predicts the target with held-out {what} {score:.3f}"
    return found


def _codes(s: pd.Series) -> np.ndarray:
    codes, _ = pd.factorize(s.map(lambda v: v if _is_missing(v) else str(v)), use_na_sentinel=True)
    return codes.astype(float).reshape(-1, 1)
