"""PII detection and redaction with validated patterns (no model, no network).

Structured types, each a regular expression for candidates plus a validator:

=============  =====================================================================
``email``      local@domain.tld (domain labels and a 2+ letter TLD)
``url``        http(s)/ftp URLs and ``www.`` hosts; trailing punctuation (also CJK) trimmed
``ip``         IPv4 and IPv6, validated with :mod:`ipaddress`
``cn_id``      Chinese resident ID (18 characters, plain or grouped 6-8-4, 6-4-4-4 or 4-4-4-4-2 by
               spaces/dashes): region code, a real birth date and the GB 11643 check character
               (ISO 7064 MOD 11-2)
``bank_card``  13–19 digits (plain or grouped by spaces/dashes), a known issuer prefix (IIN) and
               a valid Luhn check digit
``cn_mobile``  Chinese mobile numbers: 1[3-9]x xxxx xxxx, optional +86/0086
``phone``      other phone numbers: ``+<country>`` international formats (8–15 digits),
               North-American ``(xxx) xxx-xxxx``, Chinese landlines ``0xx-xxxxxxxx``
=============  =====================================================================

Person and organization names come from an optional NER backend: any callable
``ner(text) -> [(start, end, type), ...]`` (e.g. a spaCy or Open-AutoGLM pipeline wrapper).

All types but ``url`` are matched on text folded with NFKC where that gives ASCII letters, digits,
spaces or ``@.+-()`` (full-width digits ``１３８…``, the ideographic space, full-width ``＠``/``－``;
see :class:`FoldedText`), and the spans are mapped back to the original text, so offsets, values and
redaction always refer to the original characters.

Overlapping candidates are resolved by type priority (the order above) then length, so an
ID number is never also reported as a bank card or a phone number.  Finding is linear in the
text length and the number of matches (one regex scan per type, one pass to resolve overlaps).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import ipaddress
import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..errors import OpenAutoGLMError

PII_TYPES = ("email", "url", "ip", "cn_id", "bank_card", "cn_mobile", "phone")
REDACT_MODES = ("mask", "pseudonymize", "hash", "none")
NerFn = Callable[[str], Iterable[tuple[int, int, str]]]

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_PROVINCES = {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
                 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91}
#: issuer prefixes: Visa 4, Mastercard 51-55/2221-2720, Amex 34/37, Diners 30/36/38, JCB 35,
#: UnionPay 62/81, Discover 6011/644-649/65, Maestro 50/56-58/67
_IIN = re.compile(r"4|5[0-8]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[045678]|6[0-9]|81")
_URL_TRAIL = ".,;:!?)]}'\"，。；：！？、）】》」』"

_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,63})@"
                        r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![A-Za-z0-9])"),
    # a URL ends at whitespace, quotes, brackets or CJK text (raw CJK in URLs is rare; it is percent-encoded)
    "url": re.compile(r"(?i)(?<![A-Za-z0-9@])(?:(?:https?|ftp)://|www\.)"
                      r"[^\s<>\"'\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\u3000-\u303f]+"),
    "ip": re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]*\d)"
                     r"|(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])"),
    # plain, or grouped 6-8-4 / 6-4-4-4 / 4-4-4-4-2 with one kind of separator
    "cn_id": re.compile(r"(?<![0-9A-Za-z])(?:\d{17}|\d{6}([ -])\d{8}\1\d{3}|\d{6}([ -])\d{4}\2\d{4}\2\d{3}"
                        r"|\d{4}([ -])\d{4}\3\d{4}\3\d{4}\3\d)[\dXx](?![0-9A-Za-z])"),
    "bank_card": re.compile(r"(?<![\d-])(?:\d{4}[ -]){4}\d{3}(?!\d)|(?<![\d-])(?:\d{4}[ -]){3}\d{4}(?!\d)|(?<![\d-])\d{4}[ -]\d{6}[ -]\d{5}(?!\d)"
                            r"|(?<![\d-])\d{13,19}(?!\d)"),
    "cn_mobile": re.compile(r"(?<![\d+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)"),
    "phone": re.compile(r"(?<![\d+])(?<!\d[ .-])(?:\+|00)[1-9]\d{0,2}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,5}(?:[ .-]?\d{2,5}){1,4}(?!\d)"
                        r"|(?<!\d)\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}(?!\d)"
                        r"|(?<![\d-])\d{3}-\d{3}-\d{4}(?![\d-])"
                        r"|(?<![\d-])0\d{2,3}-\d{7,8}(?![\d-])"),
}


@dataclass(frozen=True)
class PIIMatch:
    """One detected span: ``text[start:end]`` is the value."""

    type: str
    start: int
    end: int
    value: str
    source: str = "pattern"


# -- validators ---------------------------------------------------------------------------
def cn_id_valid(value: str) -> bool:
    """A Chinese resident ID number: province code, real birth date, MOD 11-2 check character."""
    value = value.upper()
    if len(value) != 18 or not value[:17].isdigit() or value[17] not in "0123456789X":
        return False
    if int(value[:2]) not in _ID_PROVINCES:
        return False
    try:
        born = _dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if not (_dt.date(1900, 1, 1) <= born <= _dt.date.today()):
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS))
    return _ID_CHECK[total % 11] == value[17]


def cn_id_check_char(first17: str) -> str:
    """The check character for the first 17 digits of a resident ID."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS)) % 11]


