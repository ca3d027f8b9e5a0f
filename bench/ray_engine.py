"""Engine overhead and streaming of batch runs: in-process vs Ray (issue 20), one table.

    .venv/bin/python bench/ray_engine.py                  # everything (8-15 minutes on 2 cores)
    .venv/bin/python bench/ray_engine.py --skip-stream    # the engine-overhead table only
    .venv/bin/python bench/ray_engine.py --only-stream    # the 1M-record streaming figures only
    .venv/bin/python bench/ray_engine.py --quick          # small sizes, to check the script
    .venv/bin/python bench/ray_engine.py --json out/ray_engine.json

**Engine overhead**: records/s of ``run_batch`` with the in-process engine, Ray with 1
worker and Ray with 2 workers, on three workloads:

* ``fake``: the rule-based fake backend (no model: pure engine overhead);
* ``http``: an OpenAI-compatible endpoint on loopback (its own process) that sleeps
  ``--latency`` seconds per request (a latency-bound workload), ``concurrency`` requests in
  flight per backend (one backend per worker);
* ``embedded``: the embedded model (SmolLM2-135M) on SST-2 dev rows.

Each Ray row joins one local Ray instance (2 CPUs) started by the bench; ``run`` is the
wall time of ``run_batch`` (actor start and model load included), ``steady`` counts from
the moment the actor pool is ready (the in-process pipeline is warmed up beforehand, so
its two figures are the same).  A 1-worker Ray row is given both CPUs (``worker_cpus=2``,
the machine in-process has) and, for the embedded model, also 1 CPU (Ray sets an actor's
``OMP_NUM_THREADS`` to its CPUs, so torch runs 1 thread there); ``inproc 1t`` is the
in-process engine with torch on 1 thread too.  ``rec/CPU-s``: records per CPU-second of
the driver's whole run plus the actors' CPU since the pool was ready (read from /proc), a
measure of engine overhead that load from other processes barely moves.

**Streaming**: ``--stream-records`` (default 1,000,000) records on the fake backend with
the Ray engine (2 workers), as ``openautoglm run --engine ray`` runs them (records read as a
stream, nothing collected), in a driver subprocess of its own: total time, the driver's RSS
after 10,000 records and at the end, its peak RSS (VmHWM), and the store's size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
try:
    import openautoglm  # noqa: F401
except ImportError:  # running from a checkout without an install
    sys.path.insert(0, str(ROOT / "src"))

SST2 = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"
NODE_IP = "127.0.0.2"


# -- the latency-bound endpoint ----------------------------------------------------------
SERVER = r'''
import asyncio, json, sys, uvicorn

LATENCY = float(sys.argv[2])


async def app(scope, receive, send):
    """/v1/chat/completions: sleep, then answer the label the review names, with logprobs."""
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    if scope["path"].endswith("/health"):
        payload = b"{}"
    else:
        await asyncio.sleep(LATENCY)
        req = json.loads(body)
        text = req["messages"][-1]["content"]
        first, second = (" negative", " positive") if "negative" in text else (" positive", " negative")
        top = [{"token": first, "logprob": -0.1}, {"token": second, "logprob": -2.4}]
        choice = {"index": 0, "message": {"role": "assistant", "content": first}, "finish_reason": "length",
                  "logprobs": {"content": [{"token": first, "logprob": -0.1, "top_logprobs": top}]}}
        payload = json.dumps({"id": "x", "object": "chat.completion", "model": req.get("model", "m"),
                              "choices": [choice],
                              "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9}}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", backlog=512)
'''


class Endpoint:
    """The sleeping endpoint in a process of its own (so it takes no time from the driver's GIL)."""

    def __init__(self, latency: float) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(self.port), str(latency)])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1.0)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the bench endpoint did not start")
                time.sleep(0.2)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


# -- workloads ---------------------------------------------------------------------------
def sst2_rows(n: int) -> list[dict[str, Any]]:
    lines = SST2.read_text(encoding="utf-8").splitlines()[1:]
    return [{"text": s.strip(), "gold": "positive" if lab.strip() == "1" else "negative"}
            for s, lab in (ln.split("\t") for ln in lines[:n])]


def synthetic_rows(n: int) -> list[dict[str, Any]]:
    return [{"text": f"a {'positive' if i % 3 else 'negative'} review, number {i}"} for i in range(n)]


def make_pipeline(model: Any, store_dir: Path) -> Any:
    from openautoglm import Pipeline, Task
    from openautoglm.store.sqlite import Store

    task = Task(name="sst2", template="Review: {text}", labels=["positive", "negative"], format="text",
                answer_prefix="Sentiment:")
    store_dir.mkdir(parents=True, exist_ok=True)
    return Pipeline(model=model, task=task, store=Store(store_dir / "store.db"))


