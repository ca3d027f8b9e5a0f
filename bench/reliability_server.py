"""Server reliability: a schemathesis pass over the whole OpenAPI spec and the attack list of
issue 16, against ``openautoglm serve`` on the fake model, in one table.

* fuzz: every operation gets the spec's examples, schemathesis' coverage phase (boundary and
  invalid values) and ``--examples`` random cases, valid and invalid (fixed seed); counted:
  cases, 5xx answers (or calls that raised), event streams that did not end with ``[DONE]``.
* attacks: ``tests/serve/attacks.py`` - code execution through each entry point, file reads
  through ``pipeline:``, DNS rebinding, cross-site requests, open redirects, template
  escapes, unbounded work - each against a fresh server with the default settings
  (loopback, no key, no allowed callables); counted: attempted, succeeded.

``--baseline REV`` runs the same on an earlier revision's ``src/`` (``git archive``, in a
subprocess), side by side.  ``run_server_section()`` returns the rows for bench/reliability.py.

    .venv/bin/python bench/reliability_server.py                     # ~2 minutes on 2 cores
    .venv/bin/python bench/reliability_server.py --baseline 7b22c86  # + the pre-hardening server
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.serve.fuzzing / tests.serve.attacks: the harness the tests use

DEFAULT_EXAMPLES = 200
SENTIMENT_YAML = ('name: sentiment\ntask:\n  name: sentiment\n  template: "Review: {text}"\n'
                  '  labels: [positive, negative]\n')


def fuzz_row(examples: int, version: str) -> dict[str, Any]:
    """The schemathesis pass on a fresh fake-model server, as one table row."""
    import dataclasses

    from openautoglm.backends.fake import FakeBackend
    from openautoglm.serve import ServerConfig, create_app
    from tests.serve.fuzzing import fuzz_app

    with tempfile.TemporaryDirectory(prefix="oag-fuzz-") as tmp:
        home = Path(tmp)
        (home / "pipelines").mkdir()
        (home / "pipelines" / "sentiment.yaml").write_text(SENTIMENT_YAML, encoding="utf-8")
        fields = {f.name for f in dataclasses.fields(ServerConfig)}
        hosts = {"allowed_hosts": ["testserver"]} if "allowed_hosts" in fields else {}  # schemathesis' Host
        app = create_app(ServerConfig(model="fake", home=home, **hosts), backend=FakeBackend())
        t0 = time.perf_counter()
        report = fuzz_app(app, examples)
        seconds = time.perf_counter() - t0
        app.state.server.close()
    return {"version": version, "check": f"schemathesis: {len(report.operations)} operations, "
            f"examples + coverage + {examples} random each", "cases": report.cases, "5xx": report.status_5xx,
            "streams without [DONE]": report.server_errors - report.status_5xx,
            "attacks attempted": "", "attacks succeeded": "", "seconds": round(seconds, 1),
            "worst": report.summary(2).replace("\n", " · ")[:120]}


def attack_rows(version: str) -> list[dict[str, Any]]:
    """The attack list, one row per group (each attack on a fresh default server)."""
    from tests.serve.attacks import run_attacks

    with tempfile.TemporaryDirectory(prefix="oag-attacks-") as tmp:
        t0 = time.perf_counter()
        results = run_attacks(Path(tmp))
        seconds = time.perf_counter() - t0
    groups: dict[str, list[Any]] = {}
    for attack, outcome in results:
        groups.setdefault(attack.group, []).append((attack, outcome))
    rows = []
    for group, items in groups.items():
        won = [a.name for a, o in items if o.succeeded]
        rows.append({"version": version, "check": f"attacks: {group}", "cases": "", "5xx": "",
                     "streams without [DONE]": "", "attacks attempted": len(items), "attacks succeeded": len(won),
                     "seconds": "", "worst": "; ".join(won)[:120]})
    rows[-1]["seconds"] = round(seconds, 1)
    return rows


def total_row(rows: list[dict[str, Any]], version: str) -> dict[str, Any]:
    mine = [r for r in rows if r["version"] == version]

    def total(col: str) -> int:
        return sum(r[col] for r in mine if isinstance(r.get(col), int))

    return {"version": version, "check": "total", "cases": total("cases"), "5xx": total("5xx"),
            "streams without [DONE]": total("streams without [DONE]"),
            "attacks attempted": total("attacks attempted"), "attacks succeeded": total("attacks succeeded"),
            "seconds": round(sum(r["seconds"] for r in mine if isinstance(r.get("seconds"), float)), 1), "worst": ""}


def section(examples: int, version: str) -> list[dict[str, Any]]:
    """Fuzz and attack rows, and their total, for the code importable here."""
    rows = [fuzz_row(examples, version), *attack_rows(version)]
    return rows + [total_row(rows, version)]


def extract_revision(rev: str, into: Path) -> Path:
    """``src/`` of git revision ``rev`` under ``into`` (the checkout is untouched)."""
    data = subprocess.run(["git", "archive", "--format=tar", rev, "src"], cwd=ROOT, capture_output=True,
                          check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def baseline_section(rev: str, examples: int) -> list[dict[str, Any]]:
    """:func:`section` on revision ``rev``, in a subprocess importing that revision's package."""
    with tempfile.TemporaryDirectory(prefix="oag-baseline-") as tmp:
        src = extract_revision(rev, Path(tmp))
        env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}"}
        out = subprocess.run([sys.executable, __file__, "--examples", str(examples), "--rows-json",
                              "--version", f"baseline {rev}"], cwd=tmp, env=env, capture_output=True, text=True,
                             check=True, timeout=3600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_server_section(examples: int = DEFAULT_EXAMPLES, baseline: str | None = None) -> list[dict[str, Any]]:
    """The rows of the table (bench/reliability.py prints them with its other sections)."""
    rows = section(examples, "this checkout")
    return rows + (baseline_section(baseline, examples) if baseline else [])


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("| " + " | ".join(c.ljust(widths[c]) for c in cols) + " |")
    print("|" + "|".join("-" * (widths[c] + 2) for c in cols) + "|")
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES, help="random cases per operation")
    ap.add_argument("--baseline", help="also run on this git revision's source")
    ap.add_argument("--rows-json", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--version", default="this checkout", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rows_json:  # the baseline subprocess: rows as JSON on the last line
        print(json.dumps(section(args.examples, args.version)))
        return
    print(f"server reliability · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · fake model · "
          f"{os.cpu_count()} CPUs\n")
    print_table(run_server_section(args.examples, args.baseline))


if __name__ == "__main__":
    main()
