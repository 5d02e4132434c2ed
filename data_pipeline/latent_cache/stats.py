"""Per-channel statistics of a latent cache: float64 sufficient statistics (n, sum, sum of squares)
that merge exactly across ranks by addition, and the `latent_stats.json` written beside the shards.

latent_stats.json:
  {"latent_shape": [T, C], "rows": N, "n": N*T, "mean": [C floats], "std": [C floats],
   "sum": [...], "sum_sq": [...], "metadata": {caller's: tokenizer path, weights hash, ...}}
std is the population standard deviation (ddof 0) over all rows and tokens of each channel.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from data_pipeline.errors import DataError
from data_pipeline.storage import open_destination

STATS_FILE = "latent_stats.json"


@dataclass
class ChannelStats:
    channels: int
    rows: int = 0
    n: int = 0  # values per channel: rows x tokens
    sum: np.ndarray = None
    sum_sq: np.ndarray = None

    def __post_init__(self):
        self.sum = np.zeros(self.channels, np.float64) if self.sum is None else np.asarray(self.sum, np.float64)
        self.sum_sq = np.zeros(self.channels, np.float64) if self.sum_sq is None else np.asarray(self.sum_sq, np.float64)

    def add(self, latents: np.ndarray) -> None:
        """latents: [B, T, C]."""
        x = latents.reshape(-1, self.channels).astype(np.float64)
        self.rows += latents.shape[0]
        self.n += x.shape[0]
        self.sum += x.sum(axis=0)
        self.sum_sq += np.einsum("ij,ij->j", x, x)

    def merge(self, other: "ChannelStats") -> "ChannelStats":
        return ChannelStats(self.channels, self.rows + other.rows, self.n + other.n,
                            self.sum + other.sum, self.sum_sq + other.sum_sq)

    def mean(self) -> np.ndarray:
        return self.sum / max(self.n, 1)

    def std(self) -> np.ndarray:
        var = self.sum_sq / max(self.n, 1) - self.mean() ** 2
        return np.sqrt(np.maximum(var, 0.0))

    def to_json(self) -> dict:
        return {"channels": self.channels, "rows": self.rows, "n": self.n,
                "sum": self.sum.tolist(), "sum_sq": self.sum_sq.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> "ChannelStats":
        return cls(d["channels"], d["rows"], d["n"], d["sum"], d["sum_sq"])


@dataclass
class LatentCacheStats:
    """What latent_stats.json records of a cache (the generator normalises with `generator.normalization.LatentStats`)."""
    latent_shape: tuple[int, int]
    rows: int
    mean: np.ndarray  # [C] float64
    std: np.ndarray  # [C] float64
    metadata: dict = field(default_factory=dict)


def stats_document(stats: ChannelStats, latent_shape, metadata: dict) -> dict:
    return {"latent_shape": list(latent_shape), "rows": stats.rows, "n": stats.n,
            "mean": stats.mean().tolist(), "std": stats.std().tolist(),
            "sum": stats.sum.tolist(), "sum_sq": stats.sum_sq.tolist(), "metadata": metadata}


def read_latent_stats(path: str) -> LatentCacheStats:
    """The stats of the latent cache at `path` (the folder of its index.json; local or s3://)."""
    dest = open_destination(path)
    if not dest.exists(STATS_FILE):
        raise DataError(f"{path} has no {STATS_FILE}: not a merged latent cache (run merge_latent_parts)")
    d = json.loads(dest.read_text(STATS_FILE))
    return LatentCacheStats(tuple(d["latent_shape"]), d["rows"], np.asarray(d["mean"], np.float64),
                       np.asarray(d["std"], np.float64), d.get("metadata", {}))
