#!/usr/bin/env python
"""Run the README's code blocks as a reader would, on a fresh copy of the repository.

    python scripts/check_readme.py [README.md] [--only LINE,...] [--list] [--keep] [--verbose]

The tracked files are copied to a temporary folder (a fresh clone, with this checkout's
edits); then every block runs there in order, so a block may use the files an earlier one
wrote:

* ```` ```python ```` blocks run with this interpreter, ```` ```bash ```` blocks with
  ``bash -e``, both with this interpreter's ``bin`` first on ``PATH`` (``openautoglm``) and
  with no API keys, ``PYTHONPATH`` or ``OPENAUTOGLM_MODEL`` in the environment;
* a block whose first line is a file name comment (``# pipeline.yaml``, ``# mypkg/x.py``)
  is written to that file instead of run;
* a block whose first line is ``# needs ...`` (an API key, a server, data that is not in
  the repository), or that follows ``<!-- check-readme: skip (reason) -->``, is skipped,
  and the reason printed;
* ``<!-- check-readme: server URL -->`` runs the block in the background until ``URL``
  answers, then stops it.

A block that is not skipped but names a hosted model, an API key, a remote URL or
``pip install`` fails the check: mark it.  Exit status 0 when every block that ran passed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNABLE = ("python", "bash")
_FENCE = re.compile(r"^```(\w*)\s*$")
_DIRECTIVE = re.compile(r"<!--\s*check-readme:\s*(skip|server)\s*(.*?)\s*-->")
_FILE_NAME = re.compile(r"^#\s+([\w][\w./-]*\.(?:py|ya?ml|json|jsonl|csv|tsv|txt|toml))\s*$")
_NEEDS = re.compile(r"^#\s*(needs\b.*)$", re.I)
#: what a block may not use unless it is marked: hosted models, keys, remote endpoints, installs
_NETWORK = re.compile(r"\b(openai|zhipu|qwen|deepseek|glm|chatglm|baichuan):|api_key|_API_KEY|postgres(ql)?://|"
                      r"https?://(?!127\.0\.0\.1|localhost)|\bpip install\b", re.I)
_SECRET_ENV = re.compile(r"API_KEY|_TOKEN$|^OPENAUTOGLM_(MODEL|HOME)$|^PYTHONPATH$")
BLOCK_TIMEOUT_S = 1200
SERVER_START_S = 180


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    directive: tuple[str, str] | None = None  # ("skip", reason) / ("server", url)

    @property
    def first(self) -> str:
        return self.code.lstrip("\n").split("\n", 1)[0].strip()

    def action(self) -> tuple[str, str]:
        """What the check does with the block: (``run``|``write``|``skip``|``server``|``ignore``, detail)."""
        if self.directive and self.directive[0] == "skip":
            return "skip", self.directive[1].strip("() ") or "marked skip"
        named = _FILE_NAME.match(self.first)
        if named:
            return "write", named.group(1)
        needs = _NEEDS.match(self.first)
        if needs and self.lang in RUNNABLE:
            return "skip", needs.group(1)
        if self.lang not in RUNNABLE:
            return "ignore", self.lang or "text"
        if self.directive and self.directive[0] == "server":
            return "server", self.directive[1]
        return "run", ""

    def unmarked_network(self) -> str | None:
        """The hosted-model / key / remote use in a block that runs, if any."""
        if self.action()[0] not in ("run", "server"):
            return None
        found = _NETWORK.search(self.code)
        return found.group(0) if found else None


def parse(markdown: str) -> list[Block]:
    """The fenced code blocks of ``markdown``, each with the directive on the line before it."""
    blocks: list[Block] = []
    lines = markdown.split("\n")
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        prev = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        directive = _DIRECTIVE.search(prev)
        blocks.append(Block(start + 1, opening.group(1).lower(), "\n".join(body) + "\n",
                            (directive.group(1), directive.group(2)) if directive else None))
        i += 1
    return blocks


def fresh_copy(dest: Path) -> int:
    """Copy the repository's tracked files (as they are in this checkout) to ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    count = 0
    for name in filter(None, listed.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
            count += 1
    return count


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not _SECRET_ENV.search(k)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_block(block: Block, index: int, cwd: Path, env: dict[str, str]) -> tuple[bool, str]:
    script = cwd / f".readme_block_{index}.{'py' if block.lang == 'python' else 'sh'}"
    script.write_text(block.code, encoding="utf-8")
    cmd = [sys.executable, str(script)] if block.lang == "python" else ["bash", "-e", str(script)]
    try:
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        return False, f"timed out after {BLOCK_TIMEOUT_S} s\n{exc.stdout or ''}{exc.stderr or ''}"
    return done.returncode == 0, f"exit {done.returncode}\n{done.stdout}{done.stderr}"


def run_server(block: Block, index: int, cwd: Path, env: dict[str, str]) -> tuple[bool | None, str]:
    """Start the block in the background, wait for its URL to answer, stop it (None: could not try)."""
    url = block.directive[1] if block.directive else ""
    host_port = re.match(r"https?://([^/:]+):(\d+)", url)
    if host_port and _port_busy(host_port.group(1), int(host_port.group(2))):
        return None, f"port {host_port.group(2)} is already in use here, so the server block was not started"
    script = cwd / f".readme_block_{index}.sh"
    script.write_text(block.code, encoding="utf-8")
    proc = subprocess.Popen(["bash", "-e", str(script)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline, answered = time.monotonic() + SERVER_START_S, ""
    try:
        while time.monotonic() < deadline and proc.poll() is None and not answered:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
                    answered = f"{url} answered {resp.status}"
            except OSError:
                time.sleep(1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        output = proc.communicate()[0] or ""
    return bool(answered), answered or f"{url} never answered\n{output}"


def _port_busy(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("readme", nargs="?", default=str(ROOT / "README.md"))
    ap.add_argument("--only", help="comma-separated fence line numbers to run (files are still written)")
    ap.add_argument("--list", action="store_true", help="list the blocks and what would be done; run nothing")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--verbose", "-v", action="store_true", help="print every block's output, not only failures")
    args = ap.parse_args(argv)
    path = Path(args.readme)
    blocks = parse(path.read_text(encoding="utf-8"))
    only = {int(n) for n in args.only.split(",")} if args.only else None
    unmarked = [(b, hit) for b in blocks if (hit := b.unmarked_network())]
    for block, hit in unmarked:
        print(f"{path.name}:{block.line} {block.lang}: uses {hit!r} but is not marked; start it with "
              f"'# needs ...' or put '<!-- check-readme: skip (reason) -->' before it")
    if args.list:
        for block in blocks:
            action, detail = block.action()
            print(f"{path.name}:{block.line:<4} {block.lang or 'text':<7} {action:<7} {detail}")
        return 1 if unmarked else 0
    tmp = Path(tempfile.mkdtemp(prefix="readme-check-"))
    failed = len(unmarked)
    counts = {"ran": 0, "skipped": 0, "written": 0}
    try:
        print(f"fresh copy: {fresh_copy(tmp)} tracked files in {tmp}", flush=True)
        env = environment()
        for index, block in enumerate(blocks):
            action, detail = block.action()
            where = f"{path.name}:{block.line} {block.lang}"
            if action == "ignore":
                continue
            if action == "write":
                (tmp / detail).parent.mkdir(parents=True, exist_ok=True)
                (tmp / detail).write_text(block.code, encoding="utf-8")
                counts["written"] += 1
                print(f"{where}: wrote {detail}", flush=True)
                continue
            if action == "skip" or (only is not None and block.line not in only):
                counts["skipped"] += 1
                print(f"{where}: skipped: {detail if action == 'skip' else 'not in --only'}", flush=True)
                continue
            start = time.monotonic()
            ok, output = (run_server if action == "server" else run_block)(block, index, tmp, env)
            seconds = time.monotonic() - start
            if ok is None:
                counts["skipped"] += 1
                print(f"{where}: skipped: {output}", flush=True)
                continue
            counts["ran"] += 1
            if ok:
                print(f"{where}: ok ({seconds:.0f} s)", flush=True)
                if args.verbose:
                    print(output.rstrip() + "\n", flush=True)
            else:
                failed += 1
                tail = "\n".join(output.rstrip().split("\n")[-40:])
                print(f"{where}: FAILED ({seconds:.0f} s)\n--- block ---\n{block.code}--- output (tail) ---\n{tail}\n",
                      flush=True)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{counts['ran']} blocks ran, {failed} failed, {counts['skipped']} skipped, {counts['written']} files written")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
