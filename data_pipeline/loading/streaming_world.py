"""Make streaming's `World.detect()` see the rank and world size `build_loader` was given.

streaming 0.13 reads the rank, world size and node layout from the environment only (RANK,
WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE; torchrun sets them, torch.multiprocessing.spawn does
not), once, when a StreamingDataset is made. Here:
  * with torch.distributed initialized, the given rank and world size must match it; RANK and
    WORLD_SIZE, where the launcher did not set them, are filled in for this process from
    torch.distributed, and variables that contradict it are an error. LOCAL_RANK /
    LOCAL_WORLD_SIZE come from the host names of all ranks (one all_gather), whatever the
    launcher set, while the dataset is made: streaming's node is what shares /dev/shm and a local
    cache, a machine. On a cluster that is the launcher's node too; on a SLURM testbed with several
    nodes on one machine, two "node" leaders would both create the same shared-memory segment;
  * without it (one process reading as rank r of world_size: tests simulate the ranks of a global
    batch one after another), the variables are set only while the dataset is made, each simulated
    rank is its own node, so no rank waits at a node barrier for another, and streaming is kept
    from starting a process group of its own (which would wait for the other ranks). streaming's
    global sample order does not depend on how ranks sit on nodes, so a simulated rank reads what
    the real rank would.
Real multi-process runs must initialize torch.distributed before `build_loader`.
"""
from __future__ import annotations

import contextlib
import os
import socket

from data_pipeline.errors import DataError


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _local_layout_from_hosts(dist) -> dict[str, str]:
    hosts = [None] * dist.get_world_size()
    dist.all_gather_object(hosts, socket.gethostname())
    me = socket.gethostname()
    return {"LOCAL_WORLD_SIZE": str(hosts.count(me)), "LOCAL_RANK": str(hosts[:dist.get_rank()].count(me))}


@contextlib.contextmanager
def _environment(**values: str):
    """These environment variables set while the block runs, and restored (or removed) after it."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def streaming_world(rank: int, world_size: int):
    if not 0 <= rank < world_size:
        raise DataError(f"rank {rank} is not in [0, world_size={world_size})")
    dist = _dist()
    if dist is not None:
        if (rank, world_size) != (dist.get_rank(), dist.get_world_size()):
            raise DataError(f"build_loader got rank {rank} of {world_size}, but torch.distributed says "
                            f"rank {dist.get_rank()} of {dist.get_world_size()}")
        for key, value in (("RANK", rank), ("WORLD_SIZE", world_size)):
            if os.environ.setdefault(key, str(value)) != str(value):
                raise DataError(f"environment variable {key}={os.environ[key]} contradicts torch.distributed ({value})")
        with _environment(**_local_layout_from_hosts(dist)):
            yield
        return
    import streaming.base.dataset as streaming_dataset

    init_dist = streaming_dataset.maybe_init_dist
    streaming_dataset.maybe_init_dist = lambda: False  # one process: no process group to join
    try:
        with _environment(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK="0", LOCAL_WORLD_SIZE="1"):
            yield
    finally:
        streaming_dataset.maybe_init_dist = init_dist
