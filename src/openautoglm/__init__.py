"""Open-AutoGLM: automate NLP and ML work with large language models.

``import openautoglm`` is cheap: the public names are loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_attributes

__version__ = "0.1.0"

_LAZY = {
    "Task": "openautoglm.core.task",
    "Pipeline": "openautoglm.core.pipeline",
    # the origin articles' names: aliases of Pipeline (see openautoglm.core.aliases)
    "TaskPipeline": "openautoglm.core.aliases",
    "AutoGLM": "openautoglm.core.aliases",
    "Store": "openautoglm.store.sqlite",
    "create_backend": "openautoglm.backends.registry",
    "list_models": "openautoglm.backends.registry",
    "Backend": "openautoglm.backends.base",
    "GenerationRequest": "openautoglm.backends.base",
    "ScoreRequest": "openautoglm.backends.base",
    "load_pipeline_config": "openautoglm.core.config",
    "read_records": "openautoglm.core.records",
    "evaluate": "openautoglm.evaluation",
    "SemanticParser": "openautoglm.sql",
    "AutoML": "openautoglm.automl",
    "PIIDetector": "openautoglm.data.pii",
    "find_label_issues": "openautoglm.data.label_issues",
    "AdaptiveGraphLearner": "openautoglm.graph",
    "NodeClassifier": "openautoglm.graph",
    "load_planetoid": "openautoglm.graph",
    "create_app": "openautoglm.serve.app",
}

__all__ = sorted(_LAZY) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .backends.base import Backend, GenerationRequest, ScoreRequest
    from .backends.registry import create_backend, list_models
    from .core.aliases import AutoGLM, TaskPipeline
    from .core.config import load_pipeline_config
    from .core.pipeline import Pipeline
    from .core.records import read_records
    from .core.task import Task
    from .store.sqlite import Store


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
