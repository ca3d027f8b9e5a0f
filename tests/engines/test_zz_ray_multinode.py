"""Two raylets on one machine: a head and a worker node started with ``ray start`` on
loopback, and a driver that joins with ``--address``; work runs on both nodes.

Runs last in this folder (it shuts the session's cluster down first: one Ray per process).
Each node is a ``ray start --block`` process of its own (own temp dir, own ports, token
authentication with a token made for the test), stopped with SIGTERM after: a blocking
``ray start`` kills and reaps its node's processes when it ends, and its children die with
it even if it is killed, so no Ray process is left behind and no one else's cluster is
touched (``ray stop`` would stop every Ray process on the machine).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from .conftest import cli_env, read_marks, write_marked_pipeline

pytestmark = [pytest.mark.ray, pytest.mark.slow]
NODE_IP = "127.0.0.2"  # loopback; Ray would turn 127.0.0.1 into the machine's network address
START_TIMEOUT_S = 240.0  # a loaded 2-core machine can take a minute to start a node


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind((NODE_IP, 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _node_args(temp_dir: str) -> list[str]:
    """Options every node takes: loopback, 1 CPU, its own agent and metrics ports (two raylets
    on one machine must not share them), the test's temp dir."""
    agent, grpc, metrics, runtime_env = _free_ports(4)
    return ["--node-ip-address", NODE_IP, "--num-cpus", "1", "--disable-usage-stats", "--temp-dir", temp_dir,
            "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(grpc),
            "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(runtime_env), "--block"]


class _Node:
    """One ``ray start --block`` process and its log."""

    def __init__(self, exe: str, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        with log.open("wb") as fh:
            self.proc = subprocess.Popen([exe, "start", *args], stdout=fh, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_started(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while "Ray runtime started" not in self.text():
            if self.proc.poll() is not None:
                raise AssertionError(f"ray start exited with {self.proc.returncode}:\n{self.text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"ray start did not start within {timeout_s:.0f} s:\n{self.text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM (the node kills and reaps its processes), SIGKILL of the group if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)


def _wait_for_nodes(address: str, n: int, env: dict[str, str], timeout_s: float) -> None:
    """Until the cluster at ``address`` has ``n`` live nodes (a node's ``ray start`` may
    return before the head lists it)."""
    code = ("import sys, time, logging, ray\n"
            f"ray.init(address={address!r}, _node_ip_address={NODE_IP!r}, logging_level=logging.WARNING)\n"
            f"deadline = time.monotonic() + {timeout_s}\n"
            f"while sum(1 for x in ray.nodes() if x['Alive']) < {n}:\n"
            "    if time.monotonic() > deadline: sys.exit('nodes: %r' % ray.nodes())\n"
            "    time.sleep(0.5)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=timeout_s + 120)
    assert res.returncode == 0, res.stderr[-3000:]


def _leftovers(temp_dir: str) -> list[str]:
    """Processes still running for this test's nodes (their command lines name its temp dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if temp_dir in cmd and state != "Z":
            found.append(f"{proc.name} {cmd[:120]}")
    return found


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``(address, env)``: a head and a worker node on loopback; ``env`` carries the token."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()  # the session cluster of the other tests
    exe = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    # short: Ray's socket paths under it must fit in 107 bytes
    temp_dir = tempfile.mkdtemp(prefix="oag-ray-", dir="/tmp")
    env = cli_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=uuid.uuid4().hex, RAY_USAGE_STATS_ENABLED="0")
    port = _free_ports(1)[0]
    address = f"{NODE_IP}:{port}"
    nodes: list[_Node] = []
    try:
        nodes.append(_Node(exe, ["--head", "--port", str(port), "--include-dashboard=false", *_node_args(temp_dir)],
                           tmp_path / "head.log", env))
        nodes[0].wait_started(START_TIMEOUT_S)
        nodes.append(_Node(exe, ["--address", address, *_node_args(temp_dir)], tmp_path / "worker.log", env))
        nodes[1].wait_started(START_TIMEOUT_S)
        _wait_for_nodes(address, 2, env, START_TIMEOUT_S)
        yield address, env
    finally:
        for node in reversed(nodes):
            node.stop()
        deadline = time.monotonic() + 60
        while _leftovers(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = _leftovers(temp_dir)
        for line in left:
            try:
                os.kill(int(line.split(" ", 1)[0]), signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray processes left behind: {left}"


def test_a_run_spreads_over_a_head_and_a_worker_node(two_nodes: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    address, env = two_nodes
    yaml = write_marked_pipeline(tmp_path)
    n = 60
    (tmp_path / "in.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(n)), encoding="utf-8")
    marks, out = tmp_path / "marks.txt", tmp_path / "out.jsonl"
    res = subprocess.run(
        [sys.executable, "-m", "openautoglm.cli", "run", str(yaml), "-i", str(tmp_path / "in.csv"), "-o", str(out),
         "--store", str(tmp_path / "s.db"), "--engine", "ray", "--address", address, "--workers", "2",
         "--batch-size", "5", "--no-progress"],
        capture_output=True, text=True, timeout=600,
        env={**env, "OPENAUTOGLM_TEST_MARKS": str(marks), "OPENAUTOGLM_TEST_SLEEP": "0.02"})
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["output"]["value"] for r in rows] == list(range(n))
    nodes = {node for _, _, _, node in read_marks(marks)}
    assert len(nodes) == 2 and "" not in nodes  # one actor on each raylet
