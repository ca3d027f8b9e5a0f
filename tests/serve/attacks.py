"""The attacks of issue 16 (server part), run as an attacker would against a server with the
default configuration (loopback bind, no API key, no allowed callables) on the fake model.

Each attack returns an :class:`Outcome`: ``succeeded`` is true when the server did what the
attacker wanted (ran code, showed a file, answered a foreign Host, accepted a cross-site
request, redirected off-site, did unbounded work).  tests/serve/test_hardening.py asserts
that none succeeds; bench/reliability_server.py counts them.
"""

from __future__ import annotations

import html
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

PORT = 8000
BASE_URL = f"http://127.0.0.1:{PORT}"
SECRET = "SECRET-7f3a9c"
#: what an /etc/shadow-like file starts with: not a pipeline, so a careless error quotes it
SECRET_FILE_TEXT = f"root:{SECRET}:19000:0:99999:7:::\n"
GOOD_YAML = 'name: p\ntask:\n  name: t\n  template: "Review: {text}"\n  labels: [good, bad]\n'
CALL_YAML = 'name: p\nsteps:\n  - name: s\n    call: "subprocess:run"\n'
VERIFIER_YAML = ('name: p\ntask:\n  template: "Review: {text}"\n  labels: [good, bad]\n'
                 '  strategy: {name: verify_revise, verifier: "os:system"}\n')
#: the reported 193-byte request: nested sandboxed Jinja loops (20 s of rendering before the caps)
JINJA_BOMB = {"yaml": 'name: p\ntask:\n  name: t\n  template: "{% for a in range(99999) %}{% for b in range(99999) %}'
                      '{{a}}{% endfor %}{% endfor %}"\n  labels: [a, b]\n', "inputs": {"text": "x"}}
REDIRECTS = ["//evil.example", "/\\evil.example", "\\\\evil.example", "https://evil.example", "javascript:alert(1)",
             "/\t/evil.example", "/\\/evil.example", "/\n/evil.example"]


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    detail: str


@dataclass
class Target:
    """A server under attack: ``client`` talks to it as ``BASE_URL``; ``outside`` is a folder
    beyond its pipelines folder (a secret file, and where injected commands leave marks)."""

    client: Any
    home: Path
    outside: Path
    backend: Any

    def mark(self, name: str) -> Path:
        return self.outside / f"PWNED-{name}"

    def responses_leak(self, *responses: Any) -> bool:
        return any(SECRET in r.text or "root:" in r.text for r in responses)


@dataclass(frozen=True)
class Attack:
    group: str
    name: str
    run: Callable[[Target], Outcome]


@contextmanager
def target(tmp: Path, **config: Any) -> Iterator[Target]:
    """A fresh server with the default security settings (``config`` may change them)."""
    from fastapi.testclient import TestClient

    from openautoglm.backends.fake import FakeBackend
    from openautoglm.serve import ServerConfig, create_app

    home, outside = tmp / "home", tmp / "outside"
    (home / "pipelines").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.yaml").write_text(SECRET_FILE_TEXT, encoding="utf-8")
    backend = FakeBackend()
    app = create_app(ServerConfig(model="fake", home=home, **_port_option(), **config), backend=backend)
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as client:
        yield Target(client, home, outside, backend)


def _port_option() -> dict[str, int]:
    """``port=PORT`` where ServerConfig has it (bench/reliability_server.py also attacks revisions
    from before the option existed)."""
    import dataclasses

    from openautoglm.serve import ServerConfig

    return {"port": PORT} if "port" in {f.name for f in dataclasses.fields(ServerConfig)} else {}


def _status(resp: Any) -> str:
    """``"403 cross_site_request"``: the status and the error code, if any."""
    body = resp.json() if "json" in resp.headers.get("content-type", "") else None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return f"{resp.status_code}{f' {code}' if code else ''}"


def _accepted(resp: Any) -> bool:
    return 200 <= resp.status_code < 300


# -- code execution --------------------------------------------------------------------------
def _call_inputs(t: Target, name: str) -> dict[str, str]:
    return {"touch": "", str(t.mark(name)): ""}  # subprocess.run(record) runs `touch <mark>`


def try_call(t: Target) -> Outcome:
    resp = t.client.post("/api/try", json={"yaml": CALL_YAML, "inputs": _call_inputs(t, "try")})
    return Outcome(t.mark("try").exists() or _accepted(resp), _status(resp))


def save_and_run_call(t: Target) -> Outcome:
    saved = t.client.put("/api/pipelines/pwn", json={"yaml": CALL_YAML})
    ran = t.client.post("/api/pipelines/pwn/run", json={"inputs": _call_inputs(t, "save")})
    return Outcome(t.mark("save").exists() or _accepted(saved), f"save {_status(saved)}, run {_status(ran)}")


def validate_call(t: Target) -> Outcome:
    resp = t.client.post("/api/validate", json={"yaml": CALL_YAML})
    return Outcome(bool(resp.json().get("valid")), _status(resp))


