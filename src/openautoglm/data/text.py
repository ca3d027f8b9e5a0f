"""Text repairs and checks: Unicode normalization, mojibake, control characters, mixed scripts.

All functions are pure ``str -> str`` (or ``str -> bool/list``) and cheap; no third-party imports.

* :func:`fix_mojibake` undoes the two common double-decodings: UTF-8 bytes read as
  cp1252/latin-1 (``cafÃ©`` → ``café``) and UTF-8 bytes read as GBK (``鎴戜滑`` → ``我们``).
  A repair is kept only when the round trip decodes strictly and the result looks cleaner.
* :func:`clean_whitespace` removes control and zero-width characters and collapses runs
  of whitespace.
* :func:`mixed_script_words` finds words mixing Latin, Cyrillic and Greek letters (homoglyph
  spoofing such as a Cyrillic ``а`` inside an English word).
"""

from __future__ import annotations

import re
import unicodedata

NORMAL_FORMS = ("NFC", "NFKC", "NFD", "NFKD", "none")
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
# control characters (Unicode category Cc) except tab/newline/CR, and zero-width/soft-hyphen characters
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_WS = re.compile(r"\s+")
# characters typical of UTF-8 read as cp1252/latin-1: Ã, Â, â followed by a latin-1 supplement / cp1252 symbol
_LATIN_MOJIBAKE = re.compile("[ÃÂâÅÆÐÑ][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc"
                             "\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]")
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


def _badness(text: str) -> int:
    """How mojibake-like a string looks: latin mojibake pairs, private-use and replacement chars."""
    return (len(_LATIN_MOJIBAKE.findall(text)) * 2 + text.count("\ufffd")
            + sum(1 for ch in text if unicodedata.category(ch) in ("Co", "Cc") and ch not in "\t\n\r"))


def fix_mojibake(text: str) -> str:
    """Undo UTF-8-read-as-cp1252/latin-1 and UTF-8-read-as-GBK; return ``text`` unchanged if unsure."""
    if not text or text.isascii():
        return text
    if _LATIN_MOJIBAKE.search(text):
        try:
            fixed = _cp1252_bytes(text).decode("utf-8")
        except UnicodeError:
            fixed = text
        if _badness(fixed) < _badness(text):
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


def _cp1252_bytes(text: str) -> bytes:
    """Encode as cp1252, falling back to latin-1 for the five bytes cp1252 leaves undefined."""
    out = bytearray()
    for ch in text:
        try:
            out += ch.encode("cp1252")
        except UnicodeEncodeError:
            if ord(ch) > 255:
                raise
            out.append(ord(ch))
    return bytes(out)


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
