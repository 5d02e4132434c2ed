"""Latent statistics measured over a data split: what a tokenizer export records in its config.json
("latent_stats"), so that a downstream generator normalises its latents without a latent cache, and
what the generator task measures when it encodes on the fly.

Every rank encodes its share of the first `num_images` images of the split (centre crop, posterior
mean, in the split's order) and the float64 sufficient statistics are summed over the ranks, so the
result does not depend on the world size beyond which images fill the last batches.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from data_pipeline.errors import DataError
from data_pipeline.latent_cache.stats import ChannelStats

log = logging.getLogger(__name__)


@torch.no_grad()
def measure_channel_stats(encode, data_cfg, *, channels: int, num_images: int, batch_size: int, seed: int,
                          rank: int = 0, world_size: int = 1, device="cpu") -> ChannelStats:
    """Collective (every rank calls it). `encode`: images [B, 3, H, W] in [-1, 1] -> latents [B, T, C]."""
    from data_pipeline import build_loader
    from hieratok.distributed.process_group import all_reduce_sum

    per_rank = -(-num_images // world_size)
    loader = build_loader(data_cfg, rank, world_size, seed, batch_size=min(batch_size, per_rank), train=False)
    acc = ChannelStats(channels)
    try:
        for b in loader:
            acc.add(encode(b["image"].to(device)).float().cpu().numpy())
            if acc.rows >= per_rank:
                break
    finally:
        loader.close()  # a Ray trial worker lives on: free the shared memory now
    packed = torch.tensor([acc.rows, acc.n, *acc.sum, *acc.sum_sq], dtype=torch.float64, device=device)
    packed = all_reduce_sum(packed).cpu().numpy()
    return ChannelStats(channels, int(packed[0]), int(packed[1]), packed[2:2 + channels], packed[2 + channels:])


def latent_stats_record(stats: ChannelStats, split: str) -> dict:
    """Per-channel mean / std, and one shift and scaling factor over every latent value (the convention
    of Stable Diffusion's VAE: z_normalised = (z - shift_factor) * scaling_factor)."""
    values = stats.n * stats.channels
    shift = float(stats.sum.sum() / values)
    variance = max(float(stats.sum_sq.sum() / values) - shift * shift, 1e-12)
    return {"mean": stats.mean().tolist(), "std": stats.std().tolist(),
            "shift_factor": shift, "scaling_factor": 1.0 / math.sqrt(variance),
            "images": stats.rows, "split": split,
            "protocol": "posterior mean, centre crop, the split's first images in order"}


def record_export_latent_stats(export_dir: str | Path, cfg, rank: int = 0, world_size: int = 1,
                               device="cpu") -> dict | None:
    """Collective: measure the exported tokenizer's latent stats on `checkpoint.export_stats_images`
    images of the training split and add them to its config.json (rank 0 writes, atomically).
    Returns the record, or None when the setting is 0."""
    from hieratok.nn.pretrained import update_config
    from hieratok.tokenizer.model import Tokenizer

    num = cfg.checkpoint.export_stats_images
    if num <= 0:
        return None
    export_dir = Path(export_dir)
    tokenizer = Tokenizer.from_pretrained(export_dir, map_location=device)
    try:
        stats = measure_channel_stats(tokenizer.encode, cfg.data, channels=tokenizer.config.latent_channels,
                                      num_images=num, batch_size=cfg.eval.batch_size, seed=cfg.train.seed,
                                      rank=rank, world_size=world_size, device=device)
    except DataError as e:  # e.g. `hieratok export` on a machine without the data: the export stands
        log.warning("the export at %s records no latent stats: the training data could not be read (%s)",
                    export_dir, e)
        return None
    record = latent_stats_record(stats, cfg.data.split)
    if rank == 0:
        update_config(export_dir, latent_stats=record)
    return record
