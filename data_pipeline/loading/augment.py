"""Image -> training tensor, with per-sample randomness derived from (seed, epoch, key) only.

A sample gets the same crop and flip whichever rank, worker or world size reads it, and again after
a resume: nothing here reads a worker or rank RNG.

train: the short side is scaled to R (if it differs), then a random R x R crop and, when `flip`,
       a horizontal flip with probability 1/2 (torchvision Resize(R) + RandomCrop(R) +
       RandomHorizontalFlip()). For shards prepared with center-crop at R the crop is the identity.
eval:  the short side is scaled to R, then the centre R x R crop; no flip.
Samples stay uint8 [3, R, R] views of the decoded image (decode.py; no copy is made for the crop)
until `collate`, which copies each view into its slot of a uint8 batch, in shared memory when it
runs in a DataLoader worker. The loader's iterator then turns that batch into float32 in [-1, 1]
in the training process (`to_unit_range`). Shipping uint8 moves a quarter of the bytes through
shared memory, and shared-memory pages are what cost: a float32 batch there took 0.65 ms per 256-px
image to allocate, fill and free, against 0.2 ms for uint8 plus 0.08 ms for the conversion into
the training process's own (reused) memory. A trainer on a GPU goes one further (`build_loader(...,
uint8_images=True)`, `data.unit_range_on`): the batch crosses to the device as uint8, a quarter of
the bytes of a float32 copy, and `images_on` converts it there, to the same bits.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch.utils.data import get_worker_info
from torchvision.transforms.v2.functional import resize as resize_tensor

from data_pipeline.loading.decode import decode_uint8


def sample_bits(seed: int, epoch: int, key: str) -> int:
    """64 random bits that depend on (seed, epoch, key) only."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{epoch}:{key}".encode(), digest_size=8).digest(), "little")


def crop_flip_uint8(image, resolution: int, *, train: bool, flip: bool, seed: int, epoch: int,
                    key: str) -> torch.Tensor:
    """uint8 [3, R, R] of `image` (a PIL image or the encoded bytes of one), possibly a strided view."""
    t = decode_uint8(image, resolution)
    h, w = t.shape[1:]
    if min(h, w) != resolution:
        t = resize_tensor(t, resolution, antialias=True)
        h, w = t.shape[1:]
    if train:
        bits = sample_bits(seed, epoch, key)
        top = (bits & 0xFFFF) % (h - resolution + 1)
        left = ((bits >> 16) & 0xFFFF) % (w - resolution + 1)
        mirror = flip and bool((bits >> 32) & 1)
    else:
        top, left, mirror = (h - resolution) // 2, (w - resolution) // 2, False
    t = t[:, top:top + resolution, left:left + resolution]
    return t.flip(-1) if mirror else t


def collate(samples: list[dict]) -> dict:
    """{"image": uint8 [B, 3, R, R], "label": int64 [B], "key": [str]}; `to_unit_range` makes it float."""
    first = samples[0]["image"]
    shape = (len(samples), *first.shape)
    if get_worker_info() is not None:
        # what default_collate does in a worker: allocate the batch in shared memory, so passing it
        # to the main process moves a handle instead of copying the batch
        template = torch.empty(0, dtype=torch.uint8)
        out = template.new(template._typed_storage()._new_shared(first.numel() * len(samples))).view(shape)
    else:
        out = torch.empty(shape, dtype=torch.uint8)
    for i, s in enumerate(samples):
        out[i].copy_(s["image"])
    return {"image": out, "label": torch.tensor([s["label"] for s in samples], dtype=torch.int64),
            "key": [s["key"] for s in samples]}


def _unit_range(image: np.ndarray) -> np.ndarray:
    out = np.empty(image.shape, dtype=np.float32)
    np.divide(image, np.float32(127.5), out=out, dtype=np.float32)
    np.subtract(out, np.float32(1.0), out=out)
    return out


def to_unit_range(batch: dict) -> dict:
    """The batch with its uint8 image as float32 in [-1, 1] (x / 127.5 - 1), in this process's memory.

    numpy, not torch: its ufuncs run on the calling thread only. Torch would spread this small,
    memory-bound op over its intra-op threads, whose barrier then waits for cores the DataLoader
    workers are using (measured: a third of the loader's throughput on 2 cores)."""
    batch["image"] = torch.from_numpy(_unit_range(batch["image"].numpy()))
    return batch


def unit_range_on_device(setting: str, device) -> bool:
    """`data.unit_range_on` resolved for `device`: whether uint8 images should cross to it (auto: a GPU)."""
    return setting == "device" or (setting == "auto" and torch.device(device).type == "cuda")


_TABLES: dict[torch.device, torch.Tensor] = {}


def images_on(device: torch.device, image: torch.Tensor) -> torch.Tensor:
    """A batch's image on `device`, float32 in [-1, 1]. A uint8 image (`build_loader(..., uint8_images=True)`)
    crosses as uint8 and becomes float there through a 256-entry table of `to_unit_range`'s own values:
    the same bits on every device (CUDA divides by a host scalar as a multiply by its reciprocal)."""
    image = image.to(device, non_blocking=True)
    if image.dtype != torch.uint8:
        return image
    if image.device not in _TABLES:
        _TABLES[image.device] = torch.from_numpy(_unit_range(np.arange(256, dtype=np.uint8))).to(image.device)
    return _TABLES[image.device][image.int()]
