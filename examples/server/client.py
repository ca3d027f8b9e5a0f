"""Start the server on the embedded model and use it the way other programs would.

    .venv/bin/python examples/server/client.py

1. classify one review through the task API (label, confidence, the exact prompt);
2. ask the same model through the OpenAI-compatible API (streaming);
3. upload examples/server/reviews.csv, run the pipeline over it in the background, wait,
   and print accuracy, calibration and latency from the run report.

``openautoglm serve --pipelines examples/server/pipelines`` serves the same thing on
http://127.0.0.1:8000/ for a browser (the web UI) or for curl.  The reviews are 8 rows of
the SST-2 sample in examples/sentiment/reviews.csv (GLUE SST-2, Socher et al. 2013).
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from openautoglm.serve import ServerConfig, create_app

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    config = ServerConfig(model="local", home=Path(tempfile.mkdtemp()), pipelines_dir=HERE / "pipelines")
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=120) as http:
            # 1. the task API: one record, synchronously
            out = http.post("/api/pipelines/sentiment/run",
                            json={"inputs": {"text": "a gorgeous, witty, seductive movie."}}).json()
            print(f"task API: {out['result']['label']} (confidence {out['result']['confidence']:.2f},"
                  f" {out['result']['method']}) in {out['latency_ms']:.0f} ms")

            # 2. the OpenAI-compatible API, streamed (any OpenAI client works the same way)
            body = {"model": "local", "max_tokens": 20, "temperature": 0, "stream": True,
                    "messages": [{"role": "user", "content": "Name a famous film director."}]}
            print("OpenAI API (streamed): ", end="", flush=True)
            with http.stream("POST", "/v1/chat/completions", json=body) as resp:
                import json

                for line in resp.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        delta = json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                        print(delta, end="", flush=True)
            print()

            # 3. a background run over a file, with progress and a report
            with (HERE / "reviews.csv").open("rb") as f:
                upload = http.post("/api/uploads", files={"file": ("reviews.csv", f, "text/csv")}).json()
            run = http.post("/api/runs", json={"upload_id": upload["upload_id"], "pipeline": "sentiment",
                                               "label_column": "label"}).json()
            while run["status"] in ("queued", "running"):
                time.sleep(0.3)
                run = http.get(f"/api/runs/{run['run_id']}").json()
            report = http.get(f"/api/runs/{run['run_id']}/report").json()
            q, t = report["quality"], report["timing"]
            print(f"run {run['run_id']}: {run['status']}, {run['done']}/{run['total']} records;"
                  f" accuracy {q['accuracy']:.2f}, ECE {q['calibration']['ece']:.2f};"
                  f" {t['records_per_s']:.1f} records/s, P50 {t['p50_ms']:.0f} ms")
            print(f"browse it: {base}/runs/{run['run_id']} (while this script runs); metrics: {base}/metrics")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


if __name__ == "__main__":
    main()
