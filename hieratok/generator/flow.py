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


def sample_time(batch: int, mean: float, std: float, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Logit-normal times: sigmoid(N(mean, std^2)), in (0, 1); mean 0, std 1 is SD3 / LightningDiT's choice,
    which spends the steps in the middle of the path where the velocity is hardest to predict."""
    if std < 0:
        raise ValueError(f"loss.time_std must be >= 0; got {std}")
    return torch.sigmoid(mean + std * torch.randn(batch, device=device, generator=generator))


def drop_labels(labels: torch.Tensor, p: float, null_class: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by the null class with probability p (classifier-free guidance training)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"loss.label_dropout must lie in [0, 1]; got {p}")
    if p == 0.0:
        return labels
    drop = torch.rand(labels.shape, device=labels.device, generator=generator) < p
    return torch.where(drop, torch.full_like(labels, null_class), labels)


def flow_matching_loss(model, x0: torch.Tensor, labels: torch.Tensor, null_class: int, time_mean: float = 0.0,
                       time_std: float = 1.0, label_dropout: float = 0.0, generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Velocity MSE for one batch of normalised latents x0 [B, T, C] and labels [B].

    `model` may be wrapped (DDP, FSDP2, compile), hence the null class is passed in. Returns
    (loss, detached terms to log). `generator` makes the draw reproducible; None uses the global
    RNG, which the engine seeds per rank."""
    b = x0.shape[0]
    t = sample_time(b, time_mean, time_std, device=x0.device, generator=generator)
    noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
    labels = drop_labels(labels, label_dropout, null_class, generator)
    pred = model(interpolate(x0, noise, t), t, labels)
    loss = F.mse_loss(pred.float(), velocity_target(x0, noise).float())
    return loss, {"flow_mse": loss.detach(), "t_mean": t.mean().detach()}

