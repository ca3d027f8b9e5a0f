"""How :class:`~openautoglm.automl.estimator.AutoML` presents itself to scikit-learn:
a classifier or a regressor (estimator tags, ``is_classifier``/``is_regressor``), known
from the fitted plan, else the ``task=`` parameter, else the instruction's wording."""

from __future__ import annotations

from typing import Any


def estimator_kind(automl: Any) -> str:
    """``"classifier"`` or ``"regressor"``: the fitted plan's task, else ``task=``, else the
    instruction (``"predict the price"`` reads as regression); classification by default."""
    plan = getattr(automl, "plan_", None)
    task = plan.task if plan is not None else automl.task
    if task is None:
        from .plan import _CLASSIFY, _REGRESS, normalise_instruction

        words = normalise_instruction(automl.instruction or "")
        task = "regression" if _REGRESS.search(words) and not _CLASSIFY.search(words) else "binary"
    return "regressor" if task == "regression" else "classifier"


def sklearn_tags(automl: Any, tags: Any) -> Any:
    """``BaseEstimator.__sklearn_tags__``'s result, made a classifier's or a regressor's, that
    takes missing values, categories and text columns, and finds the target in ``X`` without ``y``."""
    from sklearn.utils import ClassifierTags, RegressorTags

    kind = estimator_kind(automl)
    tags.estimator_type = kind
    tags.classifier_tags = ClassifierTags() if kind == "classifier" else None
    tags.regressor_tags = RegressorTags() if kind == "regressor" else None
    tags.target_tags.required = False  # fit(df) reads the target column from df
    tags.input_tags.allow_nan = True
    tags.input_tags.categorical = True
    tags.input_tags.string = True
    return tags
