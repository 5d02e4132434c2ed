"""Inception feature extraction on Ray: actors each take a range of whole batches and return float64 sums.

The driver splits the image set into parts of whole batches (so every batch is the same tensor a
single process would see: features are bit-identical at the same torch thread count), hands parts to actors as they free up,
and merges the sums in part order, so the result does not depend on scheduling. Actors are spread
over the cluster's nodes (Ray's SPREAD strategy: one a node while there are nodes with room). An
actor that dies (killed, OOM, node lost) is replaced, wherever Ray finds room, and its part re-run,
up to `max_retries` times per part; an exception raised by the extraction itself (a bad image) is
not retried but reported.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, ObjectLostError, RayActorError, WorkerCrashedError

from hieratok.eval.extract import Extracted, extract
from hieratok.eval.inception import FID_FEATURE, ISC_FEATURE, load_inception

WORKER_DEATH = (RayActorError, ActorDiedError, ActorUnavailableError, WorkerCrashedError, ObjectLostError)


@ray.remote
class InceptionWorker:
    """Holds one Inception; `extract` runs a batch range of an image set through it."""

    def __init__(self, weights: str, features: list[str], threads: int):
        import torch

        torch.set_num_threads(threads)
        self.model = load_inception(weights, "cuda" if ray.get_gpu_ids() else "cpu", tuple(features))

    def extract(self, source, batch_size: int, keep: tuple[str, ...], start: int, stop: int,
                limit: int | None, crash_once_marker: str | None = None,
                hold_on_node: tuple[str, str] | None = None) -> tuple[Extracted, str]:
        """The range's sums, and the id of the node that computed them."""
        node = ray.get_runtime_context().get_node_id()

        def faults(batch_index: int) -> None:
            """Fault injection for tests, after an actor's first batch. crash_once_marker: the first
            actor there exits hard, once per marker file. hold_on_node (node id, marker file): an actor
            on that node writes the marker and stays there until it is killed (its node removed)."""
            if batch_index != 0:
                return
            if hold_on_node is not None and hold_on_node[0] == node:
                with open(hold_on_node[1], "w") as f:
                    f.write(node)
                while True:
                    time.sleep(1)
            if crash_once_marker is None:
                return
            try:
                with open(crash_once_marker, "x") as f:
                    f.write(str(os.getpid()))
            except FileExistsError:
                return
            os._exit(1)

        return extract(source, self.model, batch_size, keep=keep, start_batch=start, stop_batch=stop,
                       limit=limit, on_batch=faults), node


@dataclass
class RayRunInfo:
    workers: int
    parts: int
    retries: int  # parts re-run after their actor died
    nodes: int = 1  # Ray nodes whose results were merged


def split_batches(num_images: int, batch_size: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) batch ranges covering ceil(num_images / batch_size) batches in `parts` near-equal runs."""
    n_batches = -(-num_images // batch_size)
    parts = max(1, min(parts, n_batches))
    bounds = [round(k * n_batches / parts) for k in range(parts + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def ensure_ray(address: str | None, num_cpus: int) -> bool:
    """Connect to `address`, or start a local Ray; True when this call started it (so it should stop it)."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        # "local": a new cluster of our own, even when `ray start` left one that plain init() would join
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    return True


class RayInceptionPool:
    """`workers` Inception actors, started on first use and kept for later image sets; Ray must be up.

    Each actor takes 1 CPU (and `gpus_per_worker` GPUs) and `threads_per_worker` torch threads (default
    cpu_count // workers: the machine's cores shared out).
    Use as a context manager, or call `close()`.
    """

    def __init__(self, weights: str | Path, workers: int, *, gpus_per_worker: float = 0.0,
                 features: tuple[str, ...] = (FID_FEATURE, ISC_FEATURE), max_retries: int = 2,
                 threads_per_worker: int | None = None):
        if workers < 1:
            raise ValueError(f"--ray-workers must be at least 1, got {workers}")
        self.weights, self.workers, self.features = str(weights), workers, sorted(set(features))
        self.options = {"num_cpus": 1, "num_gpus": gpus_per_worker, "max_restarts": 0, "scheduling_strategy": "SPREAD"}
        self.threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
        self.max_retries = max_retries
        self.actors: list = []

    def _new_actor(self):
        return InceptionWorker.options(**self.options).remote(self.weights, self.features, self.threads)

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []

    def __enter__(self) -> "RayInceptionPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def extract(self, source, batch_size: int, *, keep: tuple[str, ...] = (), limit: int | None = None,
                parts_per_worker: int = 2, crash_once_marker: str | None = None,
                hold_on_node: tuple[str, str] | None = None) -> tuple[Extracted, RayRunInfo]:
        """`extract` of an indexable image set (folder or .npz), split over the actors in whole batches."""
        if source.num_images is None:
            raise ValueError(f"{source.describe()['path']}: shards are streamed and cannot be split across Ray "
                             "actors; use a folder or an .npz, or run without --ray-workers")
        missing = [k for k in keep if k not in self.features]
        if missing:
            raise ValueError(f"the pool's actors extract {self.features}, not {missing}")
        n = source.num_images if limit is None else min(limit, source.num_images)
        ranges = split_batches(n, batch_size, self.workers * parts_per_worker)
        while len(self.actors) < min(self.workers, len(ranges)):
            self.actors.append(self._new_actor())

        def submit(slot: int, part: int):
            start, stop = ranges[part]
            return self.actors[slot].extract.remote(source, batch_size, tuple(keep), start, stop,
                                                    n - start * batch_size, crash_once_marker, hold_on_node)

        todo = list(range(len(ranges)))
        pending = {}  # object ref -> (part, actor slot)
        for slot in range(min(len(self.actors), len(ranges))):
            part = todo.pop(0)
            pending[submit(slot, part)] = (part, slot)
        results: dict[int, tuple[Extracted, str]] = {}
        attempts = [0] * len(ranges)
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            part, slot = pending.pop(ref)
            try:
                results[part] = ray.get(ref)
            except WORKER_DEATH as e:
                attempts[part] += 1
                if attempts[part] > self.max_retries:
                    raise RuntimeError(f"Ray worker died {attempts[part]} times on batches {ranges[part]} "
                                       f"of {source.describe()['path']}; giving up: {e}") from e
                ray.kill(self.actors[slot], no_restart=True)
                self.actors[slot] = self._new_actor()  # a fresh actor takes the dead one's slot and part
                todo.insert(0, part)
            if todo:
                nxt = todo.pop(0)
                pending[submit(slot, nxt)] = (nxt, slot)
        merged = results[0][0]
        for part in range(1, len(ranges)):  # in part order: the sums do not depend on scheduling
            merged.merge(results[part][0])
        return merged, RayRunInfo(workers=min(self.workers, len(ranges)), parts=len(ranges), retries=sum(attempts),
                                  nodes=len({node for _, node in results.values()}))