def luhn_valid(digits: str) -> bool:
    """Luhn (mod 10) check over a string of digits."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` Luhn-valid."""
    for d in "0123456789":
        if luhn_valid(partial + d):
            return d
    raise AssertionError("unreachable")  # pragma: no cover


_SEPARATORS = re.compile(r"[ -]")


def _bank_card_valid(value: str) -> bool:
    digits = _SEPARATORS.sub("", value)
    if not 13 <= len(digits) <= 19 or not _IIN.match(digits):
        return False
    if len(set(digits)) == 1:  # 0000 0000 … — a placeholder, not a card
        return False
    return luhn_valid(digits)


def _ip_valid(value: str) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    if address.version == 6:
        return value.count(":") >= 2 and any(c.isalnum() for c in value)
    return True


def _phone_valid(value: str) -> bool:
    digits = re.sub(r"\D", "", value)
    return 8 <= len(digits) <= 15


def _url_trim(value: str) -> str:
    """Drop trailing punctuation, keeping a ``)`` that closes a ``(`` inside the URL (one pass)."""
    end, opens, closes = len(value), value.count("("), value.count(")")
    while end and value[end - 1] in _URL_TRAIL:
        if value[end - 1] == ")":
            if opens >= closes:
                break
            closes -= 1
        end -= 1
    return value[:end]


#: words right before a candidate that say it is not PII of that type (a version, an order number)
_NEGATIVE_CONTEXT: dict[str, re.Pattern[str]] = {
    "ip": re.compile(r"(?i)(?:\bversion|\bver\.?|\bv|版本号?|build)\s*[:：#]?\s*$"),
    "bank_card": re.compile(r"(?i)(?:\border|\btracking|\binvoice|订单|运单|快递单|发票)\s*(?:no\.?|number|#|id|号码?|编号)?\s*[:：#]?\s*$"),
}


def _negative_context(kind: str, text: str, start: int) -> bool:
    pattern = _NEGATIVE_CONTEXT.get(kind)
    return bool(pattern and pattern.search(text[max(0, start - 20):start]))


_VALIDATORS: dict[str, Callable[[str], bool]] = {
    "email": lambda v: ".." not in v and len(v) <= 254,
    "url": lambda v: len(v) > 7,
    "ip": _ip_valid,
    "cn_id": lambda v: cn_id_valid(_SEPARATORS.sub("", v)),
    "bank_card": _bank_card_valid,
    "cn_mobile": lambda v: len(re.sub(r"\D", "", v)) in (11, 13, 15),
    "phone": _phone_valid,
}


#: spaCy entity labels → our PII types (person and organisation names)
SPACY_TYPES = {"PERSON": "person", "PER": "person", "ORG": "org"}


def spacy_ner(nlp: Any, types: Mapping[str, str] | None = None) -> NerFn:
    """An NER callable for :class:`PIIDetector` from a spaCy pipeline (an object or a package name).

    ``spacy_ner("en_core_web_sm")`` loads an installed model (spaCy is not a dependency of
    Open-AutoGLM; install it and a model yourself).  Entities whose label is in ``types``
    (default: PERSON/PER → ``person``, ORG → ``org``) become matches.
    """
    if isinstance(nlp, str):
        try:
            import spacy
        except ImportError:
            raise OpenAutoGLMError("spaCy is not installed", hint="pip install spacy and a model, "
                                   "e.g. python -m spacy download en_core_web_sm") from None
        nlp = spacy.load(nlp)
    mapping = dict(types or SPACY_TYPES)

    def ner(text: str) -> list[tuple[int, int, str]]:
        return [(e.start_char, e.end_char, mapping[e.label_]) for e in nlp(text).ents if e.label_ in mapping]

    return ner


