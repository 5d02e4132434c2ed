"""`embedded`: a small real-photo dataset built offline from the photographs bundled with
scikit-image. Each photograph is one class; each sample is a random crop (35-100 % of the short
side, aspect 3:4 to 4:3) of it, flipped half the time, at the photo's own scale. Sample i is a pure
function of (seed, i), so every run and every worker renders the same image.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
from PIL import Image

# scikit-image loader name -> how to get the photo (all ship inside the wheel; no download)
PHOTOS: tuple[str, ...] = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins",
    "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "motorcycle",
    "retina", "rocket",
)
DEFAULT_COUNT = 4096


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """The photo as HxWx3 uint8 (grey photos repeated over channels); cached once per process."""
    import skimage.data

    arr = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3])


def embedded_class_names() -> list[str]:
    return sorted(PHOTOS)


def _rng(seed: int, index: int) -> np.random.Generator:
    digest = hashlib.blake2b(f"embedded:{seed}:{index}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def embedded_sample(seed: int, index: int) -> tuple[str, Image.Image]:
    """(photo name, RGB image) of sample `index`; classes cycle so any prefix is balanced."""
    name = embedded_class_names()[index % len(PHOTOS)]
    photo = _photo(name)
    h, w = photo.shape[:2]
    rng = _rng(seed, index)
    side = rng.uniform(0.35, 1.0) * min(h, w)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch = int(min(h, round(side / np.sqrt(aspect))))
    cw = int(min(w, round(side * np.sqrt(aspect))))
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    crop = photo[top:top + ch, left:left + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return name, Image.fromarray(np.ascontiguousarray(crop))


def _export_chunk(root, indices, seed: int, long_side: int, quality: int) -> None:
    for i in indices:
        name, img = embedded_sample(seed, i)
        scale = long_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC,
                         reducing_gap=2.0)
        path = root / name / f"{i // len(PHOTOS):06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, format="JPEG", quality=quality)


def export_embedded_folder(root, count: int, *, seed: int = 0, long_side: int = 500, quality: int = 90,
                           workers: int = 1):
    """Write `count` embedded samples as full-size JPEG files in ImageNet's train layout,
    `root/<photo>/<index>.jpg`, scaled to a long side of `long_side` (most ImageNet photos are
    500 x 375), with `workers` processes. Benchmarks read these as a user's ImageFolder would."""
    import multiprocessing as mp
    from functools import partial
    from pathlib import Path

    root = Path(root)
    chunks = [range(i, min(count, i + 256)) for i in range(0, count, 256)]
    job = partial(_export_chunk, root, seed=seed, long_side=long_side, quality=quality)
    if workers == 1:
        for chunk in chunks:
            job(chunk)
        return root
    with mp.get_context("fork").Pool(workers) as pool:
        pool.map(job, chunks)
    return root
