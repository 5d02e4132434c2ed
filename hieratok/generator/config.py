"""Typed configs of the latent generator (`model:` and `loss:` sections when `task: generator`)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GeneratorModelConfig:
    width: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    # the tokenizer whose latents this generator models: a run dir or an export dir
    # (null: the one recorded in the latent cache)
    tokenizer: str | None = None
    grad_checkpointing: bool = False


@dataclass
class FlowLossConfig:
    label_dropout: float = 0.1  # classifier-free guidance training
    time_mean: float = 0.0  # logit-normal time sampling
    time_std: float = 1.0
