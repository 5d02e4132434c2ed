"""Image -> training tensor, with per-sample randomness derived from (seed, epoch, key) only.

A sample gets the same crop and flip whichever rank, worker or world size reads it, and again after
a resume: nothing here reads a worker or rank RNG.

train: the short side is scaled to R (if it differs), then a random R x R crop and, when `flip`,
       a horizontal flip with probability 1/2 (torchvision Resize(R) + RandomCrop(R) +
       RandomHorizontalFlip()). For shards prepared with center-crop at R the crop is the identity.
eval:  the short side is scaled to R, then the centre R x R crop; no flip.
Output: float32 [3, R, R] in [-1, 1].
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
from PIL import Image


def sample_bits(seed: int, epoch: int, key: str) -> int:
    """64 random bits that depend on (seed, epoch, key) only."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{epoch}:{key}".encode(), digest_size=8).digest(), "little")


def _short_side_to(img: Image.Image, resolution: int) -> Image.Image:
    w, h = img.size
    if min(w, h) == resolution:
        return img
    if img.format == "JPEG" and min(w, h) >= 2 * resolution:
        img.draft("RGB", (resolution, resolution))  # decode at a reduced DCT scale, never below R
        w, h = img.size
    scale = resolution / min(w, h)
    return img.resize((max(resolution, round(w * scale)), max(resolution, round(h * scale))), Image.BICUBIC,
                      reducing_gap=2.0)


def image_to_tensor(img: Image.Image, resolution: int, *, train: bool, flip: bool,
                    seed: int, epoch: int, key: str) -> torch.Tensor:
    img = _short_side_to(img, resolution)
    if img.mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img)
    h, w = arr.shape[:2]
    if train:
        bits = sample_bits(seed, epoch, key)
        top = (bits & 0xFFFF) % (h - resolution + 1)
        left = ((bits >> 16) & 0xFFFF) % (w - resolution + 1)
        mirror = flip and bool((bits >> 32) & 1)
    else:
        top, left, mirror = (h - resolution) // 2, (w - resolution) // 2, False
    arr = arr[top:top + resolution, left:left + resolution]
    if mirror:
        arr = arr[:, ::-1]
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # PIL's buffer: torch wants memory it may own
        arr = arr.copy()
    t = torch.from_numpy(arr).permute(2, 0, 1)
    return t.to(torch.float32).div_(127.5).sub_(1.0)
