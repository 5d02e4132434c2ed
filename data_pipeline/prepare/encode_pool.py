"""The worker side of `prepare`: processes that turn source images into the bytes a shard stores.

Workers only read, resize and encode (PIL); the parent writes the shards (part_writer.py). They
start with `spawn`, so they import PIL and numpy and never torch. That is what keeps the job's
memory small: shard writing needs streaming's MDSWriter, which imports torch (650 MB resident for
the CUDA build), and a forked worker would count the parent's copy in its own RSS (it did: 1.56 GB
over the process tree with 2 workers, against about 0.8 GB now).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice

from data_pipeline.prepare.image_prep import ImageSpec, SkippedImage, prepared_bytes
from data_pipeline.prepare.sources import SourceItem

CHUNK = 8  # images per task: amortizes the pool's per-task IPC (~0.1 ms) over ~25 ms of work
CHUNKS_IN_FLIGHT_PER_WORKER = 4

_spec: ImageSpec | None = None


def init_encoder(spec: ImageSpec) -> None:
    global _spec
    _spec = spec


def encode_chunk(items: list[SourceItem]) -> list[bytes | SkippedImage]:
    out: list[bytes | SkippedImage] = []
    for item in items:
        try:
            out.append(prepared_bytes(item, _spec))
        except SkippedImage as e:
            out.append(e)
    return out


def encoded_in_order(pool, items: Iterable[SourceItem], workers: int) -> Iterator[bytes | SkippedImage]:
    """encode_chunk's result for each item, in the items' order. A bounded number of chunks is in
    flight, so a slow consumer (a shard upload) holds the workers back instead of piling their
    output up in memory."""
    items = iter(items)
    pending: deque = deque()

    def submit() -> None:
        chunk = list(islice(items, CHUNK))
        if chunk:
            pending.append(pool.apply_async(encode_chunk, (chunk,)))

    for _ in range(CHUNKS_IN_FLIGHT_PER_WORKER * workers):
        submit()
    while pending:
        results = pending.popleft().get()  # re-raises a worker's unexpected error here
        submit()
        yield from results
