"""Guards against a browser being used to reach the server on someone else's behalf.

* :class:`HostPolicy` - the ``Host`` names the server answers to.  A web page can point a
  name it controls at 127.0.0.1 (DNS rebinding) and then talk to a loopback server as
  "same origin"; the page's own name in ``Host`` gives it away.
* :func:`cross_site_reason` - state-changing requests (POST, PUT, PATCH, DELETE) sent by
  a browser must come from the server's own pages (``Origin`` / ``Sec-Fetch-Site`` /
  ``Referer``), or from an origin the operator allowed with ``--cors-origin``.  Requests
  with none of these headers do not come from a browser (curl, SDKs) and pass.
* :func:`safe_redirect` - only site-relative paths are redirect targets.

:class:`RequestGuard` applies the first two to each request (see docs/server.md, Security).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Mapping
from urllib.parse import urlsplit

from .security import is_loopback

#: names that always mean "this machine" (and only it)
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: methods a browser form or script can use to change state
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: ``Sec-Fetch-Site`` values of requests the server's own pages (or the user) started
SAME_SITE_FETCH = frozenset({"same-origin", "none"})
ANY_HOST = "*"


def is_wildcard_bind(host: str) -> bool:
    """Whether binding ``host`` listens on every interface (``0.0.0.0``, ``::``)."""
    try:
        return host == "" or ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def _normal_name(name: str) -> str:
    """Lower case, without IPv6 brackets or one trailing dot."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name[:-1] if name.endswith(".") else name


def split_host(value: str) -> tuple[str, int | None] | None:
    """``"name:port"`` / ``"[v6]:port"`` / ``"name"`` as ``(name, port)``; None if malformed."""
    value = value.strip()
    if not value or any(c.isspace() or c in "/\\@?#" for c in value):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else None
    else:
        if value.count(":") > 1:  # a bare IPv6 address is not a valid Host header
            return None
        name, _, port_text = value.partition(":")
        port_text = port_text if ":" in value else None
    if not name:
        return None
    if port_text is None:
        return _normal_name(name), None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return _normal_name(name), int(port_text)


@dataclass(frozen=True)
class HostPolicy:
    """Which ``Host`` headers the server answers (``names``; ``any_name`` for all).

    ``port``, when known, must also match a port given in the header.
    """

    names: frozenset[str]
    port: int | None = None
    any_name: bool = False

    @classmethod
    def for_bind(cls, bind: str, port: int | None = None, allowed: Iterable[str] = ()) -> "HostPolicy":
        """The names a server bound to ``bind`` is reached by, plus the operator's ``allowed``."""
        extra = {_normal_name(a) for a in allowed if a.strip()}
        names = set(extra - {ANY_HOST})
        if is_loopback(bind.lower()) or is_wildcard_bind(bind):
            names |= LOOPBACK_NAMES
        if not is_wildcard_bind(bind):
            names.add(_normal_name(bind))
        return cls(names=frozenset(names), port=port, any_name=ANY_HOST in extra)

    def allows(self, host_header: str | None) -> bool:
        """Whether a request with this ``Host`` header is for this server.

        A request without ``Host`` is not from a browser (browsers always send it) and passes.
        """
        if host_header is None:
            return True
        parsed = split_host(host_header)
        if parsed is None:
            return False
        name, port = parsed
        if self.port is not None and port is not None and port != self.port:
            return False
        return self.any_name or name in self.names


def _origin_netloc(url: str) -> str | None:
    """``scheme://host[:port]`` of an ``Origin`` or ``Referer`` value, as ``host[:port]``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    return parts.netloc.lower()


def _origin_of(url: str) -> str | None:
    netloc = _origin_netloc(url)
    return f"{urlsplit(url).scheme}://{netloc}" if netloc else None


def cross_site_reason(method: str, headers: Mapping[str, str], trusted_origins: Iterable[str] = ()) -> str | None:
    """Why a request looks like a cross-site browser request that changes state; None if it may go on.

    ``headers`` has lower-case names.  ``trusted_origins`` are the ``--cors-origin`` values.
    """
    if method.upper() not in UNSAFE_METHODS:
        return None
    host = (headers.get("host") or "").strip().lower()
    trusted = {o.rstrip("/").lower() for o in trusted_origins}
    origin = headers.get("origin")
    if origin is not None:
        if origin.rstrip("/").lower() in trusted:
            return None
        if _origin_netloc(origin) != host or not host:
            return f"the request comes from another site (Origin: {origin[:100]})"
        return None
    site = headers.get("sec-fetch-site")
    if site is not None:
        if site.lower() in SAME_SITE_FETCH:
            return None
        return f"the request comes from another site (Sec-Fetch-Site: {site[:40]})"
    referer = headers.get("referer")
    if referer:
        if _origin_of(referer) in trusted:
            return None
        if _origin_netloc(referer) != host or not host:
            return "the request comes from another site (Referer)"
    return None


def safe_redirect(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this site (``/runs?x=1``), else ``default``.

    Refuses ``//host``, ``/\\host``, ``\\\\host``, any scheme, and control characters
    (browsers drop tabs and newlines, so ``/\\t/host`` would become ``//host``).
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in target):
        return default
    try:
        parts = urlsplit(target)
    except ValueError:
        return default
    return default if parts.scheme or parts.netloc else target


class RequestGuard:
    """The Host and cross-site checks of one server (used by the app's gate middleware)."""

    def __init__(self, hosts: HostPolicy, trusted_origins: Iterable[str] = ()) -> None:
        self.hosts = hosts
        self.trusted_origins = tuple(trusted_origins)

    def refusal(self, method: str, headers: Mapping[str, str]) -> tuple[int, str, str] | None:
        """``(status, code, message)`` to refuse a request with, or None to let it through."""
        host = headers.get("host")
        if not self.hosts.allows(host):
            return (400, "host_not_allowed",
                    f"this server does not answer to Host {host[:100]!r}: open it by the name it was started "
                    "for, or have the operator add the name with `openautoglm serve --allowed-host NAME`")
        reason = cross_site_reason(method, headers, self.trusted_origins)
        if reason is not None:
            return (403, "cross_site_request",
                    f"{reason}; state-changing requests must come from this server's own pages "
                    "(the operator can allow an origin with --cors-origin)")
        return None


def header_map(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI headers as a dict with lower-case names; a repeated header's values are joined
    with ", " (so two ``Host`` headers make a malformed one, which is refused)."""
    out: dict[str, str] = {}
    for k, v in raw:
        name, value = k.decode("latin-1").lower(), v.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out