class PoolTimer:
    """When the Ray actor pool of the current run became ready (wraps ``RayExecutor.__init__``)."""

    def __init__(self) -> None:
        from openautoglm.core.engines import ray_engine

        self.ready: float | None = None
        self.pids: list[int] = []
        self.cpu_ready = self.cpu_last = 0.0
        original = ray_engine.RayExecutor.__init__
        timer = self

        def init(self_: Any, *args: Any, **kwargs: Any) -> None:
            original(self_, *args, **kwargs)
            timer.ready = time.perf_counter()
            timer.pids = [int(w["pid"]) for w in self_.workers]
            timer.cpu_ready = timer.cpu_last = timer.actor_cpu()

        ray_engine.RayExecutor.__init__ = init  # type: ignore[method-assign]

    def actor_cpu(self) -> float:
        """CPU seconds the pool's actor processes have used (same machine: /proc)."""
        total = 0.0
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, IndexError, ValueError):
                pass
        return total

    def on_chunk(self, *_: Any) -> None:
        if self.pids:
            self.cpu_last = max(self.cpu_last, self.actor_cpu())


def run_one(workload: str, engine: str, workers: int, cpus: float, rows: list[dict[str, Any]], model: Any,
            batch_size: int, folder: Path, timer: PoolTimer, label: str | None = None) -> dict[str, Any]:
    from openautoglm.core.batch import run_batch

    pipe = make_pipeline(model, folder / f"{workload}-{label or engine}-{workers}-{cpus:g}")
    if engine == "inprocess":
        pipe.run(text="warm up")  # the model loads, the client opens
    timer.ready, timer.pids = None, []
    timer.cpu_ready = timer.cpu_last = 0.0
    options: dict[str, Any] = {} if engine == "inprocess" else {"workers": workers, "worker_cpus": cpus}
    t0, c0 = time.perf_counter(), time.process_time()
    res = run_batch(pipe, rows, run_id=f"bench-{engine}", batch_size=batch_size, engine=engine,
                    on_chunk=timer.on_chunk, **options)
    t1, c1 = time.perf_counter(), time.process_time()
    # CPU seconds of the work: the driver's whole run plus the actors' since they were ready
    # (a figure load on the machine barely moves, unlike records/s)
    cpu = (c1 - c0) + (timer.cpu_last - timer.cpu_ready)
    pipe.close()
    assert res.done == len(rows), (res.done, res.failed, res.errors[:3])
    start = timer.ready if engine == "ray" and timer.ready is not None else t0
    gold = [r.get("gold") for r in rows]
    acc = (sum(r["label"] == g for r, g in zip(res.results, gold)) / len(rows)) if gold[0] else None
    return {"workload": workload, "engine": label or (engine if engine == "inprocess" else f"ray x{workers}"),
            "worker_cpus": cpus if engine == "ray" else None, "records": len(rows), "run_s": t1 - t0,
            "run_rps": len(rows) / (t1 - t0), "steady_rps": len(rows) / (t1 - start), "accuracy": acc,
            "rec_per_cpu_s": len(rows) / cpu if cpu > 0 else float("nan")}


def overhead(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    import logging

    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False, _node_ip_address=NODE_IP)
    timer = PoolTimer()
    engines = [("inprocess", 1, 2.0), ("ray", 1, 2.0), ("ray", 2, 1.0)]
    rows: list[dict[str, Any]] = []
    try:
        if "fake" in args.workloads:
            fake = synthetic_rows(args.fake_records)
            for engine, workers, cpus in engines:
                rows.append(run_one("fake", engine, workers, cpus, fake, "fake", 64, folder, timer))
                print_row(rows[-1])
        if "http" in args.workloads:
            http_rows(args, engines, folder, timer, rows)
        if "embedded" in args.workloads:
            embedded_rows(args, engines, folder, timer, rows)
    finally:
        ray.shutdown()
    return rows


def http_rows(args: argparse.Namespace, engines: list[tuple[str, int, float]], folder: Path, timer: PoolTimer,
              rows: list[dict[str, Any]]) -> None:
    endpoint = Endpoint(args.latency)
    try:
        model = {"model": "openai:bench", "base_url": endpoint.base_url, "concurrency": args.concurrency,
                 "timeout_s": 30.0}
        http = synthetic_rows(args.http_records)
        for engine, workers, cpus in engines:
            rows.append(run_one("http", engine, workers, cpus, http, model, args.concurrency * 2, folder, timer))
            print_row(rows[-1])
    finally:
        endpoint.close()


