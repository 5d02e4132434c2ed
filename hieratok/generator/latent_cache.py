"""The latent cache, generator side: encode a dataset with a frozen tokenizer into the MDS latent rows of
`data_pipeline.latent_cache.rows` (one part per rank, merged at the end), and read back what a cache records.

Each rank encodes its share of the centre-cropped images (posterior means, float32) and, with `flip`,
their horizontal mirrors under the key `<key>@flip`. A part that finished before is skipped, so an
interrupted `hieratok encode` resumes by re-running it. `encode.json` pins what the cache is made of
(tokenizer hash, data, split, flip, world size): resuming into a folder made otherwise is refused.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import torch

from hieratok.generator.images import network_precision
from hieratok.generator.normalization import LatentStats
from hieratok.generator.tokenizer_ref import TokenizerRef, load_frozen_tokenizer, tokenizer_ref
from hieratok.progress import bar

log = logging.getLogger(__name__)

FLIP_SUFFIX = "@flip"
FINGERPRINT_FILE = "encode.json"


@dataclass(frozen=True)
class CacheInfo:
    path: str
    stats: LatentStats
    tokenizer: TokenizerRef | None
    latent_shape: tuple[int, int]
    rows: int
    metadata: dict


def read_cache(path: str) -> CacheInfo:
    """What the merged latent cache at `path` records: per-channel stats, its tokenizer, shape, size."""
    from data_pipeline.latent_cache.stats import read_latent_stats

    s = read_latent_stats(path)
    where = f"the latent cache {path}"
    tok = s.metadata.get("tokenizer")
    return CacheInfo(path=path, stats=LatentStats(tuple(s.mean.tolist()), tuple(s.std.tolist())),
                     tokenizer=TokenizerRef.from_dict(tok, where) if tok is not None else None,
                     latent_shape=tuple(s.latent_shape), rows=s.rows, metadata=s.metadata)


def cache_path(data_cfg) -> str:
    """The cache folder the loader reads for `data_cfg`: path/<split> when that is a cache, else path."""
    from data_pipeline.latent_cache.stats import STATS_FILE
    from data_pipeline.storage import join_url, open_destination

    if data_cfg.split and open_destination(data_cfg.path).exists(f"{data_cfg.split}/{STATS_FILE}"):
        return join_url(data_cfg.path, data_cfg.split)
    return data_cfg.path


def _check_fingerprint(out: str, fingerprint: dict) -> None:
    from data_pipeline.errors import DataError
    from data_pipeline.storage import open_destination

    dest = open_destination(out)
    if dest.exists(FINGERPRINT_FILE):
        old = json.loads(dest.read_text(FINGERPRINT_FILE))
        if old != fingerprint:
            diff = {k: (old.get(k), fingerprint.get(k)) for k in sorted(set(old) | set(fingerprint))
                    if old.get(k) != fingerprint.get(k)}
            raise DataError(f"{out} already holds a latent cache made differently (was, now): {diff}; "
                            f"choose another --out, or delete it to start over")
    else:
        dest.write_text(FINGERPRINT_FILE, json.dumps(fingerprint, indent=1, sort_keys=True))


@torch.no_grad()
def encode_dataset(tokenizer: str, data: str, out: str, *, flip: bool = False, split: str = "train",
                   data_format: str = "mds", batch_size: int = 64, num_workers: int = 2) -> dict:
    """Encode `data` into the latent cache `out`; collective under torchrun. Returns the stats document."""
    from data_pipeline import build_loader
    from data_pipeline.config import DataConfig
    from data_pipeline.latent_cache.rows import LatentPartWriter, merge_latent_parts
    from data_pipeline.loading.augment import images_on, unit_range_on_device
    from data_pipeline.storage import open_destination
    from hieratok.distributed.process_group import barrier, broadcast_object, init_distributed

    info = init_distributed()
    ref = tokenizer_ref(tokenizer)
    model = load_frozen_tokenizer(ref, info.device)
    fingerprint = {"tokenizer_sha256": ref.weights_sha256, "data": data, "split": split, "flip": flip,
                   "world_size": info.world_size, "latent_shape": list(model.latent_shape)}
    if info.is_main:
        _check_fingerprint(out, fingerprint)
    barrier()
    writer = LatentPartWriter(out, rank=info.rank, world_size=info.world_size, latent_shape=model.latent_shape)
    if not writer.done:
        data_cfg = DataConfig(path=data, format=data_format, split=split, resolution=model.config.image_size,
                              num_workers=num_workers, shuffle=False, random_flip=False)
        loader = build_loader(data_cfg, info.rank, info.world_size, 0, batch_size=batch_size, train=False,
                              uint8_images=unit_range_on_device(data_cfg.unit_range_on, info.device))
        written: list[str] = []
        with writer:
            for batch in bar(loader, desc="encode"):
                images, labels, keys = images_on(info.device, batch["image"]), batch["label"], list(batch["key"])
                with network_precision(info.device):
                    writer.write_batch(model.encode(images).float(), labels, keys)
                    if flip:
                        writer.write_batch(model.encode(images.flip(-1)).float(), labels,
                                           [k + FLIP_SUFFIX for k in keys])
                written += keys
        loader.close()  # the generator ablation's driver encodes every arm: free each loader's shared memory
        open_destination(out).write_text(_keys_file(info.rank, info.world_size), "\n".join(written))
    barrier()
    doc = None
    if info.is_main:
        repeats = _count_repeated_keys(out, info.world_size)
        metadata = {"tokenizer": ref.to_dict(), "source": data, "split": split, "flip": flip,
                    "latent": "posterior mean", "precision": "bf16 autocast" if info.device.type == "cuda" else "fp32",
                    "resolution": model.config.image_size, "repeated_images": repeats}
        doc = merge_latent_parts(out, world_size=info.world_size, metadata=metadata)
    return broadcast_object(doc)


def _keys_file(rank: int, world_size: int) -> str:
    return f"keys-{rank:05d}-of-{world_size:05d}.txt"


def _count_repeated_keys(out: str, world_size: int) -> int | None:
    """Images encoded more than once. MDS pads every rank to the same sample count by repeating a few
    samples, so at world size > 1 a handful of rows can repeat; they are counted here and recorded.
    None: a part finished without its key list (killed in between), so the count is unknown."""
    from data_pipeline.storage import open_destination

    dest = open_destination(out)
    names = [_keys_file(r, world_size) for r in range(world_size)]
    if not all(dest.exists(n) for n in names):
        return None
    keys = [k for n in names for k in dest.read_text(n).split("\n") if k]
    repeats = len(keys) - len(set(keys))
    if repeats:
        log.warning("%d image(s) were encoded twice (MDS pads ranks to equal length); recorded as "
                    "metadata.repeated_images in %s", repeats, out)
    return repeats
