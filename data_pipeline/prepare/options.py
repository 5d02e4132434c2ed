"""The options of a `prepare` job, checked up front so that a bad value fails before any work."""
from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass

from data_pipeline.errors import DataError
from data_pipeline.prepare.image_prep import IMAGE_FORMATS, RESIZE_MODES, ImageSpec
from data_pipeline.storage import is_remote

FORMATS = ("wds", "mds")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str | int) -> int:
    """'256MB', '64MiB', '1g', '1000000' -> bytes (binary units: the shard sizes tools report)."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise DataError(f"--shard-size {text!r} is not a size such as 256MB, 64MiB or 1000000")
    unit = (m.group(2) or "").lower()[:1]
    return int(float(m.group(1)) * _UNITS[unit])


@dataclass
class PrepareOptions:
    src: str
    out: str
    format: str
    resolution: int = 256
    resize: str = "center-crop"
    workers: int = max(1, os.cpu_count() or 1)
    shard_size: int = 256 << 20  # bytes
    quality: int = 95
    image_format: str = "jpeg"
    limit: int | None = None
    split_val: float = 0.0
    seed: int = 0
    samples_per_shard: int | None = None  # None: from shard_size and the first images' encoded size
    progress: bool = True

    def validate(self) -> None:
        checks = [
            (self.format in FORMATS, f"--format {self.format!r}: valid formats are {', '.join(FORMATS)}"),
            (self.resize in RESIZE_MODES, f"--resize {self.resize!r}: valid modes are {', '.join(RESIZE_MODES)}"),
            (self.image_format in IMAGE_FORMATS,
             f"--image-format {self.image_format!r}: valid formats are {', '.join(IMAGE_FORMATS)}"),
            (self.resolution >= 8, f"--resolution {self.resolution}: must be at least 8"),
            (self.workers >= 1, f"--workers {self.workers}: must be at least 1"),
            (self.shard_size > 0, f"--shard-size {self.shard_size}: must be positive"),
            (1 <= self.quality <= 100, f"--quality {self.quality}: must lie in [1, 100]"),
            (self.limit is None or self.limit > 0, f"--limit {self.limit}: must be positive"),
            (0.0 <= self.split_val < 1.0, f"--split-val {self.split_val}: must lie in [0, 1)"),
            (self.samples_per_shard is None or self.samples_per_shard > 0,
             f"--samples-per-shard {self.samples_per_shard}: must be positive"),
            (self.seed >= 0, f"--seed {self.seed}: must be non-negative"),
            (not (is_remote(self.out) and self.format != "mds"),
             f"--out {self.out}: s3:// destinations are supported for --format mds only"),
        ]
        for ok, message in checks:
            if not ok:
                raise DataError(message)

    def image_spec(self) -> ImageSpec:
        return ImageSpec(self.resolution, self.resize, self.image_format, self.quality, self.seed)

    def fingerprint_fields(self) -> dict:
        """The options that shape the output; `workers` and `progress` do not."""
        d = asdict(self)
        for k in ("out", "workers", "progress"):
            d.pop(k)
        return d
