"""Text repairs and checks: Unicode normalization, mojibake, control characters, mixed scripts.

All functions are pure ``str -> str`` (or ``str -> bool/list``) and cheap.

* :func:`fix_mojibake` undoes UTF-8 read as a single-byte encoding (cp1252, latin-1,
  MacRoman…; ``cafÃ©`` → ``café``, also twice over) with ftfy's ``fix_encoding``, and UTF-8
  bytes read as GBK (``鎴戜滑`` → ``我们``), which ftfy does not cover, by a strict round trip
  kept only when it shortens the text.
* :func:`clean_whitespace` removes control and zero-width characters and collapses runs
  of whitespace.
* :func:`mixed_script_words` finds words mixing Latin, Cyrillic and Greek letters (homoglyph
  spoofing such as a Cyrillic ``а`` inside an English word).
"""

from __future__ import annotations

import re
import unicodedata

from ..errors import OpenAutoGLMError

NORMAL_FORMS = ("NFC", "NFKC", "NFD", "NFKD", "none")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
# control characters (Unicode category Cc) except tab/newline/CR, and zero-width/soft-hyphen characters
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK")


def normalize_unicode(text: str, form: str = "NFC") -> str:
    """Unicode normalization (``NFKC`` also folds full-width letters/digits and ligatures)."""
    if form == "none":
        return text
    if form not in NORMAL_FORMS:
        raise ValueError(f"unknown normal form {form!r}; use one of {NORMAL_FORMS}")
    return unicodedata.normalize(form, text)


def _cjk_count(text: str) -> int:
    return sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")


def fix_mojibake(text: str) -> str:
    """Undo UTF-8-read-as-cp1252/latin-1 (ftfy) and UTF-8-read-as-GBK; return ``text`` unchanged if unsure."""
    if not text or text.isascii():
        return text
    try:
        import ftfy
    except ImportError:  # pragma: no cover - ftfy is in the data extra
        raise OpenAutoGLMError("repairing mojibake needs ftfy", hint="pip install 'openautoglm[data]'") from None
    fixed = ftfy.fix_encoding(text)
    if fixed != text:
        return fixed
    if _cjk_count(text) >= 2:
        for encoding in ("gbk", "gb18030"):
            try:
                fixed = text.encode(encoding).decode("utf-8")
            except UnicodeError:
                continue
            # genuine Chinese almost never round-trips as valid UTF-8; a repair is shorter
            if fixed != text and len(fixed) < len(text) and _cjk_count(fixed) >= 1:
                return fixed
    return text


def looks_mojibake(text: str) -> bool:
    """True when :func:`fix_mojibake` would change the text."""
    return fix_mojibake(text) != text


def control_chars(text: str) -> int:
    """Number of control (except tab/newline/CR), zero-width and soft-hyphen characters."""
    return len(_INVISIBLE.findall(text))


def clean_whitespace(text: str) -> str:
    """Drop control/zero-width characters, turn any whitespace run into one space, strip."""
    text = _CONTROL.sub(" ", text.translate(_ZERO_WIDTH))
    return _WS.sub(" ", text).strip()


def _script(ch: str) -> str | None:
    if not ch.isalpha():
        return None
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return None
    head = name.split(" ", 1)[0]
    return head if head in _SCRIPTS else None


def mixed_script_words(text: str) -> list[str]:
    """Words whose letters come from more than one of Latin, Cyrillic and Greek."""
    found = []
    for word in _WORD.findall(text):
        if word.isascii():
            continue
        scripts = {s for s in map(_script, word) if s}
        if len(scripts) > 1:
            found.append(word)
    return found