def run_call(t: Target) -> Outcome:
    csv = f"touch,{t.mark('run')}\n,\n".encode()
    upload = t.client.post("/api/uploads", files={"file": ("x.csv", csv, "text/csv")}).json()
    resp = t.client.post("/api/runs", json={"upload_id": upload["upload_id"], "yaml": CALL_YAML})
    if _accepted(resp):
        _wait_for_run(t, resp.json()["run_id"])
    return Outcome(t.mark("run").exists() or _accepted(resp), _status(resp))


def python_verifier(t: Target) -> Outcome:
    resp = t.client.post("/api/validate", json={"yaml": VERIFIER_YAML})
    tried = t.client.post("/api/try", json={"yaml": VERIFIER_YAML, "inputs": {"text": "x"}})
    return Outcome(bool(resp.json().get("valid")) or _accepted(tried),
                   f"validate {_status(resp)}, try {_status(tried)}")


def _wait_for_run(t: Target, run_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if t.client.get(f"/api/runs/{run_id}").json().get("status") not in ("queued", "running"):
            return
        time.sleep(0.05)


# -- file reads --------------------------------------------------------------------------------
def _sub_yaml(ref: str) -> str:
    return f'name: p\nsteps:\n  - name: s\n    pipeline: "{ref}"\n'


def _deep_relative(path: Path) -> str:
    """``../../..`` up to the root, then ``path``: reaches ``path`` from any folder."""
    return "../" * 24 + str(path.resolve()).lstrip("/")


def try_traversal(t: Target) -> Outcome:
    ref = _deep_relative(t.outside / "secret.yaml")
    resp = t.client.post("/api/try", json={"yaml": _sub_yaml(ref), "inputs": {"text": "x"}})
    return Outcome(t.responses_leak(resp) or _accepted(resp), _status(resp))


def validate_absolute(t: Target) -> Outcome:
    resp = t.client.post("/api/validate", json={"yaml": _sub_yaml(str(t.outside / "secret.yaml"))})
    return Outcome(t.responses_leak(resp) or bool(resp.json().get("valid")), _status(resp))


def save_etc_passwd(t: Target) -> Outcome:
    resp = t.client.put("/api/pipelines/leak", json={"yaml": _sub_yaml("../../../../../../../../etc/passwd")})
    return Outcome(t.responses_leak(resp) or _accepted(resp), _status(resp))


def run_traversal(t: Target) -> Outcome:
    upload = t.client.post("/api/uploads", files={"file": ("x.csv", b"text\nhello\n", "text/csv")}).json()
    resp = t.client.post("/api/runs", json={"upload_id": upload["upload_id"],
                                            "yaml": _sub_yaml(str(t.outside / "secret.yaml"))})
    return Outcome(t.responses_leak(resp) or _accepted(resp), _status(resp))


# -- DNS rebinding -----------------------------------------------------------------------------
REBOUND = "attacker.example:8000"


def rebinding_read(t: Target) -> Outcome:
    resp = t.client.get("/api/pipelines", headers={"Host": REBOUND})
    return Outcome(_accepted(resp), _status(resp))


def rebinding_post(t: Target) -> Outcome:
    headers = {"Host": REBOUND, "Origin": f"http://{REBOUND}", "Sec-Fetch-Site": "same-origin"}
    resp = t.client.post("/api/try", json={"yaml": GOOD_YAML, "inputs": {"text": "x"}}, headers=headers)
    return Outcome(_accepted(resp), _status(resp))


def rebinding_ui(t: Target) -> Outcome:
    resp = t.client.get("/traces", headers={"Host": "attacker.example"})
    return Outcome(_accepted(resp), _status(resp))


# -- cross-site requests -------------------------------------------------------------------------
def _cross_site_try(headers: dict[str, str]) -> Callable[[Target], Outcome]:
    def attack(t: Target) -> Outcome:
        resp = t.client.post("/api/try", json={"yaml": GOOD_YAML, "inputs": {"text": "x"}}, headers=headers)
        return Outcome(_accepted(resp), _status(resp))

    return attack


def cross_site_save(t: Target) -> Outcome:
    resp = t.client.put("/api/pipelines/planted", json={"yaml": GOOD_YAML}, headers={"Origin": "https://evil.example"})
    return Outcome(_accepted(resp) or (t.home / "pipelines" / "planted.yaml").exists(), _status(resp))


def cross_site_form_upload(t: Target) -> Outcome:
    resp = t.client.post("/api/uploads", files={"file": ("x.csv", b"text\nhi\n", "text/csv")},
                         headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    return Outcome(_accepted(resp), _status(resp))


def cross_site_cancel(t: Target) -> Outcome:
    resp = t.client.post("/api/runs/srv-000000000000/cancel", headers={"Sec-Fetch-Site": "cross-site"})
    return Outcome(resp.status_code != 403, _status(resp))  # a 404 means the handler ran


# -- open redirects --------------------------------------------------------------------------------
def _login_next(t: Target, target_url: str) -> str:
    resp = t.client.get("/login", params={"next": target_url})
    found = re.search(r'data-next="([^"]*)"', resp.text)
    return html.unescape(found.group(1)) if found else "/"


def leaves_site(target_url: str) -> bool:
    """Whether a browser sent to ``target_url`` from the login page would leave the server
    (browsers drop tabs/newlines and read ``\\`` as ``/`` in http(s) URLs)."""
    from urllib.parse import urljoin, urlsplit

    cleaned = re.sub(r"[\t\n\r]", "", target_url).replace("\\", "/").lstrip("\x00 ")
    if cleaned.startswith("//"):  # any number of slashes: a host follows (WHATWG URL parsing)
        return True
    resolved = urlsplit(urljoin(BASE_URL + "/login", cleaned))
    return resolved.scheme not in ("http", "https") or resolved.netloc != urlsplit(BASE_URL).netloc


def open_redirects(t: Target) -> Outcome:
    kept = [r for r in REDIRECTS if leaves_site(_login_next(t, r))]
    return Outcome(bool(kept), f"kept {kept!r}" if kept else f"none of {len(REDIRECTS)} variants leaves the site")


# -- unbounded work -----------------------------------------------------------------------------------
def jinja_bomb(t: Target) -> Outcome:
    before = t.backend.calls
    resp = t.client.post("/api/try", json=JINJA_BOMB)
    return Outcome(_accepted(resp) or t.backend.calls != before, _status(resp))


def attribute_walk(t: Target) -> Outcome:
    yaml = 'name: p\ntask:\n  name: t\n  template: "{text.__class__.__mro__}"\n  output: text\n'
    resp = t.client.post("/api/try", json={"yaml": yaml, "inputs": {"text": "x"}})
    return Outcome("<class " in resp.text, _status(resp))  # the prompt (shown by /api/try) holds Python objects


def chunked_body(t: Target) -> Outcome:
    def chunks() -> Iterator[bytes]:
        for _ in range(11):
            yield b" " * (1024 * 1024)

    resp = t.client.post("/api/validate", content=chunks(), headers={"Content-Type": "application/json"})
    return Outcome(resp.status_code != 413, _status(resp))


ATTACKS: tuple[Attack, ...] = (
    Attack("code execution", "call: subprocess:run via /api/try", try_call),
    Attack("code execution", "call: subprocess:run saved, then run", save_and_run_call),
    Attack("code execution", "call: subprocess:run passes /api/validate", validate_call),
    Attack("code execution", "call: subprocess:run in a background run", run_call),
    Attack("code execution", "python verifier os:system", python_verifier),
    Attack("file read", "pipeline: ../../(...)/secret.yaml via /api/try", try_traversal),
    Attack("file read", "pipeline: /abs/secret.yaml via /api/validate", validate_absolute),
    Attack("file read", "pipeline: ../../etc/passwd saved", save_etc_passwd),
    Attack("file read", "pipeline: /abs/secret.yaml in a background run", run_traversal),
    Attack("DNS rebinding", "GET /api/pipelines with Host attacker.example", rebinding_read),
    Attack("DNS rebinding", "POST /api/try from the rebound page", rebinding_post),
    Attack("DNS rebinding", "web UI with Host attacker.example", rebinding_ui),
    Attack("cross-site request", "POST /api/try, Origin https://evil.example",
           _cross_site_try({"Origin": "https://evil.example"})),
    Attack("cross-site request", "POST /api/try, Origin null", _cross_site_try({"Origin": "null"})),
    Attack("cross-site request", "POST /api/try, Origin of another local port",
           _cross_site_try({"Origin": "http://127.0.0.1:3000"})),
    Attack("cross-site request", "POST /api/try, Sec-Fetch-Site cross-site only",
           _cross_site_try({"Sec-Fetch-Site": "cross-site"})),
    Attack("cross-site request", "POST /api/try, Referer https://evil.example only",
           _cross_site_try({"Referer": "https://evil.example/page"})),
    Attack("cross-site request", "PUT /api/pipelines from evil.example", cross_site_save),
    Attack("cross-site request", "multipart upload from evil.example", cross_site_form_upload),
    Attack("cross-site request", "POST cancel with Sec-Fetch-Site cross-site", cross_site_cancel),
    Attack("open redirect", "/login?next= off-site variants", open_redirects),
    Attack("unbounded work", "193-byte nested Jinja loops via /api/try", jinja_bomb),
    Attack("template escape", "{text.__class__.__mro__} in a format template", attribute_walk),
    Attack("unbounded work", "11 MB chunked body without Content-Length", chunked_body),
)


def run_attacks(tmp: Path) -> list[tuple[Attack, Outcome]]:
    """Every attack, each against a fresh default server under ``tmp``."""
    results = []
    for i, attack in enumerate(ATTACKS):
        with target(tmp / f"a{i}") as t:
            results.append((attack, attack.run(t)))
    return results