_DIGIT = re.compile(r"\d")


def _may_contain(kind: str, text: str, has_digit: bool) -> bool:
    """Cheap pre-checks that skip a type's regular expression on most texts."""
    if kind == "email":
        return "@" in text
    if kind == "url":
        return "://" in text or "www." in text or "WWW." in text
    if kind == "ip":
        return ("." in text and has_digit) or "::" in text or text.count(":") >= 2
    return has_digit


#: runs of characters NFKC may change: everything but ASCII, CJK ideographs and Hangul syllables
_MAY_CHANGE = re.compile(r"[^\x00-\x7f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7a3]+")
#: NFKC forms worth folding: what numbers, e-mails and their separators are made of.  Other
#: punctuation keeps its full-width form: a folded ``：`` would glue ``地址：2001:db8::1`` into one
#: IPv6 candidate, a folded ``，`` would end up inside candidates
_FOLDABLE = re.compile(r"[0-9A-Za-z\s@.+\-()]+")
#: types matched on the original text: a URL may contain ``(`` and ``)``, so ``http://a.cn（tel）``
#: would swallow ``（tel）``
_ORIGINAL_TEXT_TYPES = frozenset({"url"})


@dataclass(slots=True)
class FoldedText:
    """``original`` with characters folded to their NFKC form, with offsets mapped back to it.

    A character is folded when its NFKC form is made of ASCII letters, digits, whitespace or
    ``@ . + - ( )`` (full-width ``１３８``, ``＠``, ``－``, the ideographic space, NBSP, ``①``, ``ﬁ`` …).
    Only the folded characters are recorded (``norm_pos``: where the form starts in ``text``,
    ``orig_pos``: the character's index in ``original``, ``width``: the form's length); between
    them the two texts differ by a constant shift, so mapping an offset is a binary search.
    """

    original: str
    text: str
    norm_pos: tuple[int, ...] = ()
    orig_pos: tuple[int, ...] = ()
    width: tuple[int, ...] = ()

    @classmethod
    def of(cls, original: str) -> "FoldedText":
        """Fold ``original`` character by character (linear; ASCII and CJK text are skipped)."""
        if original.isascii() or unicodedata.is_normalized("NFKC", original):
            return cls(original, original)
        parts: list[str] = []
        norm_pos: list[int] = []
        orig_pos: list[int] = []
        width: list[int] = []
        last = shift = 0
        for run in _MAY_CHANGE.finditer(original):
            if unicodedata.is_normalized("NFKC", run.group()):
                continue
            for i in range(run.start(), run.end()):
                form = unicodedata.normalize("NFKC", original[i])
                if form == original[i] or not _FOLDABLE.fullmatch(form):
                    continue
                parts += [original[last:i], form]
                norm_pos.append(i + shift)
                orig_pos.append(i)
                width.append(len(form))
                shift += len(form) - 1
                last = i + 1
        if not parts:
            return cls(original, original)
        parts.append(original[last:])
        return cls(original, "".join(parts), tuple(norm_pos), tuple(orig_pos), tuple(width))

    def start(self, pos: int) -> int:
        """The original offset where a span starting at ``pos`` in :attr:`text` starts."""
        k = bisect_right(self.norm_pos, pos) - 1
        if k < 0:
            return pos
        inside = pos < self.norm_pos[k] + self.width[k]
        return self.orig_pos[k] if inside else self.orig_pos[k] + 1 + pos - self.norm_pos[k] - self.width[k]

    def end(self, pos: int) -> int:
        """The original offset where a span ending at ``pos`` in :attr:`text` ends."""
        k = bisect_left(self.norm_pos, pos) - 1
        if k < 0:
            return pos
        return self.orig_pos[k] + 1 + max(0, pos - self.norm_pos[k] - self.width[k])


def _add_candidates(out: list[tuple[int, PIIMatch]], priority: int, kind: str, folded: FoldedText,
                    has_digit: bool) -> None:
    """Append the validated matches of one type, with offsets and values in the original text."""
    original = kind in _ORIGINAL_TEXT_TYPES or not folded.norm_pos
    scanned = folded.original if original else folded.text
    if not _may_contain(kind, scanned, has_digit):
        return
    validate = _VALIDATORS[kind]
    for m in _PATTERNS[kind].finditer(scanned):
        value = _url_trim(m.group()) if kind == "url" else m.group()
        if not value or not validate(value) or _negative_context(kind, scanned, m.start()):
            continue
        start, end = m.start(), m.start() + len(value)
        if not original:
            start, end = folded.start(start), folded.end(end)
            value = folded.original[start:end]
        out.append((priority, PIIMatch(kind, start, end, value)))


