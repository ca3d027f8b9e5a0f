"""Built-in, versioned task presets (``sentiment.v1``, ``topic.v1``, ...), as spacy-llm registers tasks.

>>> Task(name="sentiment_analysis", template="判断以下句子的情感倾向：{text}").labels
['正面', '负面']

A preset is data: for each language (``zh``, ``en``) the task fields it supplies (a
template, labels or a schema, the output kind), plus the rules that match it.  A task
takes a preset in one of three ways, tried in this order:

1. ``preset: sentiment.v1`` names it (``preset: sentiment`` takes the newest version);
2. the task's ``name`` matches one of the preset's globs (``sentiment*``, ``情感*``...);
3. its template contains one of the preset's phrases (``情感倾向``, ``sentiment``...).

Rules 2 and 3 apply only to a task that gives no output spec (no ``labels``, ``schema``
or ``output``), so ``output: text`` keeps free text; rule 1 fills only the fields a task
leaves out.  The language is the task's ``language`` if set, else ``zh`` when the
template (or, with no template, the name) has at least as many CJK characters as Latin
words, else ``en``.  The resolved task records ``preset``, ``language`` and a
``description`` saying what the preset supplied, so it re-loads to the same task.

A preset variant may also name a label head shipped with the package (``head:
{shipped: NAME}``, see :mod:`.head`): ``sentiment.v1``'s Chinese task takes a linear probe
of ``local:gemma3-270m`` fitted on ChnSentiCorp *train* rows, when the preset supplies its
labels, the task keeps the preset's template and the direct strategy and sets no ``head``
of its own (``head=None`` opts out).  It answers on that model only; elsewhere the label
scores do, and ``method`` ends ``+head-skipped(...)``.

A task with no output spec that matches no preset but whose template asks for a
judgement (``判断``, ``classify``...) warns (:class:`NoLabelsWarning`) rather than silently
generating free text.

Third-party packages add presets through the entry-point group
``openautoglm.task_presets`` (an object: a :class:`TaskPreset` or a dict of its fields).
"""

from __future__ import annotations

import re
import sys
import warnings
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Mapping

from ..errors import ConfigError
from .plugins import Registry

LANGUAGES = ("zh", "en")
#: fields that make up a task's output spec (a task with one of them matches no preset automatically)
OUTPUT_SPEC = ("labels", "schema", "schema_", "output")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]+")
_PLACEHOLDER = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{[^{}]*\}", re.S)
#: a template asking for a judgement (warned about when it has no labels and matches no preset)
JUDGEMENT = re.compile(
    r"判断|分类|类别|属于哪|是否|是不是|打分|评分|哪一?[个类种项]|"
    r"\b(classify|classification|categori[sz]e|category|categories|label|judge|decide|determine whether|"
    r"yes or no|true or false|which of|rate)\b", re.I)


class NoLabelsWarning(UserWarning):
    """A task asks for a judgement but has no labels, so it will generate free text."""


@dataclass(frozen=True)
class TaskPreset:
    """A named, versioned task: per language, the task fields it supplies; and how it is matched."""

    name: str
    summary: str
    variants: Mapping[str, Mapping[str, Any]]
    #: globs on the task name (case-insensitive) that select this preset
    names: tuple[str, ...] = ()
    #: regexes on the template (case-insensitive, ``{variables}`` removed) that select it
    phrases: tuple[str, ...] = ()
    #: the answer cue per language (``Sentiment:``), for backends that use a plain-text prompt
    cues: Mapping[str, str] = field(default_factory=dict)

    def variant(self, language: str) -> Mapping[str, Any]:
        """The fields for ``language`` (the English ones when the preset lacks it)."""
        return self.variants.get(language) or self.variants.get("en") or next(iter(self.variants.values()))

    def labels(self, language: str) -> list[str] | None:
        found = self.variant(language).get("labels")
        return list(found) if found is not None else None

    def matches_name(self, name: str) -> bool:
        return any(fnmatchcase(name.lower(), glob.lower()) for glob in self.names)

    def matches_template(self, template: str) -> str | None:
        """The phrase of ``template`` that selects this preset, or None."""
        text = _PLACEHOLDER.sub(" ", template)
        for phrase in self.phrases:
            found = re.search(phrase, text, re.I)
            if found:
                return found.group(0)
        return None


PRESETS: Registry[TaskPreset] = Registry("task preset", "openautoglm.task_presets")


def _builtin(preset: TaskPreset) -> TaskPreset:
    return PRESETS.register(preset.name)(preset)


_ENTITIES = {"en": ["PERSON", "ORGANIZATION", "LOCATION", "MISC"], "zh": ["人名", "机构", "地名", "其他"]}


