"""Instruction + data profile → a validated :class:`Plan`, each field with its provenance.

Three sources, in order of authority:

* ``user`` – passed explicitly (``target=...``) or stated unambiguously in the
  instruction ("target column Churn", "optimise accuracy", "ignore customerID");
* ``llm`` – a constrained choice scored by the model (see :mod:`.llm`);
* ``heuristic`` – the deterministic planner: name matching, type inference,
  cardinality rules.

The heuristic planner checks every LLM answer against the data (a target must
exist and be predictable; regression needs a numeric target; ...).  Where the
instruction names something explicitly the LLM cannot overrule it; where the
LLM is unsure and no rule decides, the planner asks (:class:`AmbiguousInstruction`)
instead of guessing.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Sequence

from pydantic import BaseModel, Field

from .errors import AmbiguousInstruction, PlanError
from .profile import DataProfile

TASKS = ("binary", "multiclass", "regression")
METRICS = {
    "binary": ("roc_auc", "log_loss", "accuracy", "f1", "balanced_accuracy"),
    "multiclass": ("log_loss", "accuracy", "f1_macro", "balanced_accuracy"),
    "regression": ("rmse", "mae", "r2"),
}
DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse"}
TASK_WORDS = {
    "binary classification": "binary",
    "multiclass classification": "multiclass",
    "regression": "regression",
}


class PlanSpec(BaseModel):
    """The JSON schema a plan must satisfy (values only, no provenance)."""

    task: Literal["binary", "multiclass", "regression"]
    target: str = Field(min_length=1)
    metric: Literal["roc_auc", "log_loss", "accuracy", "f1", "f1_macro", "balanced_accuracy", "rmse", "mae", "r2"]
    drop: list[str] = Field(default_factory=list)
    class_weight: Optional[Literal["balanced"]] = None


@dataclass
class PlanField:
    value: Any
    source: str  # "user" | "llm" | "heuristic"
    reason: str
    llm: dict[str, Any] | None = None  # the LLM's distribution, when it was asked

    def to_dict(self) -> dict[str, Any]:
        out = {"value": self.value, "source": self.source, "reason": self.reason}
        if self.llm is not None:
            out["llm"] = self.llm
        return out


@dataclass
class Plan:
    """What to learn: task, target, metric, columns to drop, class weighting."""

    instruction: str
    fields: dict[str, PlanField]
    planner: str = "heuristic"
    notes: list[str] = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.fields["task"].value

    @property
    def target(self) -> str:
        return self.fields["target"].value

    @property
    def metric(self) -> str:
        return self.fields["metric"].value

    @property
    def drop(self) -> list[str]:
        return list(self.fields["drop"].value)

    @property
    def class_weight(self) -> str | None:
        return self.fields["class_weight"].value

    def spec(self) -> PlanSpec:
        return PlanSpec(**{k: f.value for k, f in self.fields.items()})

    def to_dict(self) -> dict[str, Any]:
        return {"instruction": self.instruction, "planner": self.planner,
                "plan": self.spec().model_dump(), "provenance": {k: f.to_dict() for k, f in self.fields.items()},
                "notes": list(self.notes)}

    @staticmethod
    def json_schema() -> dict[str, Any]:
        return PlanSpec.model_json_schema()

    def summary(self) -> str:
        return "\n".join(f"{k:>12}: {f.value!r:<30} [{f.source}] {f.reason}" for k, f in self.fields.items())


# ----------------------------------------------------------------------------- words

_ZH = {  # a few common Chinese task words → English tokens the name matcher understands
    "流失": "churn", "收入": "income", "价格": "price", "房价": "house price", "销量": "sales",
    "销售": "sales", "违约": "default", "欺诈": "fraud", "存活": "survived", "生存": "survived",
    "分类": "classification", "回归": "regression", "客户": "customer", "用户": "user",
    "年龄": "age", "类别": "class", "标签": "label", "质量": "quality", "评分": "rating",
    "准确率": "accuracy", "二分类": "binary classification", "多分类": "multiclass classification",
}
_CLASSIFY = re.compile(r"\b(classif\w*|whether|categor\w*|which (class|kind|type)|is it|yes or no|binary|multiclass|multi-class|detect\w*|churn\w*)\b")
_REGRESS = re.compile(r"\b(regress\w*|how (much|many|long)|amount|price|cost|value of|estimate|forecast|continuous|number of)\b")
_METRIC_WORDS = [
    (r"\b(auc|roc)\b", "roc_auc"), (r"\blog[- ]?loss|cross[- ]entropy\b", "log_loss"),
    (r"\bbalanced accuracy\b", "balanced_accuracy"), (r"\baccura\w*\b", "accuracy"),
    (r"\bmacro[- ]?f1|f1[- ]?macro\b", "f1_macro"), (r"\bf1\b", "f1"), (r"\brmse|root mean squared\b", "rmse"),
    (r"\bmae|mean absolute\b", "mae"), (r"\br2|r\^2|r-squared|r squared\b", "r2"),
]
_GENERIC_TARGETS = ("target", "label", "labels", "class", "y", "outcome", "response", "result")
_STOP = {"the", "a", "an", "of", "to", "from", "for", "and", "or", "is", "be", "will", "whether", "predict",
         "predicts", "prediction", "model", "build", "create", "train", "make", "using", "with", "data", "csv",
         "that", "which", "what", "on", "in", "by", "it", "its", "as", "this", "classifier", "classify",
         "regression", "classification", "column", "table", "dataset", "file", "based", "use", "given"}


def normalise_instruction(text: str) -> str:
    out = text
    for zh, en in sorted(_ZH.items(), key=lambda t: -len(t[0])):
        out = out.replace(zh, f" {en} ")
    return out.lower()


def _tokens(text: str) -> list[str]:
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)
    return [t for t in re.findall(r"[a-z]+|\d+", text.lower()) if len(t) > 1 or t.isdigit()]


def _stem(tok: str) -> str:
    for suf in ("ing", "ers", "ed", "es", "er", "s"):
        if tok.endswith(suf) and len(tok) - len(suf) >= 3:
            return tok[: -len(suf)]
    return tok


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def name_match(instruction: str, column: str) -> float:
    """How strongly ``instruction`` names ``column``: 1.0 for the full name, else the
    share of the column's name tokens the instruction mentions (stemmed)."""
    inst = normalise_instruction(instruction)
    col_sq = _squash(column)
    inst_tokens = [t for t in _tokens(inst) if t not in _STOP]
    if len(col_sq) >= 3 and any(_squash(t) == col_sq for t in re.split(r"[\s,;:()\"'`]+", inst)):
        return 1.0
    col_tokens = [t for t in _tokens(column)]
    if not col_tokens:
        return 0.0
    stems = {_stem(t) for t in inst_tokens}
    hit = sum(1 for t in col_tokens if _stem(t) in stems or (len(t) >= 4 and any(s.startswith(_stem(t)) for s in stems)))
    return hit / len(col_tokens)


