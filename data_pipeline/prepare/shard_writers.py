"""Writers of one shard from (key, label, encoded image) samples, in a local staging folder.

MDS: a folder with `index.json` and one `shard.00000.mds`, columns image (`jpeg` or `png`), label
(`int`) and key (`str`), readable by `streaming.StreamingDataset`. WDS: one tar whose members are
`<key>.jpg|png` and `<key>.cls`, readable by `webdataset.WebDataset`; tar headers carry a fixed
mtime, owner and mode, so the same samples always give the same bytes.
"""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np

WDS_SUFFIX = {"jpeg": "jpg", "png": "png"}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class MdsShardWriter:
    def __init__(self, folder: Path, image_format: str):
        from streaming.base.format.mds.encodings import mds_encode
        from streaming.base.format.mds.writer import MDSWriter

        class _PreEncodedImageWriter(MDSWriter):
            """Stores the `image` column's bytes as given: the stock `jpeg` encoder would re-encode
            a PIL image at its own quality. The index still says `jpeg`/`png`, so stock readers
            decode it as usual."""

            def encode_sample(self, sample):
                sizes, data = [], []
                for name, encoding, size in zip(self.column_names, self.column_encodings, self.column_sizes):
                    datum = sample[name] if name == "image" else mds_encode(encoding, sample[name])
                    if size is None:
                        sizes.append(len(datum))
                    data.append(datum)
                return np.array(sizes, np.uint32).tobytes() + b"".join(data)

        self.folder = folder
        columns = {"image": image_format, "label": "int", "key": "str"}
        # size_limit=None: one shard per part, so "a finished part" is "a finished shard"
        self._writer = _PreEncodedImageWriter(out=str(folder), columns=columns, size_limit=None, exist_ok=True)

    def write(self, key: str, label: int, image: bytes) -> None:
        self._writer.write({"image": image, "label": label, "key": key})

    def close(self) -> list[Path]:
        """Finish and return the shard files (not index.json) in the folder."""
        self._writer.finish()
        return sorted(self.folder.glob("shard.*.mds"))


class WdsShardWriter:
    """Plain `tarfile` in the layout `webdataset.TarWriter` writes (member `<key>.<suffix>`), so that
    `prepare` never imports torch; tests read the result with `webdataset.WebDataset`."""

    def __init__(self, tar_path: Path, image_format: str):
        self.path = tar_path
        self.suffix = WDS_SUFFIX[image_format]
        tar_path.parent.mkdir(parents=True, exist_ok=True)
        self._tar = tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT)
        self.count = 0

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o444
        info.uname = info.gname = "hieratok"
        self._tar.addfile(info, io.BytesIO(data))

    def write(self, key: str, label: int, image: bytes) -> None:
        self._add(f"{key}.cls", str(label).encode())
        self._add(f"{key}.{self.suffix}", image)
        self.count += 1

    def close(self) -> list[Path]:
        self._tar.close()
        if self.count == 0:  # every image of the part was skipped: no empty shard
            self.path.unlink()
            return []
        return [self.path]


def open_shard_writer(fmt: str, staging: Path, image_format: str):
    if fmt == "mds":
        return MdsShardWriter(staging, image_format)
    return WdsShardWriter(staging, image_format)
