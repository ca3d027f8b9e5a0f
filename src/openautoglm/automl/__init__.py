"""Natural-language-driven tabular AutoML.

``AutoML(instruction="predict whether a customer churns").fit(df)`` profiles the
data, turns the instruction into a validated :class:`Plan` (LLM choices checked
by a deterministic planner), prepares the features, searches model families and
hyperparameters with Optuna under a wall-clock budget and ensembles the best.

``import openautoglm.automl`` is cheap: pandas, scikit-learn, LightGBM and Optuna
load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

_LAZY = {
    "AutoML": "openautoglm.automl.estimator",
    "load": "openautoglm.automl.estimator",
    "Plan": "openautoglm.automl.plan",
    "make_plan": "openautoglm.automl.plan",
    "profile_frame": "openautoglm.automl.profile",
    "read_table": "openautoglm.automl.io",
    "PlanError": "openautoglm.automl.errors",
    "AmbiguousInstruction": "openautoglm.automl.errors",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from .errors import AmbiguousInstruction, PlanError
    from .estimator import AutoML, load
    from .io import read_table
    from .plan import Plan, make_plan
    from .profile import profile_frame


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
