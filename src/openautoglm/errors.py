"""Exceptions raised by Open-AutoGLM.

Every error says *where* the problem is and *how to fix it*; the CLI prints
``str(error)`` without a traceback.
"""

from __future__ import annotations


class OpenAutoGLMError(Exception):
    """Base class.  ``hint`` tells the user what to do about it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message}\n  hint: {hint}")


class ConfigError(OpenAutoGLMError):
    """A pipeline/task configuration is invalid (names the file and the field)."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        field: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.source = source
        self.field = field
        self.line = line
        where = source or "<config>"
        if line is not None:
            where += f":{line}"
        if field:
            where += f" [{field}]"
        super().__init__(f"{where}: {message}", hint=hint)


class TemplateError(OpenAutoGLMError):
    """A prompt template cannot be rendered (e.g. a missing variable)."""


class InputDataError(OpenAutoGLMError):
    """An input file cannot be read as records (encoding, format, missing column)."""


class UnknownModelError(OpenAutoGLMError):
    """A model string names no known backend."""


class BackendError(OpenAutoGLMError):
    """A backend failed to answer."""


class StopRun(OpenAutoGLMError):
    """Nothing more can succeed now (an endpoint is down, a call budget is spent): the work
    stops, resumable, instead of failing the remaining records one by one."""


class EndpointUnavailable(BackendError, StopRun):
    """An HTTP endpoint is unreachable, or its circuit breaker is open."""


class OutputParseError(OpenAutoGLMError):
    """The model's output could not be parsed/validated, even after re-asking."""

    def __init__(self, message: str, *, attempts: int, last_output: str, hint: str | None = None):
        self.attempts = attempts
        self.last_output = last_output
        super().__init__(message, hint=hint)
