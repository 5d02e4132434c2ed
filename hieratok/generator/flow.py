"""Rectified-flow matching: the training half (interpolation, target, time sampling, loss).

Convention (rectified flow / SD3; the reverse of SiT's): t = 0 is data, t = 1 is noise,

    x_t = (1 - t) x0 + t eps,        velocity  v = dx_t/dt = eps - x0,

so sampling integrates dx/dt = v from t = 1 (pure noise) down to t = 0. SiT / LightningDiT write
t_SiT = 1 - t; their guidance interval "t_SiT >= 0.11" is our "t <= 0.89".
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _per_sample(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """t [B] -> [B, 1, ..., 1] to broadcast over a batch shaped like `like`."""
    return t.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t noise, with t [B] in [0, 1]."""
    tb = _per_sample(t, x0)
    return (1 - tb) * x0 + tb * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def logit_normal(z: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Logit-normal times sigmoid(mean + std z) in (0, 1) from standard-normal draws z. mean 0, std 1 is
    SD3 / LightningDiT's choice: it spends the steps mid-path, where the velocity is hardest to predict."""
    if std < 0:
        raise ValueError(f"loss.time_std must be >= 0; got {std}")
    return torch.sigmoid(mean + std * z)


def sample_time(batch: int, mean: float, std: float, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    return logit_normal(torch.randn(batch, device=device, generator=generator), mean, std)


def drop_labels(labels: torch.Tensor, p: float, null_class: int, uniform: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by the null class where its uniform draw is < p (classifier-free guidance training).
    `uniform` [B] in [0, 1): the draws (keyed per sample by the task); None draws them from `generator`."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"loss.label_dropout must lie in [0, 1]; got {p}")
    if p == 0.0:
        return labels
    if uniform is None:
        uniform = torch.rand(labels.shape, device=labels.device, generator=generator)
    return torch.where(uniform.to(labels.device) < p, torch.full_like(labels, null_class), labels)


def flow_matching_loss(model, x0: torch.Tensor, labels: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Velocity MSE for normalised latents x0 [B, T, C], labels [B] (already dropped to the null class
    where wanted), times t [B] and noise shaped like x0. The caller draws t and noise, so that they can
    be keyed per sample (independent of rank and world size). Returns (loss, detached terms to log)."""
    pred = model(interpolate(x0, noise, t), t, labels)
    loss = F.mse_loss(pred.float(), velocity_target(x0, noise).float())
    return loss, {"flow_mse": loss.detach(), "t_mean": t.detach().float().mean()}
