"""The generator's conditioned pieces: timestep and class embeddings, the adaLN-zero block, the final layer.

Attention (2D RoPE, no qkv bias) and the SwiGLU MLP are the tokenizer's own (`hieratok.nn.layers`);
what this file adds is the conditioning: every block regresses shift / scale / gate from the
condition vector c = time embedding + class embedding, and the regressions start at zero so every
block starts as the identity (DiT's adaLN-zero).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from hieratok.nn.attention import AttentionLayout
from hieratok.nn.layers import Attention, SwiGLU, swiglu_hidden

NO_MASK = AttentionLayout()  # the latent grid is one scale: every token sees every token


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class TimestepEmbedding(nn.Module):
    """Flow time t in [0, 1] -> [B, width]: sinusoids of 1000 t (DiT's resolution) through an MLP."""

    def __init__(self, width: int, frequencies: int = 256, time_scale: float = 1000.0):
        super().__init__()
        self.frequencies = frequencies
        self.time_scale = time_scale
        self.mlp = nn.Sequential(nn.Linear(frequencies, width), nn.SiLU(), nn.Linear(width, width))

    def sinusoids(self, t: torch.Tensor) -> torch.Tensor:
        half = self.frequencies // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = (t.float() * self.time_scale)[:, None] * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.sinusoids(t).to(self.mlp[0].weight.dtype))


class ClassEmbedding(nn.Module):
    """Class label -> [B, width]. Row `num_classes` is the null class that classifier-free guidance
    trains with (label dropout) and samples with (the unconditional branch)."""

    def __init__(self, num_classes: int, width: int):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, width)

    @property
    def null_class(self) -> int:
        return self.num_classes

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.table(labels)  # labels are range-checked on the CPU side (task, sampler): no device sync here


class ModulatedBlock(nn.Module):
    """Pre-norm transformer block with adaLN-zero: RMSNorm -> modulate -> attention / SwiGLU -> gate."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        # no affine weights: the per-sample scale and shift come from the condition
        self.norm1 = nn.RMSNorm(width, eps=1e-6, elementwise_affine=False)
        self.attn = Attention(width, heads)
        self.norm2 = nn.RMSNorm(width, eps=1e-6, elementwise_affine=False)
        self.mlp = SwiGLU(width, swiglu_hidden(width, mlp_ratio))
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def zero_init(self) -> None:
        nn.init.zeros_(self.adaln[-1].weight)
        nn.init.zeros_(self.adaln[-1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaln(c).chunk(6, dim=-1)
        x = x + gate1.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift1, scale1), rope, NO_MASK)
        return x + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """RMSNorm -> modulate -> linear to the latent channels (patch 1). Zero-initialised: the
    untrained model predicts velocity 0."""

    def __init__(self, width: int, out_channels: int):
        super().__init__()
        self.norm = nn.RMSNorm(width, eps=1e-6, elementwise_affine=False)
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.linear = nn.Linear(width, out_channels)

    def zero_init(self) -> None:
        for layer in (self.adaln[-1], self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaln(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))
