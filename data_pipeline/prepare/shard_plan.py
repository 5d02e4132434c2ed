"""The plan of a `prepare` job: which sample goes to which split and shard, fixed before any work.

Items are sorted by key and shuffled with the seed (so WDS shards mix classes), capped by
`--limit`, and the first round(N * split_val) go to `val`. Each split is cut into parts of
`samples_per_shard` items; one part is written by one worker as one shard. The plan depends only
on the source listing and the options that shape the output (never on --workers), so a resumed or
repeated run writes the same shards. Its fingerprint guards resumes against a changed source.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from data_pipeline.prepare.image_prep import SkippedImage, prepared_bytes
from data_pipeline.prepare.options import PrepareOptions
from data_pipeline.prepare.sources import Source, SourceItem

# at least this many shards per split when the data allows: a WDS reader needs a shard for every
# (rank, worker), and MDS downloads and caches shard by shard
MIN_SHARDS = 64
SIZE_PROBE_ITEMS = 16


@dataclass
class Part:
    split: str  # "train", "val", or "" when the job has no val split (shards at the root)
    index: int  # within its split
    items: list[SourceItem]

    @property
    def id(self) -> str:
        return f"{self.split or 'all'}-{self.index:05d}"

    def rel_path(self, fmt: str) -> str:
        """Final path under the output root: an MDS part folder or a WDS tar."""
        name = f"part-{self.index:05d}" if fmt == "mds" else f"shard-{self.index:05d}.tar"
        return f"{self.split}/{name}" if self.split else name


@dataclass
class Plan:
    fingerprint: str
    samples_per_shard: int
    splits: dict[str, list[SourceItem]]
    parts: list[Part]


def split_items(source: Source, opts: PrepareOptions) -> dict[str, list[SourceItem]]:
    items = sorted(source.items, key=lambda it: it.key)
    order = np.random.default_rng(opts.seed).permutation(len(items))
    shuffled = [items[i] for i in order]
    if opts.limit is not None:
        shuffled = shuffled[:opts.limit]
    if opts.split_val <= 0:
        return {"": shuffled}
    n_val = min(len(shuffled) - 1, max(1, round(len(shuffled) * opts.split_val)))
    return {"train": shuffled[n_val:], "val": shuffled[:n_val]}


def fingerprint(source: Source, opts: PrepareOptions) -> str:
    h = hashlib.sha256(json.dumps(opts.fingerprint_fields(), sort_keys=True).encode())
    for it in source.items:
        h.update(f"{it.key}\t{it.label}\t{it.describe()}\n".encode())
    return h.hexdigest()[:16]


def estimate_sample_bytes(items: list[SourceItem], opts: PrepareOptions) -> float:
    """Mean encoded size of the first readable items (deterministic: the same items each run)."""
    spec = opts.image_spec()
    sizes = []
    for it in items[:SIZE_PROBE_ITEMS * 4]:
        try:
            sizes.append(len(prepared_bytes(it, spec)) + len(it.key) + 64)
        except SkippedImage:
            continue
        if len(sizes) == SIZE_PROBE_ITEMS:
            break
    return float(np.mean(sizes)) if sizes else opts.resolution ** 2 * 3 * 0.25


def make_plan(source: Source, opts: PrepareOptions, samples_per_shard: int | None = None) -> Plan:
    """`samples_per_shard` comes from a saved plan on resume; else from the options or an estimate."""
    splits = split_items(source, opts)
    if samples_per_shard is None:
        samples_per_shard = opts.samples_per_shard
    if samples_per_shard is None:
        largest = max(splits.values(), key=len)
        by_size = int(opts.shard_size // estimate_sample_bytes(largest, opts))
        samples_per_shard = max(1, min(by_size, math.ceil(len(largest) / MIN_SHARDS)))
    parts = []
    for split, items in splits.items():
        for index, start in enumerate(range(0, len(items), samples_per_shard)):
            parts.append(Part(split, index, items[start:start + samples_per_shard]))
    return Plan(fingerprint(source, opts), samples_per_shard, splits, parts)
