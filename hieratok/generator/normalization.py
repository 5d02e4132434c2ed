"""Per-channel latent normalisation: the generator models (z - mean) / std, never raw latents.

Un-normalised latents fed to a DiT cost it an order of magnitude in FID (LightningDiT#34), so the
statistics are measured once on the training set (the latent cache stores them) and travel with
every generator export, where `sample` reads them to undo the normalisation before decoding.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

MIN_STD = 1e-6  # a dead channel (constant latent) must not blow up the normalised value


@dataclass(frozen=True)
class LatentStats:
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self):
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"latent stats need one mean and one std per channel; got {len(self.mean)} "
                             f"means and {len(self.std)} stds")
        if any(not s > 0 for s in self.std):
            raise ValueError(f"latent stds must be positive; got {list(self.std)}")

    @property
    def channels(self) -> int:
        return len(self.mean)

    @classmethod
    def from_moments(cls, count: int, total: torch.Tensor, total_sq: torch.Tensor) -> "LatentStats":
        """From sufficient statistics: the number of values per channel, their sum and their sum of squares
        (float64, [C]); the std is the population std."""
        if count < 1:
            raise ValueError("latent stats need at least one value per channel; got count 0")
        total, total_sq = total.double(), total_sq.double()
        mean = total / count
        var = (total_sq / count - mean * mean).clamp_min(0.0)
        std = var.sqrt().clamp_min(MIN_STD)
        return cls(tuple(mean.tolist()), tuple(std.tolist()))

    @classmethod
    def from_latents(cls, z: torch.Tensor) -> "LatentStats":
        """Directly from latents [..., C] (tests, small sets)."""
        flat = z.detach().reshape(-1, z.shape[-1]).double()
        return cls.from_moments(flat.shape[0], flat.sum(0), (flat * flat).sum(0))

    @classmethod
    def from_dict(cls, d: dict) -> "LatentStats":
        try:
            return cls(tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"latent stats must be a mapping with 'mean' and 'std' lists; got {d!r}") from e

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std)}

    def _tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if like.shape[-1] != self.channels:
            raise ValueError(f"latents have {like.shape[-1]} channels (last axis) but the stats have {self.channels}")
        kw = {"device": like.device, "dtype": like.dtype if like.is_floating_point() else torch.float32}
        return torch.tensor(self.mean, **kw), torch.tensor(self.std, **kw)

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents [..., C] -> zero-mean, unit-std channels."""
        mean, std = self._tensors(z)
        return (z - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The inverse of `normalize`: what the tokenizer's decoder takes."""
        mean, std = self._tensors(x)
        return x * std + mean
