"""Validation images from prepared shards, through data_pipeline's loader, and what to record about them.

The eval transform is data_pipeline's `train=False`: short side scaled to R, centre R x R crop, no
flip, file order. The shards' manifest says how `prepare` resized them, so the protocol can say
exactly which pixels were compared.
"""
from __future__ import annotations

from pathlib import Path


def _where(path: str | Path) -> str:
    return str(path) if "://" in str(path) else str(Path(path).resolve())


def shard_manifest(path: str | Path) -> dict | None:
    from data_pipeline.errors import DataError
    from data_pipeline.manifest import read_manifest

    try:
        return read_manifest(str(path))
    except (DataError, OSError, ValueError):
        return None


def eval_data_config(path: str | Path, resolution: int | None = None):
    """A DataConfig that reads `path` for evaluation: format from the shards, no workers, no shuffle/flip."""
    from data_pipeline.config import DataConfig

    manifest = shard_manifest(path) or {}
    local_tars = "://" not in str(path) and any(Path(path).rglob("*.tar"))
    fmt = manifest.get("format") or ("wds" if local_tars else "mds")
    res = resolution or manifest.get("resolution") or DataConfig.resolution
    return DataConfig(path=str(path), format=fmt, split="val", resolution=int(res), num_workers=0,
                      shuffle=False, random_flip=False)


def build_eval_loader(path: str | Path, resolution: int | None, batch_size: int, *, split: str = "val",
                      rank: int = 0, world_size: int = 1):
    """data_pipeline's validation loader over `path` (its `split` folder when there is one)."""
    from data_pipeline.loading.loader import build_loader

    return build_loader(eval_data_config(path, resolution), rank=rank, world_size=world_size, seed=0,
                        batch_size=batch_size, train=False, split=split)


def shard_protocol(path: str | Path, resolution: int, split: str) -> dict:
    """The reference-set part of a metrics file's protocol."""
    manifest = shard_manifest(path) or {}
    entry = manifest.get("splits", {}).get(split) or manifest.get("splits", {}).get("all") or {}
    return {
        "data": _where(path),
        "split": split,
        "split_size": entry.get("samples"),
        "format": manifest.get("format"),
        "source": manifest.get("source"),
        "prepared_at": manifest.get("resolution"),
        "prepare_resize": manifest.get("resize"),
        "image_format": manifest.get("image_format"),
        "resolution": resolution,
        "crop": f"short side to {resolution}, centre {resolution}x{resolution} crop, no flip (data_pipeline eval)",
        "order": "file order (first N images of the split)",
    }


def first_images(path: str | Path, n: int, split: str = "val", resolution: int | None = None):
    """(images float [n, 3, R, R] in [-1, 1], labels [n]): the first n images of a split, eval transform."""
    import torch

    images, labels = [], []
    for batch in build_eval_loader(path, resolution, 64, split=split):
        images.append(batch["image"])
        labels.append(batch["label"])
        if sum(len(x) for x in images) >= n:
            break
    if not images:
        raise ValueError(f"no images in split '{split}' of {path}")
    return torch.cat(images)[:n], torch.cat(labels)[:n]
