"""Load test of ``openautoglm serve`` on loopback: micro-batching on vs off, side by side.

Two endpoints, each at 1, 4 and 16 concurrent clients, against the real embedded model
(SmolLM2-135M) in a server subprocess (so the load generator does not share its GIL):

* ``task``  - ``POST /api/pipelines/sentiment/run`` (label scoring of one SST-2 review);
* ``chat``  - ``POST /v1/chat/completions`` (OpenAI-compatible, 12 new tokens, temperature 0);
* ``chat64`` - the same with 64 new tokens (decoding dominates instead of the prompt).

The same run starts two servers - micro-batching on, and off (``--no-batching``:
concurrent requests queue on the model's lock, one forward pass each) - and sends both the
same requests, cell by cell, alternating which goes first (the machine is shared: drift in
its load then hits both alike).  Every cell is bounded in requests and seconds.  Reported: throughput
(requests/s), client-side latency P50/P99, the speed-up over one client (sequential),
and the backend calls per request (from ``/metrics``: how many requests shared a pass).

    .venv/bin/python bench/serve_load.py            # ~4 minutes on 2 cores
    .venv/bin/python bench/serve_load.py --quick    # ~1.5 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REVIEWS = REPO / "examples" / "sentiment" / "reviews.csv"
PIPELINES = REPO / "examples" / "server" / "pipelines"
CONCURRENCY = (1, 4, 16)


# --------------------------------------------------------------------------- server side
def serve(port: int, batching: bool, home: str, max_batch: int | None) -> None:
    import uvicorn

    from openautoglm.serve import ServerConfig, create_app

    config = ServerConfig(model="local", home=Path(home), pipelines_dir=PIPELINES, micro_batching=batching,
                          rate_per_min=None)
    if max_batch:
        config.max_batch = max_batch
    uvicorn.run(create_app(config), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    max_batch: int | None = None  # the server's default unless --max-batch is given

    def __init__(self, batching: bool) -> None:
        self.port = free_port()
        self.home = tempfile.mkdtemp(prefix="serve-bench-")
        self.batching = batching
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "Server":
        cmd = [sys.executable, __file__, "--serve", str(self.port), "--batching", "on" if self.batching else "off",
               "--home", self.home] + (["--max-batch", str(self.max_batch)] if self.max_batch else [])
        self.proc = subprocess.Popen(cmd, cwd=REPO)
        import httpx

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
            if self.proc.poll() is not None:
                raise RuntimeError("the server exited during start-up")
        raise RuntimeError("the server did not start in 180 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# --------------------------------------------------------------------------- client side
def reviews() -> list[str]:
    with REVIEWS.open(encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)]


def request_for(kind: str, text: str) -> tuple[str, dict[str, Any]]:
    if kind == "task":
        return "/api/pipelines/sentiment/run", {"inputs": {"text": text}}
    return "/v1/chat/completions", {
        "model": "local", "max_tokens": 64 if kind == "chat64" else 12, "temperature": 0,
        "messages": [{"role": "user", "content": f"Give a one-line summary of this review: {text}"}],
    }


async def load(url: str, kind: str, texts: list[str], clients: int, max_requests: int, max_s: float) -> dict[str, Any]:
    import httpx

    queue: asyncio.Queue[str] = asyncio.Queue()
    for t in texts[:max_requests]:
        queue.put_nowait(t)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + max_s

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            try:
                text = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            path, body = request_for(kind, text)
            t0 = time.perf_counter()
            resp = await http.post(url + path, json=body)
            if resp.status_code == 200:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - t0
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")  # noqa: E731
    return {"n": len(latencies), "errors": errors, "wall_s": wall, "rps": len(latencies) / wall if wall else 0.0,
            "p50_ms": pick(0.50) * 1000, "p99_ms": pick(0.99) * 1000}


def backend_calls(url: str) -> float:
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(r"^openautoglm_model_calls_total\{[^}]*\} (\S+)$", text, re.M))


def measure(srv: Server, kind: str, clients: int, texts: list[str], quick: bool) -> dict[str, Any]:
    per = {"task": 24 if quick else 64, "chat": 8 if quick else 24, "chat64": 8 if quick else 16}[kind]
    n = max(per, clients * (2 if quick else 3))
    offset = {1: 0, 4: 64, 16: 128}[clients]  # distinct texts per cell (both modes get the same ones)
    before = backend_calls(srv.url)
    res = asyncio.run(load(srv.url, kind, texts[offset:] + texts[:offset], clients, n, 20 if quick else 45))
    calls = backend_calls(srv.url) - before
    res.update(kind=kind, clients=clients, batching=srv.batching,
               calls_per_request=calls / res["n"] if res["n"] else float("nan"))
    print(f"  {kind:5} batching={'on ' if srv.batching else 'off'} clients={clients:2}: {res['rps']:6.2f} req/s"
          f"  p50 {res['p50_ms']:7.0f} ms  p99 {res['p99_ms']:7.0f} ms  ({res['n']} ok, {res['errors']} errors,"
          f" {calls:.0f} backend calls)", flush=True)
    return res


def run_all(kinds: list[str], texts: list[str], quick: bool) -> list[dict[str, Any]]:
    """Both servers run at once; each cell is measured on one then the other, alternating the
    order, so drift in the machine's load (it is shared) hits both settings alike."""
    rows = []
    with Server(True) as on, Server(False) as off:
        for kind in kinds:
            warm = [f"{t} (warm-up)" for t in texts[-24:]]  # prompts no cell sends: nothing is answered from cache
            for srv in (on, off):  # warm-up at every concurrency: kernels for both
                for clients in CONCURRENCY:  # single-request and batched shapes get built
                    asyncio.run(load(srv.url, kind, warm, clients, 8 if clients < 16 else 16, 60))
            for i, clients in enumerate(CONCURRENCY):
                for srv in ((on, off) if i % 2 == 0 else (off, on)):
                    rows.append(measure(srv, kind, clients, texts, quick))
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """× sequential: over one client on the batching-off server (one request at a time)."""
    seq = {r["kind"]: r["rps"] for r in rows if r["clients"] == 1 and not r["batching"]}
    off = {(r["kind"], r["clients"]): r["rps"] for r in rows if not r["batching"]}
    lines = ["| endpoint | clients | micro-batching | req/s | P50 ms | P99 ms | × sequential | × batching off | backend calls/request |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["kind"], r["clients"], not r["batching"])):
        base = seq[r["kind"]]
        vs_off = r["rps"] / off[(r["kind"], r["clients"])] if off.get((r["kind"], r["clients"])) else float("nan")
        lines.append(f"| {r['kind']} | {r['clients']} | {'on' if r['batching'] else 'off'} | {r['rps']:.2f} | "
                     f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} | {r['rps'] / base:.2f} | {vs_off:.2f} | "
                     f"{r['calls_per_request']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer requests per cell")
    ap.add_argument("--kinds", default="task,chat,chat64", help="endpoints to load: task, chat, chat64")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    ap.add_argument("--max-batch", type=int, help="the server's --max-batch (default: its default)")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--batching", default="on", help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.batching == "on", args.home, args.max_batch)
        return
    Server.max_batch = args.max_batch
    texts = reviews()
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    print(f"serve load test · {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {platform.processor() or platform.machine()}"
          f" · {os.cpu_count()} CPUs · python {platform.python_version()}", flush=True)
    rows = run_all(kinds, texts, args.quick)
    print()
    print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
