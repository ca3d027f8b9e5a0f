"""The Ray engine: chunks run on a pool of Ray actors, each with its own backend.

The driver (:mod:`.driver`) stays in this process: it reads the records, skips what the
store already holds, and sends each chunk still to do to the least busy actor (at most
``in_flight`` chunks per actor, so an actor never waits for the driver); results come back
here and only here are they committed.  Each actor builds the pipeline from its config once
(``setup``: the local model is loaded once per actor; an HTTP backend keeps one client with
its ``concurrency`` limit), so a model that cannot load fails the run once, before any
record is sent.  An actor that dies mid-run (killed, out of memory, its node lost) is
replaced and its chunks are sent again; a chunk whose actor dies :data:`MAX_TRIES` times
fails its records (with that reason), not the run.

Connecting: ``address=None`` starts a local Ray instance on loopback for this run (unless
``RAY_ADDRESS`` names a cluster); ``"auto"`` joins the cluster started on this machine with
``ray start``; ``"host:6379"`` or ``"ray://host:10001"`` joins a remote one.  A remote
address is probed first, so an unreachable one fails within :data:`CONNECT_TIMEOUT_S`
instead of Ray's endless reconnecting.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from ...errors import OpenAutoGLMError
from . import RAY_INSTALL_HINT, EngineUnavailable
from .ray_worker import PipelineWorker, RecordFailed, pipeline_spec, raise_from_worker

if TYPE_CHECKING:
    from ..pipeline import Pipeline

CONNECT_TIMEOUT_S = 30.0
#: how often one chunk may lose its actor before its records fail
MAX_TRIES = 3
#: environment passed on to the actors (API keys, endpoints, our own settings)
_ENV_PREFIXES = ("OPENAUTOGLM_",)
_ENV_SUFFIXES = ("_API_KEY", "_BASE_URL")


class WorkerStartError(OpenAutoGLMError):
    """A Ray worker could not build the pipeline or load its model: the run stops once."""


def import_ray() -> Any:
    """Ray, or one clear line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise EngineUnavailable(f"the Ray engine needs Ray, which is not installed: {RAY_INSTALL_HINT}") from None
    return ray


def local_node_ip() -> str:
    """Where a Ray instance started for one run listens: loopback.  (Ray turns 127.0.0.1 into
    the machine's network address on Linux; any other loopback address is kept.)"""
    return os.environ.get("OPENAUTOGLM_RAY_NODE_IP") or ("127.0.0.2" if sys.platform.startswith("linux")
                                                          else "127.0.0.1")


def _split_address(address: str) -> tuple[str, int, bool]:
    client = address.startswith("ray://")
    rest = address[len("ray://"):] if client else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise EngineUnavailable(f"bad Ray address {address!r}",
                                hint="use auto, HOST:6379 (the head's GCS port) or ray://HOST:10001 (Ray Client)")
    return host.strip("[]"), int(port), client


def connect(ray: Any, address: str | None, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
    """Connect this process to Ray; returns whether this call started the connection (and
    should shut it down).  An unreachable cluster raises :class:`EngineUnavailable` in time."""
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address in (None, "", "local"):
        # "local", not None: Ray would join the last `ray start` cluster of this machine
        # (/tmp/ray/ray_current_cluster), even a dead one
        ray.init(address="local", include_dashboard=False, _node_ip_address=local_node_ip(), **quiet)
        return True
    if address == "auto":
        try:
            ray.init(address="auto", **quiet)
        except ConnectionError as exc:
            raise EngineUnavailable(f"no running Ray cluster found on this machine (--address auto): {exc}",
                                    hint="start one with `ray start --head`, or give --address HOST:6379") from None
        return True
    host, port, client = _split_address(address)
    t0 = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=min(10.0, timeout_s)):
            pass
    except OSError as exc:
        raise EngineUnavailable(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}",
                                hint="check the address and that the head node runs (`ray status` there); "
                                "HOST:6379 is the head's GCS port, ray://HOST:10001 its Ray Client port") from None
    if not client and host.startswith("127."):
        quiet["_node_ip_address"] = host  # a cluster on loopback: this driver's node is there too
    box: dict[str, BaseException | None] = {}

    def init() -> None:
        try:
            ray.init(address=address, **quiet)
            box["error"] = None
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=init, name="openautoglm-ray-connect", daemon=True)
    thread.start()
    thread.join(max(1.0, timeout_s - (time.monotonic() - t0)))
    if "error" not in box:
        raise EngineUnavailable(f"{address} accepts connections but did not answer as a Ray cluster within "
                                f"{timeout_s:.0f} s", hint="is it the head's GCS port (6379) or Ray Client port "
                                "(ray://HOST:10001)?")
    if box["error"] is not None:
        raise EngineUnavailable(f"cannot join the Ray cluster at {address}: {box['error']}") from None
    return True


@dataclass
class _Job:
    ticket: int
    records: list[dict[str, Any]]
    keys: list[str]
    actor: Any = None
    tries: int = 0


