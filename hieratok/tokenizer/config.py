"""Typed config of the tokenizer model (`model:` section when `task: tokenizer`)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StackConfig:
    """One transformer stack (encoder or decoder)."""

    width: int = 768
    depth: int = 6
    heads: int = 12
    # blocks that run on the multi-scale sequence: the LAST ones of the encoder, the FIRST ones of the decoder
    hiera_depth: int = 2
    mlp_ratio: float = 4.0  # SwiGLU hidden = 2/3 * mlp_ratio * width, rounded to a multiple of 8


@dataclass
class TokenizerModelConfig:
    image_size: int = 256
    patch_size: int = 16
    latent_channels: int = 16
    # token-grid sides, coarse to fine, ending at image_size // patch_size; [grid] is the single-scale baseline
    scales: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    downsample: str = "area"  # area | conv  (how the token map is pooled to coarser scales)
    latent: str = "finest"  # finest | all  (which scales' tokens form the latent)
    position: str = "rope"  # rope | learned
    rope_theta: float = 100.0
    encoder: StackConfig = field(default_factory=StackConfig)
    decoder: StackConfig = field(default_factory=lambda: StackConfig(depth=12))
    # scale-causal kernel: sdpa (one unmasked SDPA per scale over its key prefix; exact) | flex (CUDA
    # FlexAttention block mask) | mask (dense boolean mask; the reference) | auto (flex on CUDA, else sdpa)
    attention: str = "auto"
    # causal: scale k attends to the scales <= k (HieraTok) | full: every token sees every token (the control)
    scale_attention: str = "causal"
    # the control for a single-scale model: this many learned register tokens in the blocks where the
    # pyramid's coarse tokens would be (hiera_depth); the pyramid's token count is sum(s*s) - grid^2
    registers: int = 0
    grad_checkpointing: bool = False
    # generator runs only: the tokenizer run dir or export it decodes with (null: the latent cache's own)
    tokenizer: str | None = None
