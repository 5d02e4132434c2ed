"""The multi-scale pyramid: the finest token map pooled to every coarser scale, concatenated
coarse to fine, tagged with a learned per-scale embedding and positioned at cell centres."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from hieratok.nn.attention import scale_ids


class MultiScalePyramid(nn.Module):
    """Token map [B, g*g, D] -> coarse-to-fine sequence [B, sum(s*s), D] (finest scale last)."""

    def __init__(self, scales: list[int], width: int, downsample: str = "area"):
        super().__init__()
        self.scales = list(scales)
        self.grid = self.scales[-1]
        self.downsample = downsample
        self.scale_embed = nn.Parameter(torch.zeros(len(self.scales), width))
        # the scale of every token, made once: the forward indexes it instead of rebuilding it per call
        self.register_buffer("scale_index", scale_ids(self.tokens_per_scale), persistent=False)
        if downsample == "conv":
            # depthwise strided conv per coarse scale, initialised to the area average it replaces
            self.convs = nn.ModuleList(
                nn.Conv2d(width, width, self.grid // s, stride=self.grid // s, groups=width)
                for s in self.scales[:-1]
            )
        nn.init.trunc_normal_(self.scale_embed, std=0.02)
        self.reset_downsampling()

    def reset_downsampling(self) -> None:
        """The learned downsampling starts as the area average it replaces (after any generic init)."""
        if self.downsample == "conv":
            for conv, s in zip(self.convs, self.scales[:-1]):
                nn.init.constant_(conv.weight, (s / self.grid) ** 2)
                nn.init.zeros_(conv.bias)

    @property
    def tokens_per_scale(self) -> list[int]:
        return [s * s for s in self.scales]

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Finest tokens [B, g*g, D] -> all scales [B, N, D], without scale embeddings."""
        b, n, d = x.shape
        fmap = x.transpose(1, 2).reshape(b, d, self.grid, self.grid)
        parts = []
        for i, s in enumerate(self.scales[:-1]):
            pooled = self.convs[i](fmap) if self.downsample == "conv" else F.adaptive_avg_pool2d(fmap, s)
            parts.append(pooled.flatten(2).transpose(1, 2))
        parts.append(x)
        return torch.cat(parts, dim=1)

    def embed_scales(self, seq: torch.Tensor) -> torch.Tensor:
        return seq + self.scale_embed[self.scale_index].to(seq.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed_scales(self.pool(x))

    def finest(self, seq: torch.Tensor) -> torch.Tensor:
        return seq[:, -self.grid * self.grid:]

