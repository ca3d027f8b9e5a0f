"""``student:<dir>`` — a classifier distilled with ``openautoglm distill``, used as a backend.

``Pipeline(model="student:out/student", task=same_task)`` gives label results whose
confidences are the student's calibrated probabilities:

* ``score_batch``: runs the student on the record's fields (which a task sends with each
  request: ``reads_fields``), and returns, for each continuation (a label's verbalizer or
  the label, leading space allowed), the log of the student's probability of that label.
  Lengths are all 1, so the task's softmax gives back exactly the student's distribution.
* ``generate``: the most probable label, as text.

The prefix ``student:`` is registered through the entry-point group
``openautoglm.backends`` like any plug-in backend's, so the backends layer does not
depend on this package.

A request without fields (a raw prompt sent to ``openautoglm serve --model student:...``
over the OpenAI-compatible API) has its prompt inverted: exactly when it was built by
the task the student was distilled from (its saved config is rebuilt and framed around a
sentinel); otherwise by rules (the last user message, minus a trailing answer cue and
label list, minus any few-shot prefix before the last rendering of the template).
"""

from __future__ import annotations

import math
import re
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..backends.base import Backend, Completion, GenerationRequest, Prompt, ScoreRequest, ScoreResult
from ..errors import BackendError, UnknownModelError

if TYPE_CHECKING:  # pragma: no cover
    from ..core.task import Task
    from .distill import Student

_SENTINEL = "\x1eOPENAUTOGLM-STUDENT-INPUT\x1e"
_LIST_LINE = re.compile(r"\n?Answer with one of:[^\n]*\Z")
_CUE_LINE = re.compile(r"\n[^\n]{0,40}:[ \t]*\Z")
_MIN_PROB = 1e-12


@dataclass(frozen=True)
class _Frame:
    """What the teacher's task puts around the rendered template (chat: in the last user message)."""

    prefix: str
    suffix: str
    chat: bool


def _frame(task: "Task | None") -> _Frame | None:
    if task is None:
        return None
    try:
        context = {v: _SENTINEL for v in task.input_variables}
        body = task.template.render(context)
        prompt = task.build_prompt(context)
    except Exception:  # noqa: BLE001 - e.g. a template reading {step.field}: fall back to rules
        return None
    chat = not isinstance(prompt, str)
    text = _last_user(prompt) if chat else str(prompt)
    at = text.rfind(body)
    if _SENTINEL not in body or at < 0:
        return None
    return _Frame(text[:at], text[at + len(body):], chat)