class RayExecutor:
    """A pool of :class:`PipelineWorker` actors; see the module docstring."""

    def __init__(self, ray: Any, pipeline: "Pipeline", workers: int | None = None, worker_cpus: float = 1.0,
                 in_flight: int = 2, start_timeout_s: float = 900.0, reserve_cpus: float = 0.0) -> None:
        self.ray = ray
        self.cpus = float(worker_cpus)
        self.start_timeout_s = start_timeout_s
        cluster_cpus = float(ray.cluster_resources().get("CPU", 0))
        free = cluster_cpus - reserve_cpus  # reserve: CPUs left to Ray Data's read tasks (a URI input)
        workers = workers or max(1, int(free // self.cpus))
        if workers * self.cpus > free:
            why = f", and {reserve_cpus:g} must stay free for Ray Data to read the input" if reserve_cpus else ""
            raise EngineUnavailable(f"{workers} workers of {self.cpus:g} CPUs need {workers * self.cpus:g} CPUs; the "
                                    f"Ray cluster has {cluster_cpus:g}{why}",
                                    hint="lower --workers or --worker-cpus, or add nodes to the cluster")
        try:
            self._spec = ray.put(pipeline_spec(pipeline))
        except Exception as exc:  # noqa: BLE001 - e.g. a Backend object that cannot be pickled
            raise EngineUnavailable(f"the pipeline cannot be sent to Ray workers: {type(exc).__name__}: {exc}",
                                    hint="name the model (e.g. model='local' or a YAML model block) instead of "
                                    "passing a Backend object") from None
        env = {k: v for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES) or k.endswith(_ENV_SUFFIXES)}
        self._cls = ray.remote(PipelineWorker).options(num_cpus=self.cpus, max_restarts=0, max_task_retries=0,
                                                       runtime_env={"env_vars": env} if env else None)
        self.window = workers * max(1, in_flight)
        self.per_actor = max(1, in_flight)
        self._pending: dict[Any, _Job] = {}
        self._load: dict[Any, int] = {}
        self.workers: list[dict[str, Any]] = []  # where each actor runs (pid, host)
        actors = [self._cls.remote(self._spec) for _ in range(workers)]
        try:
            self._ready(actors)
        except BaseException:
            self._kill(actors)
            raise

    # -- the pool ----------------------------------------------------------------------
    def _ready(self, actors: list[Any]) -> None:
        """Wait for ``actors`` to build the pipeline; the first that cannot stops the run."""
        ray = self.ray
        refs = [a.setup.remote() for a in actors]
        try:
            infos = ray.get(refs, timeout=self.start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise EngineUnavailable(f"the Ray workers did not start within {self.start_timeout_s:.0f} s",
                                    hint="are there enough free CPUs in the cluster (`ray status`)?") from None
        except ray.exceptions.RayError as exc:
            raise WorkerStartError(f"a Ray worker died while starting: {_first_line(exc)}") from None
        for info in infos:
            if "error" in info:
                raise WorkerStartError(f"a Ray worker could not start the pipeline (host {info['host']}, pid "
                                       f"{info['pid']}): {info['error']}",
                                       hint="no record was sent; fix the model or the pipeline, then rerun")
        for actor, info in zip(actors, infos):
            self._load[actor] = 0
            self.workers.append(info)

    def _replace(self, actor: Any) -> None:
        if actor not in self._load:
            return  # already replaced (it held more than one chunk)
        del self._load[actor]
        self._kill([actor])
        fresh = self._cls.remote(self._spec)
        self._ready([fresh])

    def _kill(self, actors: list[Any]) -> None:
        for actor in actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def _dispatch(self, job: _Job) -> None:
        actor = min(self._load, key=self._load.__getitem__)
        job.actor = actor
        self._load[actor] += 1
        self._pending[actor.process.remote(job.records, job.keys)] = job

    # -- Executor ----------------------------------------------------------------------
    def submit(self, ticket: int, records: list[dict[str, Any]], keys: list[str]) -> None:
        self._dispatch(_Job(ticket, records, keys))

    def pending(self) -> int:
        return len(self._pending)

    def next_result(self) -> tuple[int, list[Any], list[Any], dict[str, Any], float]:
        ray = self.ray
        while True:
            ready, _ = ray.wait(list(self._pending), num_returns=1)
            job = self._pending.pop(ready[0])
            if job.actor in self._load:
                self._load[job.actor] -= 1
            try:
                reply = ray.get(ready[0])
            except ray.exceptions.RayActorError as exc:  # the actor died: replace it, send the chunk again
                self._replace(job.actor)
                job.tries += 1
                if job.tries >= MAX_TRIES:
                    why = RecordFailed(f"the Ray worker running this record died {job.tries} times; last: "
                                       f"{_first_line(exc)}")
                    return job.ticket, [why] * len(job.records), [], {}, 0.0
                self._dispatch(job)
                continue
            except ray.exceptions.RayError as exc:
                raise OpenAutoGLMError(f"a Ray worker failed: {_first_line(exc)}") from None
            if reply[0] == "raise":
                raise_from_worker(*reply[1:])
            _, outs, calls, cache, seconds = reply
            return job.ticket, outs, calls, cache, seconds

    def close(self) -> None:
        self._pending.clear()
        self._kill(list(self._load))
        self._load.clear()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Ray, connected for the ``with`` block (see :func:`connect`); disconnected after if this
    block connected it."""
    ray = import_ray()
    owned = connect(ray, address)
    try:
        yield ray
    finally:
        if owned:
            ray.shutdown()


@contextmanager
def ray_executor(pipeline: "Pipeline", address: str | None = None, workers: int | None = None,
                 worker_cpus: float | None = None, in_flight: int = 2,
                 reserve_cpus: float | None = None) -> Iterator[RayExecutor]:
    """Connect to Ray (see :func:`connect`), start the actor pool; stop both afterwards.
    ``reserve_cpus``: CPUs the pool leaves free (Ray Data reading the input needs one)."""
    with ray_session(address) as ray:
        executor = RayExecutor(ray, pipeline, workers=workers, worker_cpus=worker_cpus or 1.0, in_flight=in_flight,
                               reserve_cpus=reserve_cpus or 0.0)
        try:
            yield executor
        finally:
            executor.close()
