"""Masking secrets in what is shown, printed or stored: trace parameters, backend
descriptions, run errors, the model string in the CLI banner and the server's start-up line.

Two rules: a mapping value whose key names a secret (``api_key``, ``authorization``,
``password``, ``*_token`` ...) is replaced; in any text, secret-looking pieces (``Bearer
...``, ``sk-...``/``oag-...`` keys, ``api_key=...``, a password in a URL) are replaced.
Prompts and responses are user data and are shown as they are.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

#: mapping keys whose values are secrets (``max_tokens``/``prompt_tokens`` are not: plural)
SECRET_KEY = re.compile(
    r"(api[_-]?key|apikey|authorization|password|passwd|secret|cookie|credential|private[_-]?key"
    r"|(^|[_-])token$)",
    re.IGNORECASE,
)
#: secret-looking pieces of free text: (pattern, replacement)
SECRET_TEXT: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + MASK),
    (re.compile(r"\b(sk|oag|hf|ghp|gho|ghs|github_pat|xox[abps])[-_][A-Za-z0-9_-]{6,}"), r"\1-" + MASK),
    (re.compile(r"(?i)\b((?:api[_-]?key|apikey|access[_-]?token|auth[_-]?token|secret|password|passwd)"
                r"[\"']?\s*[=:]\s*[\"']?)[^\s&,;'\"}]+"), r"\1" + MASK),
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@"), r"\1" + MASK + "@"),
)


def mask_text(text: str) -> str:
    """``text`` with secret-looking pieces replaced by ``***``."""
    for pattern, replacement in SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def is_secret_key(key: object) -> bool:
    """Whether a mapping key names a secret (``api_key_env``/``api_key_set`` name or flag one: no)."""
    return isinstance(key, str) and bool(SECRET_KEY.search(key)) and not key.lower().endswith(("_env", "_set"))


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` (JSON-like data) with secret values and secret-looking text masked."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: MASK if is_secret_key(k) and isinstance(v, str) and v else mask_secrets(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_secrets(v) for v in value]
    return value