def resolve_overlaps(candidates: Iterable[tuple[int, PIIMatch]], length: int) -> list[PIIMatch]:
    """Non-overlapping matches in text order: lower priority number first, then longer, then earlier.

    A byte per character of the text marks what is taken, so a candidate costs its own length
    (not a comparison with every match taken so far, which was quadratic in the matches).
    """
    ranked = sorted(candidates, key=lambda c: (c[0], c[1].start - c[1].end, c[1].start))
    if len(ranked) == 1:
        return [ranked[0][1]]
    taken = bytearray(length)
    kept: list[PIIMatch] = []
    for _, match in ranked:
        start, end = match.start, match.end
        if taken.find(1, start, end) < 0:
            taken[start:end] = b"\x01" * (end - start)
            kept.append(match)
    kept.sort(key=lambda m: m.start)
    return kept


class PIIDetector:
    """Find, count and redact PII in text.

    >>> det = PIIDetector()
    >>> det.redact("call 13812345678 or mail a.b@example.com")
    'call [CN_MOBILE] or mail [EMAIL]'

    ``types``: the structured types to look for (default: all of :data:`PII_TYPES`);
    ``ner``: optional callable giving ``(start, end, type)`` spans for names (``person``,
    ``org`` …); ``salt``: key of the HMAC behind pseudonyms, so the same value gets the same
    pseudonym within a project but cannot be reversed without the salt.
    """

    def __init__(self, types: Sequence[str] | None = None, *, ner: NerFn | None = None,
                 salt: str = "openautoglm") -> None:
        chosen = list(types) if types else list(PII_TYPES)
        unknown = [t for t in chosen if t not in PII_TYPES]
        if unknown:
            raise OpenAutoGLMError(f"unknown PII type(s) {', '.join(unknown)}",
                                   hint=f"choose from: {', '.join(PII_TYPES)}")
        self.types = [t for t in PII_TYPES if t in chosen]
        self.ner = ner
        self.salt = salt

    def find(self, text: str) -> list[PIIMatch]:
        """Non-overlapping matches, in text order (offsets and values in ``text``)."""
        if not text:
            return []
        folded = FoldedText.of(text)
        has_digit = _DIGIT.search(folded.text) is not None
        candidates: list[tuple[int, PIIMatch]] = []
        for priority, kind in enumerate(self.types):
            _add_candidates(candidates, priority, kind, folded, has_digit)
        if self.ner is not None:
            for start, end, kind in self.ner(text):
                if 0 <= start < end <= len(text):
                    candidates.append((len(self.types), PIIMatch(str(kind), start, end, text[start:end], "ner")))
        return resolve_overlaps(candidates, len(text)) if candidates else []

    def count(self, text: str) -> Counter[str]:
        """Matches per type."""
        return Counter(m.type for m in self.find(text))

    def pseudonym(self, kind: str, value: str) -> str:
        digest = hmac.new(self.salt.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:10]
        return f"[{kind.upper()}_{digest}]"

    def replacement(self, match: PIIMatch, mode: str) -> str:
        if mode == "mask":
            return f"[{match.type.upper()}]"
        if mode == "pseudonymize":
            return self.pseudonym(match.type, match.value)
        if mode == "hash":
            return hashlib.sha256(match.value.encode()).hexdigest()[:16]
        if mode == "none":
            return match.value
        raise OpenAutoGLMError(f"unknown redaction mode {mode!r}", hint=f"use one of: {', '.join(REDACT_MODES)}")

    def redact_with_matches(self, text: str, mode: str = "mask") -> tuple[str, list[PIIMatch]]:
        """The redacted text and the matches that were replaced."""
        matches = self.find(text)
        if not matches:
            return text, []
        parts, last = [], 0
        for m in matches:
            parts += [text[last:m.start], self.replacement(m, mode)]
            last = m.end
        parts.append(text[last:])
        return "".join(parts), matches

    def redact(self, text: str, mode: str = "mask") -> str:
        """Replace each match by ``[TYPE]`` (mask), ``[TYPE_<hmac>]`` (pseudonymize) or a hash."""
        return self.redact_with_matches(text, mode)[0]
