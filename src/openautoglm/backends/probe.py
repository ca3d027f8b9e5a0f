"""Is an OpenAI-compatible endpoint answering?  ``openautoglm models --check``.

One short ``GET <base_url>/models`` per endpoint, all endpoints at once, each within
``timeout`` seconds: a server that answers at all (even 401) is reachable; a refused
connection, a timeout or an unknown host is not.  The API key, when one is configured,
goes in the ``Authorization`` header and nowhere else.  Nothing here runs unless asked:
``openautoglm models`` without ``--check`` only reads the environment.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable

#: seconds one probe may take (connect + answer) unless told otherwise
DEFAULT_TIMEOUT = 1.0


@dataclass(frozen=True)
class Probe:
    """What one ``GET <base_url>/models`` found."""

    reachable: bool
    detail: str


def probe_endpoint(base_url: str, *, api_key: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> Probe:
    """Ask ``<base_url>/models`` once, within ``timeout`` seconds."""
    import httpx

    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout, follow_redirects=False)
    except httpx.TimeoutException:
        return Probe(False, f"no answer from {base_url} within {timeout:g} s")
    except httpx.ConnectError as exc:
        return Probe(False, f"nothing answers at {base_url} ({_reason(exc)})")
    except httpx.HTTPError as exc:
        return Probe(False, f"{base_url}: {type(exc).__name__}: {_reason(exc)}")
    if response.status_code == 200:
        return Probe(True, f"answers at {base_url}{_models(response)}")
    if response.status_code in (401, 403):
        return Probe(True, f"answers at {base_url}, but refuses the key (HTTP {response.status_code})")
    return Probe(True, f"answers at {base_url} with HTTP {response.status_code} to GET /models")


def probe_all(targets: Iterable[tuple[str, str | None]], *, timeout: float = DEFAULT_TIMEOUT) -> list[Probe]:
    """Probe ``(base_url, api_key)`` pairs concurrently; results in the same order."""
    targets = list(targets)
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        return list(pool.map(lambda t: probe_endpoint(t[0], api_key=t[1], timeout=timeout), targets))


def _models(response: Any) -> str:
    """``: llama3, qwen2 (+3)`` from an OpenAI-style model list, or nothing."""
    try:
        names = [str(m["id"]) for m in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        return ""
    if not names:
        return " (no models loaded)"
    more = f" (+{len(names) - 3})" if len(names) > 3 else ""
    return ": " + ", ".join(names[:3]) + more


def _reason(exc: BaseException) -> str:
    """The innermost cause's message, on one line (``[Errno 111] Connection refused``)."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return (str(exc).splitlines() or [type(exc).__name__])[0]
