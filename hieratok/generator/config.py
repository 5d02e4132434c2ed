"""Typed configs of the latent generator (`model:` and `loss:` sections when `task: generator`)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GeneratorModelConfig:
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0  # SwiGLU hidden = 2/3 * mlp_ratio * width, rounded to a multiple of 8
    num_classes: int = 1000
    # the tokenizer whose latents this generator models: a run dir or an export dir
    # (null: the one recorded in the latent cache)
    tokenizer: str | None = None
    grad_checkpointing: bool = False
    # the latent the generator models: latent_grid x latent_grid tokens of latent_channels, patch 1
    latent_channels: int = 16
    latent_grid: int = 16
    # a tokenizer with `latent: all` makes the whole multi-scale sequence its latent: its scales, coarse
    # to fine, ending at latent_grid (e.g. [1, 2, 4, 8, 16]); tokens sit at their cells' centres (RoPE)
    # and carry a learned scale embedding. null: one latent_grid x latent_grid grid
    latent_scales: list[int] | None = None
    rope_theta: float = 10000.0
    # no latent cache (data.format mds/wds): per-channel stats are measured on this many images first
    stats_images: int = 1024


@dataclass
class FlowLossConfig:
    label_dropout: float = 0.1  # classifier-free guidance training
    time_mean: float = 0.0  # logit-normal time sampling
    time_std: float = 1.0
