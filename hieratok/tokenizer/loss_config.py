"""Typed config of the tokenizer objective (`loss:` section when `task: tokenizer`)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LpipsConfig:
    weight: float = 1.0  # 0 disables LPIPS
    # torchvision VGG16 weights (e.g. vgg16-397923af.pth) and LPIPS v0.1 linear heads (vgg.pth);
    # null means: look in $TORCH_HOME/hub/checkpoints (see README, "Weights offline")
    vgg_weights: str | None = None
    lin_weights: str | None = None


@dataclass
class GanConfig:
    weight: float = 0.1  # 0 disables the GAN
    start_step: int = 50_000
    ramp_steps: int = 5_000  # weight ramps linearly from 0 over this many steps after start_step
    lr: float = 1.0e-4
    disc_channels: int = 64
    disc_layers: int = 3


@dataclass
class LossConfig:
    l1: float = 1.0
    mse: float = 1.0
    kl: float = 1.0e-3
    lpips: LpipsConfig = field(default_factory=LpipsConfig)
    gan: GanConfig = field(default_factory=GanConfig)
