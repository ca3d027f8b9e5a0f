"""Strategy settings, as they appear in a task's ``strategy:`` field.

``strategy: chain_of_thought`` or a block::

    strategy:
      name: verify_revise
      max_attempts: 3
      inner: chain_of_thought
      verifier: {type: llm, prompt: "{input}\\nProposed answer: {answer}\\nIs it correct?"}
"""

from __future__ import annotations

from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

STRATEGIES = ("direct", "chain_of_thought", "self_consistency", "verify_revise")

DEFAULT_COT_TRIGGER = "Let's think step by step."
DEFAULT_JUDGE_PROMPT = "{input}\nProposed answer: {answer}\nIs the proposed answer correct?"


class VerifierConfig(BaseModel):
    """What checks an answer in ``verify_revise``.

    * ``schema`` – the task's output schema (JSON outputs);
    * ``python`` – ``call: "package.module:function"``, called as ``fn(output, record)``;
      returns True/None (accept), False or a feedback string (reject), or ``(ok, feedback)``;
    * ``llm`` – a judge prompt (``{input}``, ``{answer}`` and the record's fields), whose
      yes/no answer is scored; accepted when P(yes) ≥ ``threshold``;
    * ``callable`` – a Python function given directly (Python API only).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    type: Literal["schema", "python", "llm", "callable"]
    call: str | None = None
    prompt: str = DEFAULT_JUDGE_PROMPT
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    function: Callable[..., Any] | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _complete(self) -> "VerifierConfig":
        if self.type == "python" and (not self.call or ":" not in self.call):
            raise ValueError("a python verifier needs `call: 'package.module:function'`")
        if self.type == "callable" and self.function is None:
            raise ValueError("a callable verifier needs `function`")
        return self

    @classmethod
    def coerce(cls, value: Any) -> "VerifierConfig":
        if isinstance(value, VerifierConfig):
            return value
        if callable(value):
            return cls(type="callable", function=value)
        if isinstance(value, str):
            if value in ("schema", "llm"):
                return cls(type=value)  # type: ignore[arg-type]
            if ":" in value:
                return cls(type="python", call=value)
            raise ValueError(f"unknown verifier {value!r}: use 'schema', 'llm', 'package.module:function' or a block")
        return cls.model_validate(value)


class StrategyConfig(BaseModel):
    """A reasoning strategy and its settings."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: Literal["direct", "chain_of_thought", "self_consistency", "verify_revise"] = "direct"
    #: chain of thought: the cue that starts the reasoning, and its length
    trigger: str = DEFAULT_COT_TRIGGER
    max_reasoning_tokens: int = Field(default=96, ge=1, le=131_072)
    #: self-consistency: samples and their temperature
    n: int = Field(default=5, ge=1, le=64)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    #: verify-and-revise: the checker, the attempt limit and how each attempt answers
    verifier: VerifierConfig | None = None
    max_attempts: int = Field(default=3, ge=1, le=10)
    inner: Literal["direct", "chain_of_thought"] = "direct"

    @model_validator(mode="before")
    @classmethod
    def _coerce_verifier(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("verifier") is not None:
            data = {**data, "verifier": VerifierConfig.coerce(data["verifier"])}
        return data

    @model_validator(mode="after")
    def _needs_verifier(self) -> "StrategyConfig":
        if self.name == "verify_revise" and self.verifier is None:
            raise ValueError("strategy verify_revise needs a `verifier` (schema, llm, python or a callable)")
        return self

    @classmethod
    def coerce(cls, value: Any) -> "StrategyConfig":
        if isinstance(value, StrategyConfig):
            return value
        if value is None:
            return cls()
        if isinstance(value, str):
            if value not in STRATEGIES:
                raise ValueError(f"unknown strategy {value!r}; use one of: {', '.join(STRATEGIES)}")
            return cls(name=value)  # type: ignore[arg-type]
        return cls.model_validate(value)

    def to_config(self) -> str | dict[str, Any]:
        """The YAML form: the bare name when nothing else is set."""
        data = self.model_dump(mode="json", exclude_defaults=True, exclude={"verifier", "name"})
        if self.verifier is not None:
            v = self.verifier
            data["verifier"] = {"type": v.type, **v.model_dump(mode="json", exclude_defaults=True,
                                                                 exclude={"function", "type"})}
            fn = v.function
            if v.type == "callable" and fn is not None:
                name = getattr(fn, "__qualname__", "<")
                if "<" in name:
                    raise ValueError("a lambda or nested verifier cannot be saved to YAML; "
                                     "use a module-level function (it is saved as `call: module:function`)")
                data["verifier"] = {"type": "python", "call": f"{fn.__module__}:{name}"}
        return self.name if not data else {"name": self.name, **data}
