"""`build_loader`: the one entry point of the trainer, the evaluator and the generator.

    loader = build_loader(data_cfg, rank, world_size, seed, batch_size=B, train=True, split=None)
    for batch in loader: ...          # one epoch; iter(loader) again for the next
    state = loader.state_dict()       # at any batch boundary; MDS: global (world-size independent)
    loader.load_state_dict(state)     # the next iter() continues with the next unseen batch

data_cfg: a DataConfig or its OmegaConf node. batch_size: the per-rank micro batch. split: None
reads data_cfg.split; `path/<split>/` is read when it exists, else `path` itself.
Batches: format mds | wds: {"image": float32 [B,3,R,R] in [-1,1], "label": int64 [B], "key": [str]}
(uint8_images=True: the image stays uint8 [0, 255], for `augment.images_on` to convert on the device);
format latent: {"latent": float32 [B,T,C], "label": int64 [B], "key": [str]}.
train=True: random crop + flip (data_cfg.random_flip), shuffled, full batches only; train=False:
centre crop, no flip, file order, the last batch may be short (MDS over several ranks repeats a few
samples so that every rank gets as many; deduplicate eval results by key). Crop and flip depend on
(seed, epoch, key) only.
Resume guarantees: mds_loader.py (exact, elastic) and wds_loader.py (exact at the same layout only).
"""
from __future__ import annotations

import hashlib
import os
import random
import tempfile
import time
from collections import Counter

from data_pipeline.errors import DataError
from data_pipeline.storage import is_remote, join_url, open_destination

FORMATS = ("mds", "wds", "latent")


def _cfg(data_cfg, name, default=None):
    return getattr(data_cfg, name, default)


def build_loader(data_cfg, rank: int, world_size: int, seed: int, *, batch_size: int, train: bool = True,
                 split: str | None = None, clean_stale_shm: bool = True, uint8_images: bool = False):
    fmt = data_cfg.format
    if fmt not in FORMATS:
        raise DataError(f"data.format {fmt!r}: valid formats are {', '.join(FORMATS)}")
    if batch_size < 1:
        raise DataError(f"batch_size {batch_size} must be positive")
    split = split or data_cfg.split
    if fmt == "wds":
        return _build_wds(data_cfg, rank, world_size, seed, batch_size, train, split, uint8_images)
    return _build_mds(data_cfg, rank, world_size, seed, batch_size, train, split, clean_stale_shm, uint8_images)


def _mds_split_url(path: str, split: str) -> str:
    dest = open_destination(path)
    if split and dest.exists(f"{split}/index.json"):
        return join_url(path, split)
    if dest.exists("index.json"):
        return path
    found = [n for n in dest.list("") if dest.exists(f"{n}/index.json")]
    raise DataError(f"no MDS index.json at {join_url(path, split)} or {path}"
                    + (f"; splits there: {', '.join(found)}" if found else
                       "; prepare one with `hieratok prepare --format mds`"))


_remote_loaders: Counter = Counter()  # loaders built in this process per remote URL


def _local_cache_dir(data_cfg, remote: str, rank: int) -> str:
    """One cache folder per dataset object (streaming refuses two datasets on one folder, e.g. a train
    and an eval loader over the same split), the same on all ranks of a node: ranks build their
    loaders in the same order, so the per-process count agrees between them."""
    tag = f"{hashlib.sha1(remote.encode()).hexdigest()[:12]}-{_remote_loaders[remote]}"
    _remote_loaders[remote] += 1
    if _cfg(data_cfg, "cache_dir"):
        return os.path.join(data_cfg.cache_dir, tag)
    import torch.distributed as dist

    token = [tempfile.mkdtemp(prefix="hieratok-mds-") if rank == 0 else None]
    if dist.is_available() and dist.is_initialized():
        dist.broadcast_object_list(token, src=0)  # ranks on one node must agree on `local`
    return os.path.join(token[0] or tempfile.mkdtemp(prefix="hieratok-mds-"), tag)


