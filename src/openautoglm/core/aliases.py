"""The class names and spellings the origin articles use, as thin aliases of the real API.

>>> pipe = TaskPipeline(model_path="local", task="sentiment_analysis", language="zh")
>>> pipe.execute(input_text="这个产品真是太棒了")        # same as pipe.run(text=...)

* ``TaskPipeline`` (``AutoGLM`` is the same class) is a :class:`~.pipeline.Pipeline` that
  also takes ``model_path=`` for ``model=``, and ``task=`` as a preset name
  (``"sentiment.v1"``) or a task name a preset matches (``"sentiment_analysis"``);
* ``execute(input_text=...)`` is ``run(...)`` with ``input_text`` given to the pipeline's one
  input field (``text`` for the presets).
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .pipeline import Pipeline
from .result import Result
from .task import Task


def one_model(model: Any, model_path: Any, where: str) -> Any:
    """``model`` or its alias ``model_path`` (an error when both differ)."""
    if model_path is not None and model is not None and model != model_path:
        raise ConfigError(f"give {where} `model=` or its alias `model_path=`, not both", source=where)
    return model if model is not None else model_path


def task_named(name: str, language: str | None = None) -> Task:
    """A task from a preset name (``sentiment.v1``) or a task name a preset matches (``sentiment_analysis``)."""
    from .presets import get_preset, match, preset_names

    try:
        preset = get_preset(name).name
    except ConfigError:
        found = match(name, None)
        if found is None:
            raise ConfigError(f"task {name!r} names no preset and matches none; presets: {', '.join(preset_names())}",
                              source="TaskPipeline(task=...)",
                              hint='pass a Task, e.g. Task(name=..., template="...{text}", labels=[...])') from None
        preset = found[0].name
    return Task(name=name, preset=preset, language=language)


class TaskPipeline(Pipeline):
    """A :class:`Pipeline` under the articles' name: ``model_path=``, ``task="sentiment_analysis"``,
    ``execute(input_text=...)``.  ``language`` (``zh``/``en``) picks a named preset's language."""

    def __init__(self, model: Any = None, task: Task | str | None = None, *, model_path: Any = None,
                 language: str | None = None, **kwargs: Any) -> None:
        if isinstance(task, str):
            task = task_named(task, language)
        super().__init__(model=one_model(model, model_path, "TaskPipeline(...)"), task=task, **kwargs)

    def execute(self, input_text: Any = None, **inputs: Any) -> Result:
        """``run(**inputs)``, with ``input_text`` given to the pipeline's one input field."""
        if input_text is not None:
            needed = sorted(self.required_inputs - set(inputs))
            if "input_text" in needed or not needed:
                inputs["input_text"] = input_text
            elif len(needed) == 1:
                inputs[needed[0]] = input_text
            else:
                raise ConfigError(f"execute(input_text=...) needs a pipeline with one input; this one reads "
                                  f"{', '.join(needed)}", source="TaskPipeline.execute",
                                  hint=f"call execute({', '.join(f'{n}=...' for n in needed)})")
        return self.run(**inputs)


#: the articles' other name for the same class
AutoGLM = TaskPipeline