def _ner_schema(types: list[str]) -> dict[str, Any]:
    entity = {"type": "object", "properties": {"text": {"type": "string"}, "type": {"enum": types}},
              "required": ["text", "type"]}
    return {"type": "object", "properties": {"entities": {"type": "array", "items": entity}},
            "required": ["entities"]}


BUILTIN = tuple(_builtin(p) for p in (
    TaskPreset(
        "sentiment.v1", "sentiment polarity (positive / negative)",
        {"zh": {"template": "判断以下句子的情感倾向：{text}", "labels": ["正面", "负面"], "output": "labels",
                # a linear probe of local:gemma3-270m fitted on ChnSentiCorp train rows (core/heads/)
                "head": {"shipped": "sentiment.v1.zh.gemma3-270m"}},
         "en": {"template": "What is the sentiment of this text?\n{text}", "labels": ["positive", "negative"],
                "output": "labels"}},
        names=("sentiment*", "*_sentiment", "情感*", "情绪*"),
        phrases=(r"情感", r"褒贬", r"正面还是负面", r"积极还是消极", r"\bsentiment\b", r"positive or negative"),
        cues={"zh": "情感：", "en": "Sentiment:"}),
    TaskPreset(
        "topic.v1", "news topic (politics, sports, business, technology, entertainment)",
        {"zh": {"template": "判断以下新闻属于哪个主题：{text}", "labels": ["时政", "体育", "财经", "科技", "娱乐"],
                "output": "labels"},
         "en": {"template": "Which topic is this news text about?\n{text}",
                "labels": ["politics", "sports", "business", "technology", "entertainment"], "output": "labels"}},
        names=("topic*", "news_topic*", "news_categor*", "主题*", "新闻分类*"),
        phrases=(r"主题", r"新闻(分类|类别)", r"\b(what|which) topic\b", r"\btopic of\b", r"\bnews categor"),
        cues={"zh": "主题：", "en": "Topic:"}),
    TaskPreset(
        "ner.v1", "named entities as JSON: {entities: [{text, type}]}",
        {lang: {"template": t, "schema": _ner_schema(_ENTITIES[lang]), "output": "json"} for lang, t in (
            ("zh", "找出以下文本中的命名实体（人名、机构、地名、其他）：{text}"),
            ("en", "Extract the named entities (person, organization, location, misc) from this text:\n{text}"))},
        names=("ner", "ner_*", "*_ner", "named_entit*", "命名实体*", "实体识别*"),
        phrases=(r"命名实体", r"实体识别", r"named entit", r"\bextract (the |all )?entities\b")),
    TaskPreset(
        "summarize.v1", "a short summary (free text)",
        {"zh": {"template": "用一两句话概括以下内容：{text}", "output": "text"},
         "en": {"template": "Summarize the following text in one or two sentences:\n{text}", "output": "text"}}),
    TaskPreset(
        "translate.v1", "translation into the template's language (free text)",
        {"zh": {"template": "将以下文本翻译成中文：{text}", "output": "text"},
         "en": {"template": "Translate the following text into English:\n{text}", "output": "text"}}),
    TaskPreset(
        "qa.v1", "an answer to a question about a context (free text)",
        {"zh": {"template": "根据以下内容回答问题。\n内容：{context}\n问题：{question}", "output": "text"},
         "en": {"template": "Answer the question from the context.\nContext: {context}\nQuestion: {question}",
                "output": "text"}}),
))


# -- lookup ------------------------------------------------------------------------------
def get_preset(name: str) -> TaskPreset:
    """The preset ``name`` (``sentiment.v1``; ``sentiment`` takes the newest version)."""
    if not re.search(r"\.v\d+$", name):
        versions = [n for n in PRESETS.names() if re.fullmatch(re.escape(name) + r"\.v\d+", n)]
        if versions:
            name = max(versions, key=lambda n: int(n.rsplit(".v", 1)[1]))
    found = PRESETS.get(name)
    if isinstance(found, Mapping):  # a plug-in may declare a plain dict
        found = TaskPreset(**{"name": name, **found})
    if not isinstance(found, TaskPreset):
        raise ConfigError(f"task preset {name!r} is a {type(found).__name__}, not a TaskPreset")
    return found


def preset_names() -> list[str]:
    """Every preset's name, built-in ones first."""
    builtin = [p.name for p in BUILTIN]
    return builtin + [n for n in PRESETS.names() if n not in builtin]


def _candidates() -> Any:
    """Presets in matching order: built-ins, then plug-ins by name (loaded only if needed)."""
    yield from BUILTIN
    for name in preset_names()[len(BUILTIN):]:
        yield get_preset(name)