def embedded_rows(args: argparse.Namespace, engines: list[tuple[str, int, float]], folder: Path, timer: PoolTimer,
                  rows: list[dict[str, Any]]) -> None:
    sst2 = sst2_rows(args.sst2_rows)
    for engine, workers, cpus in engines[:2] + [("ray", 1, 1.0)] + engines[2:]:
        rows.append(run_one("embedded", engine, workers, cpus, sst2, "local", 16, folder, timer))
        print_row(rows[-1])
    # last: torch's thread count is per process, and this sets it to 1 for the bench's process
    rows.append(run_one("embedded", "inprocess", 1, 1.0, sst2, {"model": "local", "threads": 1}, 16, folder,
                        timer, label="inproc 1t"))
    print_row(rows[-1])


def print_row(row: dict[str, Any]) -> None:
    acc = f"{row['accuracy']:.3f}" if row.get("accuracy") is not None else "-"
    cpus = f"{row['worker_cpus']:g}" if row.get("worker_cpus") else "-"
    print(f"{row['workload']:<9} {row['engine']:<10} {cpus:>4} {row['records']:>8} {row['run_s']:>8.1f} "
          f"{row['run_rps']:>9.1f} {row['steady_rps']:>10.1f} {row['rec_per_cpu_s']:>10.1f} {acc:>6}", flush=True)


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    def get(workload: str, engine: str, cpus: float | None) -> dict[str, Any]:
        return next(r for r in rows if r["workload"] == workload and r["engine"] == engine
                    and (cpus is None or r["worker_cpus"] == cpus))

    out = []
    present = {r["workload"] for r in rows}
    for workload in [w for w in ("fake", "http", "embedded") if w in present]:
        base = get(workload, "inprocess", None)
        one, two = get(workload, "ray x1", 2.0), get(workload, "ray x2", 1.0)
        out.append(f"{workload}: ray x1 / in-process = {one['steady_rps'] / base['steady_rps']:.2f} (steady), "
                   f"{one['run_rps'] / base['run_rps']:.2f} (run); ray x2 / ray x1 = "
                   f"{two['steady_rps'] / one['steady_rps']:.2f} (steady), {two['run_rps'] / one['run_rps']:.2f} (run)")
    if "embedded" in present:
        one_t = get("embedded", "inproc 1t", None)["steady_rps"]
        out.append(f"embedded, torch on 1 thread: ray x1 (1 CPU) / in-process = "
                   f"{get('embedded', 'ray x1', 1.0)['steady_rps'] / one_t:.2f} (steady); ray x2 / in-process = "
                   f"{get('embedded', 'ray x2', 1.0)['steady_rps'] / one_t:.2f}")
        per_cpu = get("embedded", "ray x1", 1.0)["rec_per_cpu_s"] / get("embedded", "inproc 1t", None)["rec_per_cpu_s"]
        out.append(f"embedded, records per CPU-second (1 thread each): ray x1 / in-process = {per_cpu:.2f}")
        emb = get("embedded", "ray x1", 2.0)["steady_rps"] / get("embedded", "inprocess", None)["steady_rps"]
        out.append(f"target: ray x1 within 15% of in-process on the embedded model: {emb:.2f} -> "
                   f"{'met' if emb >= 0.85 else 'NOT met'}")
    if "http" in present:
        http = get("http", "ray x2", 1.0)["steady_rps"] / get("http", "ray x1", 2.0)["steady_rps"] / 2
        out.append(f"target: >= 0.8x linear scaling on the latency-bound workload (2 workers vs 1): {http:.2f} -> "
                   f"{'met' if http >= 0.8 else 'NOT met'}")
    return out