def _last_user(prompt: Prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    users = [m for m in prompt if m.get("role") == "user"] or list(prompt)
    return str(users[-1].get("content", "")) if users else ""


def _template_pattern(source: str) -> tuple[re.Pattern[str], str, dict[str, str]] | None:
    """A regex matching renderings of a ``{name}``-style template: (pattern, literal head, group -> field)."""
    from ..core.prompt import Template

    try:
        if Template(source).is_jinja:
            return None
        parts = list(string.Formatter().parse(source))
    except Exception:  # noqa: BLE001
        return None
    regex, groups, names = "", {}, {}
    for literal, fld, _, _ in parts:
        regex += re.escape(literal)
        if fld is None:
            continue
        if fld in names:
            regex += f"(?P={names[fld]})"
            continue
        group = f"f{len(names)}"
        names[fld] = group
        groups[group] = fld
        regex += f"(?P<{group}>.*?)"
    head = parts[0][0] if parts else ""
    return re.compile(regex, re.S), head, groups


class StudentBackend(Backend):
    name = "student"
    can_score = True
    score_method = "student"  # what a Task reports as the confidence's source
    supports_json_schema = False
    deterministic = True
    reads_fields = True
    max_context = 1_000_000
    model_placeholder = "<dir>"  # what `openautoglm models` shows after "student:"

    def __init__(self, path: str | Path | None = None, **options: Any) -> None:
        if not path:
            raise UnknownModelError("model 'student:' needs the student's directory, e.g. 'student:out/student'",
                                    hint="create one with `openautoglm distill pipeline.yaml data.csv --out out/student`")
        if options:
            raise UnknownModelError(f"the student backend takes no options; got {sorted(options)}")
        from .distill import Student

        self.path = Path(path)
        self.model = str(path)
        self.student: Student = Student.load(self.path)
        task = self.student.teacher_task()
        self._frame = _frame(task)
        teacher_template = task.prompt_template if task is not None else self.student.template
        self._pattern = _template_pattern(teacher_template)
        self._reparse = teacher_template != self.student.template  # e.g. distilled with text_field
        self._columns: dict[str, int] = {}
        for i, label in enumerate(self.student.labels):
            self._columns.setdefault(label, i)
        for label, word in self.student.verbalizers.items():
            self._columns[word] = self.student.labels.index(label)

    # -- request -> the student's text --------------------------------------------------------
    def request_text(self, request: GenerationRequest | ScoreRequest) -> str:
        """The text the student embeds: rendered from the record's fields when the request
        carries them, else recovered from the prompt."""
        if request.fields is not None:
            try:
                return self.student.render(dict(request.fields))
            except Exception:  # noqa: BLE001 - the record lacks what the student reads: use the prompt
                pass
        return self.prompt_text(request.prompt)

    def prompt_text(self, prompt: Prompt) -> str:
        """The text the student embeds for a prompt built by the student's task."""
        chat = not isinstance(prompt, str)
        text = _last_user(prompt) if chat else str(prompt)
        frame = self._frame
        if (frame is not None and frame.chat == chat and len(text) >= len(frame.prefix) + len(frame.suffix)
                and text.startswith(frame.prefix) and text.endswith(frame.suffix)):
            body = text[len(frame.prefix):len(text) - len(frame.suffix)]
        else:
            body = self._body_by_rules(text, chat)
        return self._student_input(body)

    def _body_by_rules(self, text: str, chat: bool) -> str:
        if not chat:
            text = _CUE_LINE.sub("", text.rstrip())
        text = _LIST_LINE.sub("", text.rstrip())
        if not chat and self._pattern is not None:
            pattern, head, _ = self._pattern
            if head:  # few-shot / system text before the record: keep the last rendering of the template
                for start in reversed([m.start() for m in re.finditer(re.escape(head), text)]):
                    if pattern.fullmatch(text, start):
                        return text[start:]
        return text

    def _student_input(self, body: str) -> str:
        if not self._reparse or self._pattern is None:
            return body
        match = self._pattern[0].fullmatch(body)
        if match is None:
            return body
        fields = {self._pattern[2][g]: v for g, v in match.groupdict().items()}
        try:
            return self.student.render(fields)
        except Exception:  # noqa: BLE001 - the student reads something the prompt does not show
            return body

    def _column(self, continuation: str) -> int:
        word = continuation.strip()
        if word in self._columns:
            return self._columns[word]
        folded = {k.casefold(): v for k, v in self._columns.items()}
        if word.casefold() in folded:
            return folded[word.casefold()]
        raise BackendError(
            f"student {self.model!r} has no label {word!r}; it knows: {', '.join(sorted(self._columns))}",
            hint="use the task (labels/verbalizers) the student was distilled from",
        )

    # -- backend contract --------------------------------------------------------------------
    def score_batch(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        columns = [[self._column(c) for c in req.continuations] for req in requests]
        texts = [self.request_text(req) for req in requests]
        started = time.perf_counter()
        probs = self.student.predict_proba(texts)
        latency = (time.perf_counter() - started) / max(1, len(requests))
        return [
            ScoreResult([math.log(max(float(row[j]), _MIN_PROB)) for j in cols], [1] * len(cols),
                        prompt_tokens=self.count_tokens(text), latency_s=latency)
            for row, cols, text in zip(probs, columns, texts)
        ]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        texts = [self.request_text(req) for req in requests]
        started = time.perf_counter()
        labels = self.student.predict(texts)
        latency = (time.perf_counter() - started) / max(1, len(requests))
        return [
            Completion(texts=[label] * req.n, finish_reasons=["stop"] * req.n,
                       prompt_tokens=self.count_tokens(text), completion_tokens=req.n, latency_s=latency)
            for req, label, text in zip(requests, labels, texts)
        ]

    def identity(self) -> str:
        return f"student:{self.path.resolve()}:{self.student.fingerprint_}"

    @staticmethod
    def availability() -> tuple[bool, str]:
        """Whether students can run here (``openautoglm models``)."""
        import importlib.util

        if importlib.util.find_spec("sklearn") is None or importlib.util.find_spec("joblib") is None:
            return False, "scikit-learn is not installed: pip install 'openautoglm[optimize]'"
        return True, "a classifier made by `openautoglm distill` (student:<dir>)"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "labels": self.student.labels, "method": self.student.method,
                "teacher": {k: self.student.teacher.get(k) for k in ("pipeline", "backend", "model")}}