def language_of(text: str) -> str:
    """``zh`` when ``text`` (``{variables}`` removed) has at least as many CJK characters as Latin words."""
    text = _PLACEHOLDER.sub(" ", text)
    cjk = len(_CJK.findall(text))
    return "zh" if cjk and cjk >= len(_LATIN_WORD.findall(text)) else "en"


def match(name: str | None, template: str | None) -> tuple[TaskPreset, str] | None:
    """The preset a task with no output spec takes, and why (rules 2 and 3 above)."""
    if name:
        for preset in _candidates():
            if preset.matches_name(name):
                return preset, f"the task name {name!r}"
    if template:
        for preset in _candidates():
            phrase = preset.matches_template(template)
            if phrase:
                return preset, f"the template's {phrase!r}"
    return None


# -- resolution (Task's "before" validator) -------------------------------------------------
def resolve(data: dict[str, Any]) -> dict[str, Any]:
    """A task's raw fields with its preset applied (see the module docstring); may warn."""
    template = data.get("template", data.get("prompt_template"))
    has_spec = any(data.get(key) is not None for key in OUTPUT_SPEC)
    name = data.get("preset")
    if name is not None:
        preset, why = get_preset(str(name)), "the task's `preset` field"
    elif has_spec:
        return data
    else:
        found = match(data.get("name"), template if isinstance(template, str) else None)
        if found is None:
            _warn_if_judgement(data.get("name", "task"), template)
            return data
        preset, why = found
    language = data.get("language") or language_of(template if isinstance(template, str) else
                                                   str(data.get("name") or ""))
    variant = preset.variant(language)
    supplied = {k: v for k, v in variant.items() if k not in ("template", "head") and not has_spec}
    if template is None:
        supplied["template"] = variant["template"]
    if _takes_head(data, variant, has_spec, supplied.get("template", template)):
        supplied["head"] = dict(variant["head"])
    out = {**data, **supplied, "preset": preset.name, "language": language}
    if out.get("description") is None:
        out["description"] = describe(preset, language, supplied, why)
    return out


def _takes_head(data: Mapping[str, Any], variant: Mapping[str, Any], has_spec: bool, template: Any) -> bool:
    """Whether a task takes its preset's shipped label head: the preset supplies its labels (the
    task gives no output spec), the task sets no ``head`` of its own (``head=None`` opts out),
    runs the direct strategy, and its template is the one the head was fitted with."""
    if "head" not in variant or has_spec or "head" in data or template != variant.get("template"):
        return False
    strategy = data.get("strategy")
    name = (strategy.get("name", "direct") if isinstance(strategy, Mapping) else
            getattr(strategy, "name", strategy) if strategy is not None else "direct")
    return name == "direct"


def describe(preset: TaskPreset, language: str, supplied: Mapping[str, Any], why: str) -> str:
    """One line: which preset, in which language, what it supplied and why it applied."""
    what = [f"labels {'/'.join(supplied['labels'])}" if supplied.get("labels") else
            "a JSON schema" if supplied.get("schema") else
            f"output {supplied['output']}" if supplied.get("output") else "",
            "the template" if "template" in supplied else "",
            _describe_head(supplied["head"]) if supplied.get("head") else ""]
    return (f"preset {preset.name} ({language}): {preset.summary}; supplied "
            f"{' and '.join(w for w in what if w) or 'nothing (the task sets its own)'}; matched by {why}")


def _describe_head(head: Mapping[str, Any]) -> str:
    """``the shipped label head NAME (... ; used on local:gemma3-270m only)``."""
    from .head import describe_fit, read_shipped

    data = read_shipped(str(head["shipped"]))
    return (f"the shipped label head {data['name']} (a linear probe of {data['model']}'s hidden states, "
            f"{describe_fit(data['fit'])}; used on that model only)")


def _warn_if_judgement(name: Any, template: Any) -> None:
    if not isinstance(template, str):
        return
    found = JUDGEMENT.search(_PLACEHOLDER.sub(" ", template))
    if found:
        warnings.warn(
            f"task {name!r}: the template asks for a judgement ({found.group(0)!r}) but the task has no labels "
            f"and matches no preset, so it will generate free text. Give labels=[...], a preset "
            f"(preset='sentiment.v1'; known: {', '.join(preset_names())}), or output='text' to keep free text.",
            NoLabelsWarning, stacklevel=_user_stacklevel())


def _user_stacklevel() -> int:
    """The stack level of the first frame outside openautoglm and pydantic (the user's call)."""
    frame, level = sys._getframe(1), 1
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(("openautoglm", "pydantic")):
            return level
        frame, level = frame.f_back, level + 1
    return 1