# -- streaming ---------------------------------------------------------------------------
def _rss(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def stream_child(n: int, folder: Path) -> None:
    """The driver of the streaming run (its own process, so its RSS is the driver's)."""
    from openautoglm.core.batch import run_batch
    from openautoglm.core.engines.sources import stream_records

    src = folder / "big.jsonl"
    with src.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"text": f"a {'positive' if i % 3 else 'negative'} review, number {i}"}) + "\n")
    marks: dict[str, int] = {"before": _rss()}
    seen = [0]
    checkpoints = {10_000, 100_000, 250_000, 500_000, 750_000}
    t0 = time.perf_counter()

    def on_row(idx: int, record: dict[str, Any], result: dict[str, Any]) -> None:
        seen[0] += 1
        if seen[0] == min(10_000, n):
            marks["at_10k"] = _rss()
        if seen[0] in checkpoints:  # progress, so that a run cut short still tells its rate and memory
            print(json.dumps({"progress": seen[0], "seconds": time.perf_counter() - t0, "rss": _rss(),
                              "peak": _rss("VmHWM")}), flush=True)

    pipe = make_pipeline("fake", folder / "store")
    t0 = time.perf_counter()
    res = run_batch(pipe, stream_records(src), run_id="stream", output=folder / "out.jsonl", batch_size=512,
                    engine="ray", workers=2, collect=False, on_row=on_row, input_name=str(src))
    seconds = time.perf_counter() - t0
    marks["end"] = _rss()
    pipe.close()
    store = sum(p.stat().st_size for p in (folder / "store").glob("store.db*"))
    print(json.dumps({"records": n, "done": res.done, "seconds": seconds, "rps": n / seconds, **marks,
                      "peak": _rss("VmHWM"), "store_bytes": store,
                      "output_bytes": (folder / "out.jsonl").stat().st_size, "input_bytes": src.stat().st_size}))


def streaming(n: int, folder: Path, timeout_s: float) -> dict[str, Any]:
    """The child's final figures; if it runs past ``timeout_s``, its last progress line (it is
    stopped with SIGTERM, so its Ray instance shuts down)."""
    proc = subprocess.Popen([sys.executable, __file__, "--stream-child", str(n), "--dir", str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    last: dict[str, Any] = {}
    timer = threading.Timer(timeout_s, proc.terminate)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("{"):
                last = json.loads(line)
                if "progress" in last:
                    print(f"  streaming: {last['progress']:,} records in {last['seconds']:.1f} s, driver RSS "
                          f"{last['rss'] / 2**20:.0f} MiB, peak {last['peak'] / 2**20:.0f} MiB", flush=True)
        proc.wait(timeout=60)
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
    if "records" not in last:
        raise RuntimeError(f"the streaming run stopped (timeout {timeout_s:.0f} s) after: {last}")
    return last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--fake-records", type=int, default=20_000)
    ap.add_argument("--http-records", type=int, default=800)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--sst2-rows", type=int, default=100)
    ap.add_argument("--stream-records", type=int, default=1_000_000)
    ap.add_argument("--stream-timeout", type=float, default=570.0)
    ap.add_argument("--skip-stream", action="store_true", help="only the engine-overhead table")
    ap.add_argument("--only-stream", action="store_true", help="only the streaming figures")
    ap.add_argument("--workloads", default="fake,http,embedded", help="engine-overhead workloads to run")
    ap.add_argument("--json")
    ap.add_argument("--stream-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stream_child is not None:
        stream_child(args.stream_child, Path(args.dir))
        return
    if args.quick:
        args.fake_records, args.http_records, args.sst2_rows, args.stream_records = 2000, 160, 32, 20_000
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    print(f"# bench/ray_engine.py  {time.strftime('%Y-%m-%d %H:%M')}  Python {platform.python_version()}  "
          f"Ray {ray.__version__}  {os.cpu_count()} CPUs  latency {args.latency}s  concurrency {args.concurrency}")
    print(f"{'workload':<9} {'engine':<10} {'cpus':>4} {'records':>8} {'run_s':>8} {'run rec/s':>9} "
          f"{'steady r/s':>10} {'rec/CPU-s':>10} {'acc':>6}")
    args.workloads = set(args.workloads.split(","))
    with tempfile.TemporaryDirectory(prefix="oag-bench-ray-") as tmp:
        rows = overhead(args, Path(tmp)) if not args.only_stream else []
        for line in ratios(rows):
            print(line)
        stream = None
        if not args.skip_stream:
            (Path(tmp) / "stream").mkdir()
            stream = streaming(args.stream_records, Path(tmp) / "stream", args.stream_timeout)
            mib = 2**20
            print(f"streaming {stream['records']:,} records (fake, ray x2): {stream['seconds']:.1f} s, "
                  f"{stream['rps']:.0f} rec/s; driver RSS {stream['before'] / mib:.0f} MiB before, "
                  f"{stream['at_10k'] / mib:.0f} MiB at 10k, {stream['end'] / mib:.0f} MiB at the end, "
                  f"peak {stream['peak'] / mib:.0f} MiB; store {stream['store_bytes'] / mib:.0f} MiB "
                  f"({stream['store_bytes'] / stream['records']:.0f} B/record), output "
                  f"{stream['output_bytes'] / mib:.0f} MiB, input {stream['input_bytes'] / mib:.0f} MiB")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"overhead": rows, "streaming": stream}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