def _build_mds(data_cfg, rank, world_size, seed, batch_size, train, split, clean_stale_shm, uint8_images):
    from data_pipeline.loading.augment import collate, to_unit_range
    from data_pipeline.loading.mds_loader import ImageStreamingDataset, LatentStreamingDataset, MdsLoader
    from data_pipeline.loading.shm_cleanup import remove_stale_streaming_shm
    from data_pipeline.loading.streaming_world import streaming_world

    url = _mds_split_url(data_cfg.path, split)
    where = {"remote": url, "local": _local_cache_dir(data_cfg, url, rank)} if is_remote(url) else {"local": url}
    common = dict(
        **where, batch_size=batch_size, shuffle=bool(train and data_cfg.shuffle), shuffle_seed=seed,
        shuffle_algo=data_cfg.shuffle_algo, num_canonical_nodes=data_cfg.num_canonical_nodes,
    )
    if clean_stale_shm:
        remove_stale_streaming_shm()
    latent = data_cfg.format == "latent"

    def make():
        with streaming_world(rank, world_size):
            if latent:
                return LatentStreamingDataset(**common)
            return ImageStreamingDataset(resolution=data_cfg.resolution, train=train,
                                         flip=bool(data_cfg.random_flip), aug_seed=seed, **common)

    dataset = claim_shm_prefix(make, world_size)
    extra = {} if latent else {"collate_fn": collate, "finish_batch": None if uint8_images else to_unit_range}
    return MdsLoader(dataset, batch_size=batch_size, world_size=world_size, num_workers=data_cfg.num_workers,
                     prefetch_factor=data_cfg.prefetch_factor, drop_last=train, where=f"MDS data {url}", **extra)


def _build_wds(data_cfg, rank, world_size, seed, batch_size, train, split, uint8_images):
    from data_pipeline.loading.wds_loader import WdsLoader
    from data_pipeline.manifest import manifest_split, read_manifest

    if is_remote(data_cfg.path):
        raise DataError(f"data.path {data_cfg.path}: s3:// is supported for format mds only")
    manifest = read_manifest(data_cfg.path)
    entry = manifest_split(manifest, data_cfg.path, split)
    read = split if split in manifest["splits"] else next(iter(manifest["splits"]))  # a folder without splits
    shards = [{"url": os.path.join(data_cfg.path, s["path"]), "samples": s["samples"]} for s in entry["shards"]]
    return WdsLoader(
        shards, batch_size=batch_size, rank=rank, world_size=world_size, num_workers=data_cfg.num_workers,
        prefetch_factor=data_cfg.prefetch_factor, train=train, shuffle=bool(data_cfg.shuffle),
        resampled=bool(_cfg(data_cfg, "wds_resampled", False)), shuffle_buffer=_cfg(data_cfg, "wds_shuffle_buffer", 1000),
        epoch_samples=_cfg(data_cfg, "wds_epoch_samples") or entry["samples"], resolution=data_cfg.resolution,
        flip=bool(data_cfg.random_flip), seed=seed, where=f"WDS data {data_cfg.path} (split {read})",
        uint8_images=uint8_images,
    )


def claim_shm_prefix(make, world_size: int, attempts: int = 8):
    """`make()` a StreamingDataset, again if another job took its shared-memory prefix first.

    streaming finds a free prefix, then creates its `NNNNNN_locals` segment: two jobs starting at
    once (the concurrent trials of a sweep or an ablation) can pick the same prefix, and the later
    one fails with FileExistsError. Made again, it sees that prefix taken and picks the next one.
    A multi-rank job is not retried: its ranks meet in barriers inside streaming's registration,
    and one rank going round again would leave the others waiting."""
    for attempt in range(attempts):
        try:
            return make()
        except FileExistsError:
            if world_size > 1 or attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0.05, 0.25))  # apart from the other job's next try
