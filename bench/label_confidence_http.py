"""Label confidence against an endpoint that lists only the top 5 first-token logprobs (issue 18).

The project's own OpenAI-compatible server serves the embedded model (``local``) with
``max_top_logprobs=5``; SST-2 dev rows are labelled through ``OpenAICompatBackend`` with the
default ``score_mode`` (top_logprobs) by this checkout and, side by side, by an earlier
revision's source (``--baseline``, extracted with ``git archive``, run with PYTHONPATH).

    .venv/bin/python bench/label_confidence_http.py                      # 300 rows, baseline 7e752d8
    .venv/bin/python bench/label_confidence_http.py --rows 40 --json out.json
    .venv/bin/python bench/label_confidence_http.py --format text --skip votes-unconstrained

Task: ``template: "Review: {text}"``, labels positive/negative; ``--format chat`` (the default
task: the prompt ends "Answer with one of: positive, negative.") or ``text`` (the cue
"Sentiment:", labels not listed), sent as chat messages either way.

Servers (one process, one model, two ports)
    ``local``         the embedded model as it is: it enforces the constraint kinds it declares
                      (none until the local constrained decoder lands, so guided requests
                      answer 400 and the client learns, by probing, that it cannot constrain).
    ``local+choice``  the same model behind a bench stand-in that enforces ``choice`` by
                      scoring the options exactly (greedy: the best; sampled: from their
                      softmax) and reports the options' whole-answer log-probabilities as the
                      first token's alternatives.  Used only while ``local`` declares no
                      ``choice`` (``--stand-in off`` to leave it out).

Clients: this checkout and the baseline with ``score_mode`` top_logprobs; this checkout also
with ``score_mode="none"`` (votes only) and ``"echo"`` (exact scores: the reference).

Per client, server and resulting ``method``: records, accuracy, HTTP calls per record
(counted by the server, probes apart), and distributions that are uniform by default (every
label the same score from an estimate that measured nothing, i.e. not a measurement).
Records that fail are reported as ``(failed)`` with the first error.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
TOP = 5


# -- the server process -------------------------------------------------------------------------------
def _stand_in(inner: Any) -> Any:
    """``inner`` enforcing ``choice`` by scoring the options (a bench stand-in for a constrained decoder)."""
    from openautoglm.backends.base import Completion, ScoreRequest, TokenLogprob
    from openautoglm.backends.delegate import DelegatingBackend

    class ChoiceByScoring(DelegatingBackend):
        constraints = frozenset({"choice"})

        def generate(self, requests: Sequence[Any]) -> list[Any]:
            out: list[Any] = [None] * len(requests)
            plain = [i for i, r in enumerate(requests) if r.constraint is None]
            if plain:
                for i, comp in zip(plain, self.inner.generate([requests[i] for i in plain])):
                    out[i] = comp
            chosen = [i for i in range(len(requests)) if out[i] is None]
            scored = self.inner.score_batch([ScoreRequest(requests[i].prompt, requests[i].constraint.value)
                                             for i in chosen]) if chosen else []
            for i, res in zip(chosen, scored):
                req, options = requests[i], list(requests[i].constraint.value)
                top = dict(zip(options, res.logprobs))
                rng = random.Random(f"{req.seed}|{req.prompt}")
                if req.temperature > 0:
                    peak = max(res.logprobs)
                    weights = [math.exp((lp - peak) / req.temperature) for lp in res.logprobs]
                    texts = rng.choices(options, weights, k=req.n)
                else:
                    texts = [max(options, key=top.__getitem__)] * req.n
                for k, text in enumerate(texts):
                    if req.on_text is not None:
                        req.on_text(k, text)
                out[i] = Completion(texts=texts, finish_reasons=["stop"] * req.n, prompt_tokens=res.prompt_tokens,
                                    completion_tokens=sum(res.lengths[options.index(t)] for t in texts),
                                    logprobs=[[TokenLogprob(t, top[t], top)] for t in texts] if req.logprobs else None)
            return out

    return ChoiceByScoring(inner)


class HitCounter:
    """ASGI wrapper counting the requests to ``/v1/*``; ``GET /bench/hits`` reads the count."""

    def __init__(self, app: Any) -> None:
        self.app, self.hits, self.lock = app, 0, threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/bench/hits":
            body = json.dumps({"hits": self.hits}).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            with self.lock:
                self.hits += 1
        await self.app(scope, receive, send)


def serve(ports: list[int], stand_in: str) -> None:
    import uvicorn

    from openautoglm.backends.local import LocalBackend
    from openautoglm.serve.openai_api import create_openai_app

    model = LocalBackend()
    backends = {"local": model}
    if stand_in == "on" or (stand_in == "auto" and "choice" not in model.constraints):
        backends["local+choice"] = _stand_in(model)
    lock = threading.Lock()  # one model: one call at a time across both apps

    class Serialised:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            value = getattr(self.inner, name)
            if name in ("generate", "score_batch"):
                def locked(*args: Any, **kwargs: Any) -> Any:
                    with lock:
                        return value(*args, **kwargs)
                return locked
            return value

    servers = []
    for (name, backend), port in zip(backends.items(), ports):
        app = HitCounter(create_openai_app(Serialised(backend), "local", max_top_logprobs=TOP))  # type: ignore[arg-type]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        servers.append((name, port, server))
    while not all(s.started for _, _, s in servers):
        time.sleep(0.05)
    print(json.dumps({name: port for name, port, _ in servers}), flush=True)
    threading.Event().wait()


# -- the client process (runs under either source tree) ---------------------------------------------
def client(url: str, rows_path: Path, score_mode: str, out: Path, fmt: str) -> None:
    import httpx

    from openautoglm.backends.openai_compat import OpenAICompatBackend
    from openautoglm.core.pipeline import Pipeline
    from openautoglm.core.task import Task

    def hits() -> int:
        return int(httpx.get(url.rsplit("/v1", 1)[0] + "/bench/hits", timeout=10).json()["hits"])

    rows = json.loads(rows_path.read_text(encoding="utf-8"))
    backend = OpenAICompatBackend("local", base_url=url, score_mode=score_mode, timeout_s=300, max_retries=0)
    options: dict[str, Any] = {"format": "text", "answer_prefix": "Sentiment:"} if fmt == "text" else {}
    task = Task(name="sst2", template="Review: {text}", labels=["positive", "negative"], **options)
    start = hits()
    if hasattr(backend, "known_constraints"):
        backend.constraints  # noqa: B018 - this checkout probes an endpoint without a preset once
    probes = hits() - start
    records = []
    with Pipeline(model=backend, task=task, store=False) as pipe:
        for row in rows:
            before, t0 = hits(), time.perf_counter()
            try:
                res = pipe.run(text=row["text"])
                rec = {"method": res.get("method"), "label": res.get("label"), "scores": res.get("scores"),
                       "fallback": res.get("fallback")}
            except Exception as exc:  # noqa: BLE001 - a failed record is a result here
                rec = {"method": "(failed)", "label": None, "scores": None, "error": str(exc).splitlines()[0]}
            rec.update(gold=row["label"], calls=hits() - before, seconds=time.perf_counter() - t0)
            records.append(rec)
    out.write_text(json.dumps({"probes": probes, "records": records}), encoding="utf-8")
    backend.close()


# -- the driver ---------------------------------------------------------------------------------------
def _free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def uniform_by_default(rec: dict[str, Any]) -> bool:
    """Every label the same score from an estimate (not a vote, not an exact score)."""
    scores = rec.get("scores") or {}
    return len(scores) > 1 and len(set(scores.values())) == 1 and "first-token-estimate" in str(rec["method"])


def summarise(version: str, server: str, score_mode: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in data["records"]:
        groups[str(rec["method"])].append(rec)
    rows = []
    for method, recs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        rows.append({"client": version, "server": server, "score_mode": score_mode, "method": method,
                     "records": len(recs), "accuracy": sum(r["label"] == r["gold"] for r in recs) / len(recs),
                     "calls/record": sum(r["calls"] for r in recs) / len(recs),
                     "uniform by default": sum(uniform_by_default(r) for r in recs),
                     "s/record": sum(r["seconds"] for r in recs) / len(recs), "probes": data["probes"],
                     "first error": next((r["error"] for r in recs if r.get("error")), "")})
    all_recs = data["records"]
    rows.append({"client": version, "server": server, "score_mode": score_mode, "method": "(all)",
                 "records": len(all_recs), "accuracy": sum(r["label"] == r["gold"] for r in all_recs) / len(all_recs),
                 "calls/record": sum(r["calls"] for r in all_recs) / len(all_recs),
                 "uniform by default": sum(uniform_by_default(r) for r in all_recs),
                 "s/record": sum(r["seconds"] for r in all_recs) / len(all_recs), "probes": data["probes"],
                 "first error": ""})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd")
    s = sub.add_parser("serve")
    s.add_argument("--ports", type=lambda v: [int(p) for p in v.split(",")], required=True)
    s.add_argument("--stand-in", default="auto", choices=["auto", "on", "off"])
    c = sub.add_parser("client")
    c.add_argument("--url", required=True)
    c.add_argument("--rows", type=Path, required=True)
    c.add_argument("--score-mode", default="top_logprobs")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--format", default="chat", choices=["chat", "text"])
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--baseline", default="7e752d8")
    ap.add_argument("--stand-in", default="auto", choices=["auto", "on", "off"])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--format", default="chat", choices=["chat", "text"])
    ap.add_argument("--skip", default="", help="comma-separated runs to leave out: baseline, votes-unconstrained, "
                                               "votes-guided, echo")
    args = ap.parse_args(argv)
    if args.cmd == "serve":
        serve(args.ports, args.stand_in)
        return 0
    if args.cmd == "client":
        client(args.url, args.rows, args.score_mode, args.out, args.format)
        return 0

    sys.path.insert(0, str(ROOT))
    from bench.datasets import load
    from bench.reliability import extract_revision

    split = load("sst2", n_train=0, n_select=0, n_report=args.rows, seed=args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="label-conf-"))
    rows_path = tmp / "rows.json"
    rows_path.write_text(json.dumps(split.report), encoding="utf-8")
    trees = {"this checkout": ROOT / "src"}
    if args.baseline:
        trees[args.baseline] = extract_revision(args.baseline, tmp / "baseline")
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    ports = _free_ports(2)
    proc = subprocess.Popen([sys.executable, __file__, "serve", "--ports", ",".join(map(str, ports)),
                             "--stand-in", args.stand_in], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        servers: dict[str, int] = json.loads(proc.stdout.readline())
        skip = set(filter(None, args.skip.split(",")))
        runs = [(args.baseline, "local", "top_logprobs")] if args.baseline and "baseline" not in skip else []
        runs += [("this checkout", name, "top_logprobs") for name in servers]
        runs += [("this checkout", name, "none") for name in servers
                 if f"votes-{'guided' if name != 'local' else 'unconstrained'}" not in skip]
        runs += [("this checkout", "local", "echo")] if "echo" not in skip else []
        table: list[dict[str, Any]] = []
        for version, server, mode in runs:
            out = tmp / f"{version}-{server}-{mode}.json".replace(" ", "_")
            url = f"http://127.0.0.1:{servers[server]}/v1"
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, __file__, "client", "--url", url, "--rows", str(rows_path),
                                   "--score-mode", mode, "--out", str(out), "--format", args.format],
                                  env={**os.environ, "PYTHONPATH": f"{trees[version]}{os.pathsep}{ROOT}"},
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stderr[-2000:], file=sys.stderr)
                continue
            table += summarise(version, server, mode, json.loads(out.read_text(encoding="utf-8")))
            print(f"# {version} -> {server} ({mode}): {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    columns = ["client", "server", "score_mode", "method", "records", "accuracy", "calls/record", "uniform by default",
               "s/record", "probes"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in table:
        print("| " + " | ".join(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns) + " |")
    for row in table:
        if row["first error"]:
            print(f"\n{row['client']} -> {row['server']} ({row['score_mode']}) {row['method']}: {row['first error']}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