# ----------------------------------------------------------------------------- planning


def make_plan(
    df: Any,
    instruction: str,
    profile: DataProfile,
    *,
    planner: str = "auto",
    backend: Any = None,
    target: str | None = None,
    task: str | None = None,
    metric: str | None = None,
    drop: Sequence[str] | None = None,
    class_weight: str | None = "auto",
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Plan:
    """Build and validate the plan.  ``planner``: ``"auto"`` (LLM checked by heuristics,
    heuristics alone if no backend can be loaded), ``"llm"`` (must use the LLM) or
    ``"heuristic"``.  Explicit arguments always win and are recorded as ``user``.
    ``deadline`` (on ``clock``): no LLM question is asked after it; the heuristic planner
    decides what is left, and the plan's notes say so."""
    if planner not in ("auto", "llm", "heuristic"):
        raise PlanError(f"planner={planner!r} is not one of 'auto', 'llm', 'heuristic'", hint="pick one of the three")
    notes: list[str] = []
    llm = None
    if planner != "heuristic":
        llm = _load_backend(backend, required=planner == "llm", notes=notes)
    used = "llm" if llm is not None else "heuristic"
    if llm is not None and deadline is not None:
        from .llm import DeadlineBackend

        llm = DeadlineBackend(llm, deadline, clock)
    inst = instruction or ""
    fields: dict[str, PlanField] = {}
    stated, inst_core = _stated_drops(inst, profile.names)
    fields["target"] = _plan_target(inst_core, profile, target, llm, exclude=stated)
    tgt = fields["target"].value
    fields["task"] = _plan_task(inst, profile, tgt, df, task, llm)
    fields["metric"] = _plan_metric(inst, fields["task"].value, metric)
    fields["drop"] = _plan_drop(inst, profile, tgt, drop, llm, stated)
    fields["class_weight"] = _plan_class_weight(fields["task"].value, fields["metric"].value, df, tgt, class_weight)
    if getattr(llm, "refused", 0):
        notes.append(f"LLM planning stopped at its share of the time budget: {llm.refused} question(s) left to "
                     "the heuristic planner")
    plan = Plan(instruction=inst, fields=fields, planner=used, notes=notes)
    plan.spec()  # validates against the schema
    return plan


def _load_backend(backend: Any, *, required: bool, notes: list[str]) -> Any:
    from ..errors import OpenAutoGLMError

    from ..backends.base import Backend

    if isinstance(backend, Backend):
        return backend
    try:
        from ..backends.registry import create_backend

        return create_backend(backend)  # a string, a config dict or None ($OPENAUTOGLM_MODEL, else local)
    except (OpenAutoGLMError, ImportError, OSError, RuntimeError) as exc:
        if required:
            raise PlanError(f"planner='llm' but the model {backend or 'local'!r} cannot be loaded: {exc}",
                            hint="install the 'local' extra or use planner='heuristic'") from exc
        notes.append(f"LLM unavailable ({type(exc).__name__}: {str(exc)[:120]}); heuristic planner only")
        return None


def _candidates(profile: DataProfile) -> list[str]:
    return [c.name for c in profile.columns if c.kind not in ("id", "constant", "text")]


_EXCLUDE = re.compile(r"(?:ignore|drop|exclude|without|except|not using|remove)\s+(?:the\s+)?(?:columns?\s+)?([\w\s,.-]+)", re.I)


def _stated_drops(inst: str, names: Sequence[str]) -> tuple[list[str], str]:
    """Columns the instruction says to leave out, and the instruction without those phrases."""
    stated: list[str] = []
    for m in _EXCLUDE.finditer(inst):
        for tok in re.split(r"[\s,]+|\band\b", m.group(1)):
            if tok in names and tok not in stated:
                stated.append(tok)
    return stated, (_EXCLUDE.sub(" ", inst) if stated else inst)


def _plan_target(inst: str, profile: DataProfile, user: str | None, llm: Any, *,
                 exclude: Sequence[str] = ()) -> PlanField:
    names = profile.names
    if user is not None:
        if user not in names:
            close = [n for n in names if _squash(n) == _squash(user)]
            raise PlanError(f"target column {user!r} is not in the data; columns: {names[:40]}",
                            hint=f"did you mean {close[0]!r}?" if close else "pass one of the listed columns")
        _check_target(profile, user)
        return PlanField(user, "user", "given explicitly")
    cands = [c for c in _candidates(profile) if c not in exclude]
    if not cands:
        raise PlanError("no column can be a target (all are ids, constants or free text)",
                        hint="check the file, or pass target=... explicitly")
    scores = {c: name_match(inst, c) for c in cands}
    best = max(scores.values())
    top = [c for c, s in scores.items() if s == best and s > 0]
    explicit = re.search(r"(?:target|label|column|predict|预测)\s*(?:column|is|=|:)?\s*[\"'`]?([\w.-]+)", inst, re.I)
    if explicit and explicit.group(1) in names:
        col = explicit.group(1)
        _check_target(profile, col)
        return PlanField(col, "user", f"the instruction names column {col!r}")
    generic = [c for c in cands if c.lower() in _GENERIC_TARGETS]
    heur: tuple[str, str] | None = None
    strong = False  # the instruction names the column: the LLM cannot overrule it
    if len(top) == 1 and best >= 0.5:
        heur, strong = (top[0], f"the instruction mentions {top[0]!r} (name match {best:.2f})"), True
    elif len(top) > 1 and best >= 0.5:
        heur = None  # several columns named equally: the LLM may settle it, else ask
    elif generic:
        heur = (generic[0], f"no column is named in the instruction; {generic[0]!r} is a conventional target name")
    choice = None
    if llm is not None:
        q = "Task: {}\nWhich column is the target to predict?"
        choice = _safe_choose(llm, q.format(inst), cands, content_free=q.format("N/A"))
    if choice is not None:
        info = choice.to_dict()
        pick = choice.best
        if heur is not None and pick == heur[0]:
            return PlanField(pick, "llm", f"LLM chose {pick!r} (p={choice.p_best:.2f}); agrees with the heuristic: {heur[1]}", info)
        if heur is not None and strong:
            return PlanField(heur[0], "heuristic", f"{heur[1]}; LLM preferred {pick!r} (p={choice.p_best:.2f}) and was overruled", info)
        if choice.p_best >= 0.5 and choice.margin() >= 2.0:
            return PlanField(pick, "llm", f"LLM chose {pick!r} (p={choice.p_best:.2f}, {choice.margin():.1f}x the runner-up)"
                             + (f"; heuristic guess was {heur[0]!r}" if heur else ""), info)
        if heur is not None:
            return PlanField(heur[0], "heuristic", f"{heur[1]}; LLM unsure (best {pick!r} p={choice.p_best:.2f})", info)
    elif heur is not None:
        return PlanField(heur[0], "heuristic", heur[1])
    options = top if top else (sorted(cands, key=lambda c: -(choice.prob(c) if choice else 0))[:5])
    raise AmbiguousInstruction(
        f"Which column should be predicted? The instruction {inst!r} does not say clearly; candidates: {options}",
        field="target", candidates=options,
        hint="name the column in the instruction ('... target column X') or pass target=... / --target X")


def _check_target(profile: DataProfile, col: str) -> None:
    kind = profile[col].kind
    if kind in ("constant",):
        raise PlanError(f"target column {col!r} has a single value: nothing to predict", hint="pick another target")
    if kind == "text":
        raise PlanError(f"target column {col!r} holds free text; AutoML predicts classes or numbers",
                        hint="pick a categorical or numeric target")


def _data_tasks(profile: DataProfile, tgt: str, df: Any) -> tuple[list[str], str, str]:
    """Tasks the target's data allows, the default, and why."""
    prof = profile[tgt]
    y = df[tgt].dropna()
    n_classes = int(y.nunique())
    if n_classes == 2:
        return ["binary"], "binary", f"{tgt!r} has 2 distinct values"
    if prof.kind == "numeric":
        is_int = bool((y.astype(float) == y.astype(float).round()).all())
        if is_int and n_classes <= 20:
            return ["multiclass", "regression"], "multiclass", f"{tgt!r} holds {n_classes} distinct integers"
        return ["regression"], "regression", f"{tgt!r} is numeric with {n_classes} distinct values"
    if n_classes > 200 or n_classes > 0.5 * len(y):
        raise PlanError(f"target {tgt!r} has {n_classes} distinct non-numeric values: too many classes to learn",
                        hint="pick another target, or group its values into fewer classes")
    return ["multiclass"], "multiclass", f"{tgt!r} is categorical with {n_classes} classes"


def _plan_task(inst: str, profile: DataProfile, tgt: str, df: Any, user: str | None, llm: Any) -> PlanField:
    allowed, default, why = _data_tasks(profile, tgt, df)
    if user is not None:
        if user not in TASKS:
            raise PlanError(f"task={user!r} is not one of {TASKS}", hint="use binary, multiclass or regression")
        if user not in allowed:
            raise PlanError(f"task={user!r} does not fit the target: {why}",
                            hint=f"use one of {allowed}" + (" or choose a numeric target" if user == "regression" else ""))
        return PlanField(user, "user", "given explicitly")
    norm = normalise_instruction(inst)
    wants_reg = bool(_REGRESS.search(norm))
    wants_cls = bool(_CLASSIFY.search(norm))
    if wants_reg and not wants_cls and "regression" not in allowed and re.search(r"\bregress", norm):
        raise PlanError(f"the instruction asks for regression, but {why}",
                        hint="choose a numeric target, or ask for classification")
    if wants_cls and not wants_reg and allowed == ["regression"] and re.search(r"\bclassif", norm):
        raise PlanError(f"the instruction asks for classification, but {why}",
                        hint="ask for regression, or bin the target into classes first")
    stated = None
    if wants_reg and not wants_cls and "regression" in allowed:
        stated = "regression"
    elif wants_cls and not wants_reg:
        stated = next((t for t in allowed if t != "regression"), None)
    choice = None
    if llm is not None:
        q = f"Task: {inst}\nTarget column: {tgt} ({profile[tgt].n_unique} distinct values, e.g. {profile[tgt].samples[:4]})\n\nWhat kind of machine-learning task is this?"
        choice = _safe_choose(llm, q, list(TASK_WORDS))
    info = choice.to_dict() if choice else None
    if len(allowed) == 1:
        src_reason = why
        if choice is not None:
            llm_task = TASK_WORDS[choice.best]
            if llm_task == allowed[0]:
                return PlanField(allowed[0], "llm", f"LLM chose {choice.best!r} (p={choice.p_best:.2f}); the data agrees: {why}", info)
            src_reason += f"; LLM said {choice.best!r} (p={choice.p_best:.2f}), which the data rules out"
        return PlanField(allowed[0], "heuristic", src_reason, info)
    if stated is not None:
        return PlanField(stated, "user", f"the instruction's wording asks for {stated}; {why}", info)
    if choice is not None and TASK_WORDS[choice.best] in allowed and choice.p_best >= 0.5:
        return PlanField(TASK_WORDS[choice.best], "llm", f"LLM chose {choice.best!r} (p={choice.p_best:.2f}); data allows {allowed}", info)
    return PlanField(default, "heuristic", f"{why}: treated as classes (say 'regression' to predict it as a number)", info)


def _plan_metric(inst: str, task: str, user: str | None) -> PlanField:
    allowed = METRICS[task]
    if user is not None:
        if user not in allowed:
            raise PlanError(f"metric={user!r} does not fit a {task} task", hint=f"use one of {list(allowed)}")
        return PlanField(user, "user", "given explicitly")
    norm = normalise_instruction(inst)
    for pattern, name in _METRIC_WORDS:
        if re.search(pattern, norm):
            if name in allowed:
                return PlanField(name, "user", f"the instruction asks for {name}")
            if name == "f1" and "f1_macro" in allowed:
                return PlanField("f1_macro", "user", "the instruction asks for F1 (macro-averaged for several classes)")
    return PlanField(DEFAULT_METRIC[task], "heuristic", f"default for {task}: " + {
        "binary": "ranking quality, insensitive to the class balance and threshold",
        "multiclass": "rewards calibrated probabilities over all classes",
        "regression": "root mean squared error, in the target's units"}[task])


def _plan_drop(inst: str, profile: DataProfile, tgt: str, user: Sequence[str] | None, llm: Any,
               stated: Sequence[str] = ()) -> PlanField:
    names = profile.names
    if user is not None:
        bad = [c for c in user if c not in names]
        if bad:
            raise PlanError(f"drop: column(s) {bad} are not in the data", hint=f"columns are {names[:40]}")
        return PlanField(sorted(set(user) - {tgt}), "user", "given explicitly")
    drops: dict[str, str] = {}
    for c in profile.columns:
        if c.name != tgt and c.kind in ("id", "constant"):
            drops[c.name] = f"{c.kind}: {c.reason}"
        elif c.name != tgt and c.missing >= 0.95:
            drops[c.name] = f"{c.missing:.0%} missing"
    stated = [c for c in stated if c != tgt]
    for c in stated:
        drops[c] = "the instruction says to leave it out"
    llm_info = None
    if llm is not None:
        # ask about high-cardinality columns the rules kept: codes, names, free identifiers
        asked = [c for c in profile.columns if c.name not in drops and c.name != tgt
                 and c.kind in ("categorical", "text") and c.n_unique >= 0.5 * min(profile.n_rows, 20000)][:10]
        llm_info = {}
        for c in asked:
            q = (f"Task: {inst}\nTarget: {tgt}\nColumn {c.name!r} ({c.kind}, {c.n_unique} distinct values, e.g. {c.samples[:3]}).\n\n"
                 "Is this column a row identifier that carries no information for predicting the target?")
            ch = _safe_choose(llm, q, ["yes", "no"])
            if ch is None:
                continue
            llm_info[c.name] = ch.to_dict()
            if ch.best == "yes" and ch.p_best >= 0.8:
                drops[c.name] = f"LLM: identifier (p={ch.p_best:.2f}); the data agrees: {c.n_unique} distinct values"
    cols = sorted(drops)
    source = "user" if stated else ("llm" if any(v.startswith("LLM") for v in drops.values()) else "heuristic")
    reason = "; ".join(f"{c}: {drops[c]}" for c in cols) or "no id, constant or empty columns"
    return PlanField(cols, source, reason + " (leakage is checked on the data during preparation)", llm_info or None)


def _plan_class_weight(task: str, metric: str, df: Any, tgt: str, user: str | None) -> PlanField:
    if user != "auto":
        if user not in (None, "balanced"):
            raise PlanError(f"class_weight={user!r} must be None or 'balanced'", hint="use class_weight='balanced' or None")
        return PlanField(user, "user", "given explicitly")
    if task == "regression":
        return PlanField(None, "heuristic", "not a classification task")
    shares = df[tgt].value_counts(normalize=True)
    minority = float(shares.min())
    if minority >= 0.2 / max(1, len(shares) - 1):
        return PlanField(None, "heuristic", f"classes are balanced enough (smallest class {minority:.1%})")
    if metric in ("roc_auc", "log_loss"):
        return PlanField(None, "heuristic", f"smallest class {minority:.1%}, but {metric} is threshold-free: weighting would only distort the probabilities")
    return PlanField("balanced", "heuristic", f"smallest class {minority:.1%} and {metric} depends on the decision threshold")


def _safe_choose(llm: Any, question: str, options: Sequence[str], content_free: str | None = None) -> Any:
    from ..errors import OpenAutoGLMError
    from .llm import PlanningTimeUp, choose

    try:
        return choose(llm, question, options, content_free=content_free)
    except PlanningTimeUp:  # counted by the backend; make_plan notes it once
        return None
    except (OpenAutoGLMError, RuntimeError, ValueError) as exc:  # the heuristic planner takes over
        import warnings

        warnings.warn(f"LLM planner failed ({type(exc).__name__}: {exc}); heuristic planner used", stacklevel=2)
        return None
