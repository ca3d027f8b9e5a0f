"""A local Ray cluster on loopback for the engine tests (``ray.init(num_cpus=2)``), shared by
the session; drivers started as subprocesses join it with ``--address``."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

STEPS_MODULE = '''
import os, time


def mark(ctx):
    """Note each execution (tag, id, pid, Ray node) in a file, then answer with the record's id."""
    node = ""
    try:
        import ray
        node = ray.get_runtime_context().get_node_id()
    except Exception:
        pass
    with open(os.environ["OPENAUTOGLM_TEST_MARKS"], "a") as fh:
        fh.write(f"{os.environ.get('OPENAUTOGLM_TEST_TAG', '')} {ctx['id']} {os.getpid()} {node}\\n")
    if str(ctx["id"]) == os.environ.get("OPENAUTOGLM_TEST_DIE_AT", "") and not os.path.exists(
            os.environ["OPENAUTOGLM_TEST_MARKS"] + ".died"):
        open(os.environ["OPENAUTOGLM_TEST_MARKS"] + ".died", "w").close()
        os._exit(1)  # the actor process dies mid-chunk
    time.sleep(float(os.environ.get("OPENAUTOGLM_TEST_SLEEP", "0")))
    return {"value": int(ctx["id"])}
'''

MARK_PIPELINE = """name: marked
model: fake
steps:
  - name: mark
    call: steps_mod:mark
"""

FAKE_PIPELINE = """name: senti
model: {model}
steps:
  - name: sentiment
    task:
      name: sentiment
      template: "Review: {{text}}"
      labels: [positive, negative]
"""


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
                 _node_ip_address="127.0.0.2")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def write_marked_pipeline(folder: Path) -> Path:
    (folder / "steps_mod.py").write_text(STEPS_MODULE, encoding="utf-8")
    path = folder / "marked.yaml"
    path.write_text(MARK_PIPELINE, encoding="utf-8")
    return path


def read_marks(path: Path) -> list[tuple[str, int, int, str]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        tag, idx, pid, *node = line.split(" ")
        rows.append((tag, int(idx), int(pid), node[0] if node else ""))
    return rows


def cli_env(**extra: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAUTOGLM_TEST_")}
    env.update({k: str(v) for k, v in extra.items()})
    return env
