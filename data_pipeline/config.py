"""Typed config of the data loaders (`data:` section)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataConfig:
    # prepared shards: a local folder or an s3:// URL (MDS). A folder written with --split-val holds
    # `train/` and `val/`; `split` picks one. Without split folders, `path` itself is read.
    path: str = "data/embedded"
    format: str = "mds"  # mds | wds | latent (the generator's latent cache, MDS rows)
    split: str = "train"
    resolution: int = 256
    num_workers: int = 2
    shuffle: bool = True
    # MDS elastic determinism: keep this fixed across restarts at any world size
    num_canonical_nodes: int = 1
    shuffle_algo: str = "py1e"
    # local cache folder for remote (s3://) MDS shards; null: a fresh folder under the system temp dir
    cache_dir: str | None = None
    random_flip: bool = True
    # where uint8 images become float32 in [-1, 1] for training: loader (in the training process, on its
    # CPU) | device (they cross as uint8, a quarter of the bytes, and are converted there: the same bits)
    # | auto (device on a GPU, loader on a CPU)
    unit_range_on: str = "auto"
    prefetch_factor: int = 2
    # seconds the trainer waits for one batch before failing with an error that names the data
    # (a stalled mount or bucket, a hung worker); 0: no limit
    timeout_s: float = 600.0
    # WDS only. resampled: every worker draws shards with replacement (statistically equivalent
    # restarts); false: each pass reads every shard once, split over ranks and workers.
    wds_resampled: bool = False
    wds_shuffle_buffer: int = 1000  # samples held by each worker's shuffle buffer (train only)
    # WDS training epoch length in samples over all ranks; null: the split's sample count
    wds_epoch_samples: int | None = None
