"""The KL bottleneck: a diagonal Gaussian posterior over the latent tokens."""
from __future__ import annotations

import torch


class DiagonalGaussian:
    def __init__(self, moments: torch.Tensor):
        """moments [..., 2c] holds the mean and the log-variance, split on the last axis."""
        self.mean, logvar = moments.float().chunk(2, dim=-1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per element, averaged over everything: a scale-free loss term."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).mean()
