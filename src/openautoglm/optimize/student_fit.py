"""The distilled student's classifier: class-balanced logistic regression, ``C`` by
cross-validation, probabilities calibrated (``CalibratedClassifierCV`` or one temperature).

scikit-learn and numpy are imported inside the functions.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from ..errors import OpenAutoGLMError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

C_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
#: calibrate probabilities (sigmoid) from this many training rows on; isotonic from ISOTONIC_MIN_ROWS
CALIBRATION_MIN_ROWS = 100
ISOTONIC_MIN_ROWS = 1000


def _fit_classifier(X: "np.ndarray", y: list[str], random_state: int) -> tuple[Any, dict[str, Any]]:
    """Class-balanced multinomial LR; C by stratified CV when every label has ≥ 3 rows;
    calibrated (sigmoid, isotonic from 1000 rows) from 100 rows on."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    counts = Counter(y)
    if len(counts) < 2:
        raise OpenAutoGLMError(
            f"the student needs training rows of at least two labels; it got only {sorted(counts)}",
            hint="lower min_confidence, or give more (and more varied) records",
        )
    n, folds = len(y), min(5, min(counts.values()))

    def model(c: float) -> Any:  # lbfgs: multinomial for more than two classes
        return LogisticRegression(C=c, class_weight="balanced", max_iter=2000)

    info: dict[str, Any] = {}
    C = 1.0
    if folds >= 3 and n >= 20:
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
        search = GridSearchCV(model(C), {"C": list(C_GRID)}, cv=cv, scoring="neg_log_loss").fit(X, y)
        C = float(search.best_params_["C"])
        info.update(c_search=f"{folds}-fold CV over {list(C_GRID)}", cv_log_loss=round(-float(search.best_score_), 4))
    else:
        info["c_search"] = "none (fewer than 3 rows of some label): C=1"
    info["C"] = C
    if n >= CALIBRATION_MIN_ROWS and folds >= 3:
        method = "isotonic" if n >= ISOTONIC_MIN_ROWS else "sigmoid"
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
        clf = CalibratedClassifierCV(model(C), method=method, cv=cv).fit(X, y)
        info["calibration"] = f"{method} ({folds}-fold CalibratedClassifierCV)"
    elif n >= CALIBRATION_MIN_ROWS:  # many labels, some with < 3 rows: stratified folds are impossible
        clf = TemperatureScaled.fit(model(C), X, y, random_state)
        info["calibration"] = (f"temperature {clf.temperature:.3g} from 5-fold out-of-fold predictions "
                               f"(some labels have fewer than 3 rows)")
    else:
        clf = model(C).fit(X, y)
        info["calibration"] = f"none: plain logistic regression (fewer than {CALIBRATION_MIN_ROWS} rows)"
    return clf, info


class TemperatureScaled:
    """A classifier fitted on all rows whose log-probabilities are divided by one
    temperature, chosen to minimise the log-loss of out-of-fold predictions (plain k-fold:
    works when some labels have too few rows for stratified folds; a label missing from a
    fold's training part gets a floor probability there)."""

    def __init__(self, estimator: Any, temperature: float) -> None:
        self.estimator, self.temperature = estimator, temperature
        self.classes_ = estimator.classes_

    @classmethod
    def fit(cls, estimator: Any, X: "np.ndarray", y: list[str], random_state: int) -> "TemperatureScaled":
        import numpy as np
        from sklearn.base import clone
        from sklearn.model_selection import KFold

        classes = sorted(set(y))
        index = {c: i for i, c in enumerate(classes)}
        target = np.array([index[v] for v in y])
        oof = np.full((len(y), len(classes)), 1e-6)
        seen = np.zeros(len(y), dtype=bool)  # the row's label was in its fold's training part
        for train, test in KFold(n_splits=5, shuffle=True, random_state=random_state).split(X):
            part = [y[i] for i in train]
            known = set(part)
            if len(known) < 2:
                continue
            fold = clone(estimator).fit(X[train], part)
            oof[np.ix_(test, [index[c] for c in fold.classes_])] = np.maximum(fold.predict_proba(X[test]), 1e-6)
            seen[test] = [y[i] in known for i in test]
        if seen.sum() < 2:
            return cls(clone(estimator).fit(X, y), 1.0)
        # rows whose label a fold never saw say nothing about the temperature (their floor
        # probability would only push it up): fit on the others
        logp = np.log(oof / oof.sum(axis=1, keepdims=True))[seen]
        target = target[seen]

        def log_loss(t: float) -> float:
            z = logp / t
            z -= z.max(axis=1, keepdims=True)
            return float(-(z[np.arange(len(target)), target] - np.log(np.exp(z).sum(axis=1))).mean())

        best = min(np.geomspace(0.05, 20.0, 61), key=log_loss)
        return cls(clone(estimator).fit(X, y), float(best))

    def predict_proba(self, X: "np.ndarray") -> "np.ndarray":
        import numpy as np

        z = np.log(np.maximum(self.estimator.predict_proba(X), 1e-12)) / self.temperature
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: "np.ndarray") -> "np.ndarray":
        return self.estimator.predict(X)
