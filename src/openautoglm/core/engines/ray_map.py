"""An ordered map over chunks on a pool of Ray actors, for work that is not a pipeline
(the data toolkit's per-row steps: ``data clean`` and ``data profile`` with ``--engine ray``).

Each actor builds its worker once (``factory(*args)``, e.g. a PII detector and a language
model) and then applies ``worker(chunk)`` to the chunks it is sent; :meth:`ChunkPool.map`
yields the results in input order, keeping at most ``in_flight`` chunks per actor, so the
driver's memory does not grow with the input.  A worker that cannot be built stops the job
once (:class:`~.ray_engine.WorkerStartError`, with the worker's error); an actor that dies
is replaced and its chunks are sent again, up to :data:`~.ray_engine.MAX_TRIES` times each.
The work must be a pure function of the chunk (it may run twice).
"""

from __future__ import annotations

import os
import socket
from collections import deque
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

from . import EngineUnavailable
from .ray_engine import MAX_TRIES, WorkerStartError, _first_line, ray_session


class ChunkActor:
    """What runs inside one actor (plain Python; the pool wraps it with ``ray.remote``)."""

    def __init__(self, factory: Callable[..., Callable[[Any], Any]], args: tuple[Any, ...]) -> None:
        self.factory, self.args = factory, args
        self.worker: Callable[[Any], Any] | None = None

    def setup(self) -> dict[str, Any]:
        where = {"pid": os.getpid(), "host": socket.gethostname()}
        try:
            self.worker = self.factory(*self.args)
        except Exception as exc:  # noqa: BLE001 - reported once to the driver
            return {"error": f"{type(exc).__name__}: {exc}", **where}
        return where

    def run(self, chunk: Any) -> Any:
        assert self.worker is not None
        return self.worker(chunk)


class ChunkPool:
    """``workers`` actors of ``worker_cpus`` CPUs running ``factory(*args)``; see the module docstring."""

    def __init__(self, ray: Any, factory: Callable[..., Callable[[Any], Any]], args: tuple[Any, ...] = (), *,
                 workers: int | None = None, worker_cpus: float | None = None, in_flight: int = 2,
                 start_timeout_s: float = 900.0) -> None:
        self.ray, self.cpus, self.start_timeout_s = ray, float(worker_cpus or 1.0), start_timeout_s
        cluster_cpus = float(ray.cluster_resources().get("CPU", 0))
        count = workers or max(1, int(cluster_cpus // self.cpus))
        if count * self.cpus > cluster_cpus:
            raise EngineUnavailable(f"{count} workers of {self.cpus:g} CPUs need {count * self.cpus:g} CPUs; the "
                                    f"Ray cluster has {cluster_cpus:g}", hint="lower --workers or --worker-cpus")
        self._cls = ray.remote(ChunkActor).options(num_cpus=self.cpus, max_restarts=0, max_task_retries=0)
        self._payload = (factory, args)
        self.window = count * max(1, in_flight)
        self.actors: list[Any] = []
        try:
            self.actors = self._start(count)
        except BaseException:
            self.close()
            raise

    def _start(self, count: int) -> list[Any]:
        ray = self.ray
        actors = [self._cls.remote(*self._payload) for _ in range(count)]
        self.actors += actors
        try:
            infos = ray.get([a.setup.remote() for a in actors], timeout=self.start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise EngineUnavailable(f"the Ray workers did not start within {self.start_timeout_s:.0f} s",
                                    hint="are there enough free CPUs in the cluster (`ray status`)?") from None
        except ray.exceptions.RayError as exc:
            raise WorkerStartError(f"a Ray worker died while starting: {_first_line(exc)}") from None
        for info in infos:
            if "error" in info:
                raise WorkerStartError(f"a Ray worker could not start (host {info['host']}, pid {info['pid']}): "
                                       f"{info['error']}", hint="nothing was processed; fix the cause, then rerun")
        return actors

    def map(self, chunks: Iterable[Any]) -> Iterator[Any]:
        """``worker(chunk)`` of each chunk, in input order."""
        ray = self.ray
        load = {a: 0 for a in self.actors}
        order: deque[list[Any]] = deque()  # per chunk: [ref, actor, chunk, tries]

        def send(job: list[Any]) -> None:
            actor = min(load, key=load.__getitem__)
            load[actor] += 1
            job[0], job[1] = actor.run.remote(job[2]), actor

        it = iter(chunks)
        exhausted = False
        while True:
            while not exhausted and len(order) < self.window:
                try:
                    chunk = next(it)
                except StopIteration:
                    exhausted = True
                    break
                job = [None, None, chunk, 0]
                send(job)
                order.append(job)
            if not order:
                return
            job = order[0]
            try:
                result = ray.get(job[0])
            except ray.exceptions.RayActorError as exc:  # replace the actor, send its chunks again
                dead = job[1]
                if dead in load:
                    del load[dead]
                    self.actors.remove(dead)
                    self.ray.kill(dead, no_restart=True)
                    fresh = self._start(1)[0]
                    load[fresh] = 0
                for other in order:
                    if other[1] is dead:
                        other[3] += 1
                        if other[3] >= MAX_TRIES:
                            raise EngineUnavailable(f"a Ray worker died {other[3]} times on the same chunk; last: "
                                                    f"{_first_line(exc)}") from None
                        send(other)
                continue
            order.popleft()
            if job[1] in load:
                load[job[1]] -= 1
            yield result

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []


@contextmanager
def chunk_pool(factory: Callable[..., Callable[[Any], Any]], args: tuple[Any, ...] = (), *,
               address: str | None = None, workers: int | None = None, worker_cpus: float | None = None,
               in_flight: int = 2) -> Iterator[ChunkPool]:
    """Connect to Ray (see :func:`~.ray_engine.connect`), start the pool; stop both afterwards."""
    with ray_session(address) as ray:
        pool = ChunkPool(ray, factory, args, workers=workers, worker_cpus=worker_cpus, in_flight=in_flight)
        try:
            yield pool
        finally:
            pool.close()
