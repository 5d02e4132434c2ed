"""Sufficient statistics of a feature set in float64: count, sum and sum of outer products.

Sums merge exactly (up to float64 round-off in the order of additions) across batches, shards,
Ray actors and torch.distributed ranks, so a split computation gives the single-process result.
Saved as `.npz` with `n`, `sum`, `outer_sum` plus the protocol they were made under; files that
hold only `mu` / `sigma` (torch-fidelity or ADM reference batches) load as `GaussianStats`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

STATS_FORMAT = "hieratok-feature-stats/1"


@dataclass
class GaussianStats:
    """Mean and covariance of a feature set (what a Fréchet distance needs)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int | None = None
    meta: dict = field(default_factory=dict)


class FeatureStats:
    """Running float64 sums of d-dimensional features; `update` with [B, d] batches, `merge` others."""

    def __init__(self, dim: int, meta: dict | None = None):
        self.dim = dim
        self.n = 0
        self.sum = np.zeros(dim, np.float64)
        self.outer_sum = np.zeros((dim, dim), np.float64)
        self.meta = dict(meta or {})

    def update(self, features) -> "FeatureStats":
        f = features.detach().to("cpu", torch.float64).numpy() if torch.is_tensor(features) else np.asarray(features, np.float64)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise ValueError(f"features must be [batch, {self.dim}], got shape {tuple(f.shape)}")
        self.n += f.shape[0]
        self.sum = self.sum + f.sum(axis=0)
        self.outer_sum = self.outer_sum + f.T @ f
        return self

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of {other.dim}-d features into {self.dim}-d ones")
        # not in place: arrays that came back from Ray's object store are read-only
        self.n += other.n
        self.sum = self.sum + other.sum
        self.outer_sum = self.outer_sum + other.outer_sum
        return self

    @classmethod
    def merged(cls, parts: list["FeatureStats"]) -> "FeatureStats":
        if not parts:
            raise ValueError("no statistics to merge")
        out = cls(parts[0].dim, parts[0].meta)
        for p in parts:
            out.merge(p)
        return out

    def all_reduce(self, group=None) -> "FeatureStats":
        """Sum the statistics over all torch.distributed ranks (float64), in place; a no-op without it."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        device = "cuda" if dist.get_backend(group) == "nccl" else "cpu"
        flat = torch.from_numpy(np.concatenate([[float(self.n)], self.sum, self.outer_sum.ravel()])).to(device)
        dist.all_reduce(flat, group=group)
        flat = flat.cpu().numpy()
        self.n = int(round(flat[0]))
        self.sum = flat[1 : 1 + self.dim].copy()
        self.outer_sum = flat[1 + self.dim :].reshape(self.dim, self.dim).copy()
        return self

    def gaussian(self) -> GaussianStats:
        """Mean and unbiased covariance (numpy.cov's default, as torch-fidelity uses)."""
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 features, these statistics hold {self.n}")
        mu = self.sum / self.n
        sigma = (self.outer_sum - self.n * np.outer(mu, mu)) / (self.n - 1)
        return GaussianStats(mu=mu, sigma=(sigma + sigma.T) / 2, n=self.n, meta=dict(self.meta))

    # --- files ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"format": STATS_FORMAT, **self.meta}, sort_keys=True)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, n=np.int64(self.n), sum=self.sum, outer_sum=self.outer_sum, meta=np.array(meta))
        tmp.replace(path)
        return path


def is_stats_file(path: str | Path) -> bool:
    """True for an `.npz` of statistics (ours, or mu/sigma); False for one of images (`arr_0`)."""
    with np.load(path) as z:
        keys = set(z.files)
    return {"n", "sum", "outer_sum"} <= keys or ({"mu", "sigma"} <= keys and "arr_0" not in keys)


def load_stats(path: str | Path) -> FeatureStats | GaussianStats:
    """Our sums (mergeable) or, for a file with only `mu` and `sigma`, a GaussianStats."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"statistics file not found: {path}")
    with np.load(path) as z:
        keys = set(z.files)
        if {"n", "sum", "outer_sum"} <= keys:
            meta = json.loads(str(z["meta"])) if "meta" in keys else {}
            meta.pop("format", None)
            stats = FeatureStats(int(z["sum"].shape[0]), meta)
            stats.n, stats.sum, stats.outer_sum = int(z["n"]), z["sum"].astype(np.float64), z["outer_sum"].astype(np.float64)
            return stats
        if {"mu", "sigma"} <= keys:
            return GaussianStats(mu=z["mu"].astype(np.float64), sigma=z["sigma"].astype(np.float64),
                                 meta={"source": str(path)})
    raise ValueError(f"{path} is not a statistics file: expected keys n/sum/outer_sum or mu/sigma, found {sorted(keys)}")


def as_gaussian(stats: FeatureStats | GaussianStats) -> GaussianStats:
    return stats if isinstance(stats, GaussianStats) else stats.gaussian()
