"""The generator's latent cache: MDS rows of (latent float32 [T, C], label int, key str).

Written in parts, one per rank, then merged; each part is resumable on its own:

    from data_pipeline.latent_cache.rows import LatentPartWriter, merge_latent_parts
    from data_pipeline.latent_cache.stats import read_latent_stats

    writer = LatentPartWriter(out, rank=r, world_size=w, latent_shape=(T, C))
    if not writer.done:                       # a re-run skips a part finished before
        with writer:                          # finishes the part when the block ends without error
            for batch in loader:              # e.g. build_loader(..., train=False) over the images
                writer.write_batch(latents, batch["label"], batch["key"])   # [B, T, C], torch or numpy
    # after all ranks finished (a barrier), on one rank:
    merge_latent_parts(out, world_size=w, metadata={"tokenizer": path, "weights_sha256": h})
    stats = read_latent_stats(out)            # .mean / .std: [C] float64, .metadata, .rows

Layout under `out` (a folder or s3://bucket/prefix):
  part-<rank>-of-<world>/index.json, shard.*.mds   one MDS folder per rank
  part-<rank>-of-<world>/stats.json                 float64 n, sum, sum_sq; written last = part done
  index.json                                        the merged MDS index (streaming's merge_index)
  latent_stats.json                                 per-channel mean/std + metadata (latent_stats.py)
Read it with `build_loader(DataConfig(path=out, format="latent"), ...)`: batch["latent"] float32
[B, T, C], batch["label"], batch["key"], with the MDS resume semantics of mds_loader.py.
A latent that is not finite, or not of shape [T, C], is refused with an error naming its key.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from data_pipeline.errors import DataError
from data_pipeline.latent_cache.stats import STATS_FILE, ChannelStats, stats_document
from data_pipeline.mds_index import merge_part_indexes
from data_pipeline.storage import is_remote, open_destination

PART_STATS = "stats.json"


def part_name(rank: int, world_size: int) -> str:
    return f"part-{rank:05d}-of-{world_size:05d}"


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class LatentPartWriter:
    def __init__(self, out: str, *, rank: int, world_size: int, latent_shape: tuple[int, int],
                 shard_size: int = 1 << 26):
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is not in [0, world_size={world_size})")
        self.out, self.latent_shape = out, tuple(int(d) for d in latent_shape)
        self.name = part_name(rank, world_size)
        self._dest = open_destination(out)
        self.done = self._dest.exists(f"{self.name}/{PART_STATS}")
        self._shard_size = shard_size
        self._writer = None
        self.stats = ChannelStats(self.latent_shape[1])

    def __enter__(self) -> "LatentPartWriter":
        if self.done:
            raise DataError(f"latent part {self.name} in {self.out} is already finished; check `writer.done`")
        from streaming import MDSWriter

        root = Path(tempfile.mkdtemp(prefix="hieratok-latent-")) if is_remote(self.out) else Path(self.out) / ".staging"
        self._staging = root / self.name
        if self._staging.exists():
            shutil.rmtree(self._staging)  # left by a killed run
        T, C = self.latent_shape
        columns = {"latent": f"ndarray:float32:{T},{C}", "label": "int", "key": "str"}
        self._writer = MDSWriter(out=str(self._staging), columns=columns, size_limit=self._shard_size)
        return self

    def write_batch(self, latents, labels, keys) -> None:
        lat = _numpy(latents).astype(np.float32, copy=False)
        labels = _numpy(labels).reshape(-1)
        if lat.ndim != 3 or lat.shape[1:] != self.latent_shape or not len(lat) == len(labels) == len(keys):
            raise DataError(f"latent batch of shape {tuple(lat.shape)} with {len(labels)} labels and {len(keys)} "
                            f"keys; expected [B, {self.latent_shape[0]}, {self.latent_shape[1]}] and B of each")
        finite = np.isfinite(lat).reshape(len(lat), -1).all(axis=1)
        if not finite.all():
            raise DataError(f"latent of key {keys[int(np.argmin(finite))]!r} is not finite")
        for latent, label, key in zip(lat, labels, keys):
            self._writer.write({"latent": latent, "label": int(label), "key": str(key)})
        self.stats.add(lat)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            return  # leave the part unfinished: a re-run rewrites it
        self._writer.finish()
        self._dest.publish(self._staging, self.name)
        self._dest.write_text(f"{self.name}/{PART_STATS}", json.dumps(self.stats.to_json()))
        self.done = True


def merge_latent_parts(out: str, *, world_size: int, metadata: dict | None = None) -> dict:
    """Merge the `world_size` finished parts: index.json and latent_stats.json. Returns the stats doc."""
    dest = open_destination(out)
    names = [part_name(r, world_size) for r in range(world_size)]
    missing = [n for n in names if not dest.exists(f"{n}/{PART_STATS}")]
    if missing:
        raise DataError(f"latent cache {out}: parts not finished: {', '.join(missing)}")
    total, shape = None, None
    for n in names:
        s = ChannelStats.from_json(json.loads(dest.read_text(f"{n}/{PART_STATS}")))
        total = s if total is None else total.merge(s)
        index = json.loads(dest.read_text(f"{n}/index.json"))
        for shard in index["shards"]:
            t, c = (int(d) for d in shard["column_encodings"][shard["column_names"].index("latent")].split(":")[2].split(","))
            if shape not in (None, (t, c)):
                raise DataError(f"latent cache {out}: part {n} holds latents of shape {(t, c)}, others {shape}")
            shape = (t, c)
    merge_part_indexes(out, names)
    doc = stats_document(total, shape or (0, total.channels), metadata or {})
    dest.write_text(STATS_FILE, json.dumps(doc, indent=1))
    return doc
