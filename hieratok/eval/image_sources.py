"""Image sets for FID, read as uint8 NCHW batches: a folder, an ADM-layout `.npz`, or prepared shards.

Folders and `.npz` files are indexable, so Ray actors can each read a range of whole batches and
get bit-identical features to a single process. A folder is read like torch-fidelity reads one:
png/jpg/jpeg files, sorted by path, converted to RGB; when the folder itself holds no image its
sub-folders are searched (an ImageNet-style class tree). An `.npz` holds `arr_0`, uint8 NHWC (the
ADM evaluator's layout); an uncompressed one is memory-mapped, not loaded.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def _npz_member_memmap(path: Path, key: str) -> np.ndarray | None:
    """A read-only memmap of `key` in an uncompressed .npz (np.load ignores mmap_mode for .npz)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"{key}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with zf.open(info) as member:
            version = np.lib.format.read_magic(member)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)  # public; numpy 2.5 dropped the private one
            shape, fortran, dtype = read_header(member)
            header_len = member.tell()
    with open(path, "rb") as f:  # the member's data starts after its local file header
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), "<u2")
    offset = info.header_offset + 30 + int(name_len) + int(extra_len) + header_len
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset, order="F" if fortran else "C")


def _indexed_batches(source, batch_size: int, start_batch: int, stop_batch: int | None) -> Iterator[torch.Tensor]:
    n_batches = -(-source.num_images // batch_size)
    for b in range(start_batch, n_batches if stop_batch is None else min(stop_batch, n_batches)):
        yield source.batch(b * batch_size, (b + 1) * batch_size)


@dataclass
class ImageFolderSource:
    path: str
    files: list[str] = field(default_factory=list)

    def __post_init__(self):
        root = Path(self.path)
        if not self.files:
            found = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                found = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {root}")
            self.files = [str(p.resolve()) for p in found]

    @property
    def num_images(self) -> int:
        return len(self.files)

    def _read(self, i: int) -> torch.Tensor:
        from PIL import Image
        from torchvision.transforms.functional import pil_to_tensor

        with Image.open(self.files[i]) as img:
            return pil_to_tensor(img.convert("RGB"))

    def batch(self, start: int, stop: int) -> torch.Tensor:
        images = [self._read(i) for i in range(start, min(stop, self.num_images))]
        first = tuple(images[0].shape)
        odd = next((k for k, im in enumerate(images) if tuple(im.shape) != first), None)
        if odd is not None:
            raise ValueError(f"images in {self.path} differ in size: {self.files[start + odd]} is "
                             f"{tuple(images[odd].shape)[1:]}, {self.files[start]} is {first[1:]} (HxW); "
                             "resize them to one resolution first")
        return torch.stack(images)

    def iter_batches(self, batch_size: int, start_batch: int = 0, stop_batch: int | None = None):
        yield from _indexed_batches(self, batch_size, start_batch, stop_batch)

    def describe(self) -> dict:
        return {"kind": "folder", "path": str(Path(self.path).resolve()), "num_images": self.num_images}


@dataclass
class NpzImageSource:
    path: str

    def __post_init__(self):
        arr = self._array()
        if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"{self.path}: arr_0 must be uint8 [N, H, W, 3] (ADM layout), got {arr.dtype} {arr.shape}")

    def _array(self) -> np.ndarray:
        if getattr(self, "_arr", None) is None:
            path = Path(self.path)
            with np.load(path) as z:
                if "arr_0" not in z.files:
                    raise ValueError(f"{path} holds no images: an ADM-layout .npz has arr_0 (uint8 NHWC); found {z.files}")
            arr = _npz_member_memmap(path, "arr_0")
            if arr is None:  # compressed: load it whole
                with np.load(path) as z:
                    arr = z["arr_0"]
            self._arr = arr
        return self._arr

    def __getstate__(self):  # ship the path, not the array, to Ray actors
        return {"path": self.path}

    @property
    def num_images(self) -> int:
        return int(self._array().shape[0])

    def batch(self, start: int, stop: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self._array()[start:stop])).permute(0, 3, 1, 2).contiguous()  # a writable copy

    def iter_batches(self, batch_size: int, start_batch: int = 0, stop_batch: int | None = None):
        yield from _indexed_batches(self, batch_size, start_batch, stop_batch)

    def describe(self) -> dict:
        return {"kind": "npz", "path": str(Path(self.path).resolve()), "num_images": self.num_images}


@dataclass
class ShardImageSource:
    """Prepared shards (MDS / WebDataset), streamed in order by data_pipeline's validation loader."""

    path: str
    resolution: int = 256

    @property
    def num_images(self) -> int | None:
        return None  # unknown until read

    def iter_batches(self, batch_size: int, start_batch: int = 0, stop_batch: int | None = None):
        if start_batch or stop_batch is not None:
            raise ValueError(f"shards ({self.path}) are streamed: they cannot be split into batch ranges")
        from hieratok.eval.inception import to_uint8
        from hieratok.eval.shard_data import build_eval_loader

        for batch in build_eval_loader(self.path, self.resolution, batch_size):
            yield to_uint8(batch["image"])

    def describe(self) -> dict:
        return {"kind": "shards", "path": str(Path(self.path).resolve()), "resolution": self.resolution}


def looks_like_shards(path: Path) -> bool:
    """MDS (index.json) or WebDataset (*.tar) shards, directly or in split folders (train/, val/)."""
    for d in (path, *(p for p in path.iterdir() if p.is_dir())):
        if (d / "index.json").is_file() or any(d.glob("*.tar")):
            return True
    return False


def open_image_source(spec: str | Path, resolution: int = 256):
    """An image set from a folder of images, an ADM-layout `.npz`, or a folder of prepared shards."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"image set not found: {path} (expected a folder of images, an .npz or shards)")
    if path.is_file():
        if path.suffix != ".npz":
            raise ValueError(f"{path}: an image-set file must be an ADM-layout .npz (arr_0 uint8 NHWC)")
        return NpzImageSource(str(path))
    if looks_like_shards(path):
        return ShardImageSource(str(path), resolution)
    return ImageFolderSource(str(path))
