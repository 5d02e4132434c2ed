"""A transformer stack whose blocks run either on the finest token grid or on the multi-scale
sequence. The encoder runs its LAST `hiera_depth` blocks multi-scale, the decoder its FIRST.

All blocks live in one `blocks` list whatever `hiera_depth` is, so a single-scale model with
`hiera_depth > 0` has the same parameters, and computes the same function, as the plain ViT.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from hieratok.models.attention import AttentionLayout, build_layout
from hieratok.models.config import StackConfig
from hieratok.models.layers import Block
from hieratok.models.pyramid import MultiScalePyramid, sequence_positions
from hieratok.models.rope import rope_rotations


class Stack(nn.Module):
    def __init__(self, cfg: StackConfig, scales: list[int], downsample: str, position: str,
                 rope_theta: float, attention: str, needs_pyramid: bool):
        super().__init__()
        self.scales = list(scales)
        self.grid = self.scales[-1]
        self.heads = cfg.heads
        self.rope_theta = rope_theta
        self.position = position
        self.attention_kernel = attention
        self.grad_checkpointing = False
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.RMSNorm(cfg.width, eps=1e-6)
        # a single scale needs no pyramid: the sequence IS the grid, and the baseline stays a plain ViT
        self.pyramid = MultiScalePyramid(scales, cfg.width, downsample) if needs_pyramid and len(scales) > 1 else None
        if position == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(self.grid * self.grid, cfg.width))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self._layouts: dict = {}

    @property
    def multi_scale(self) -> bool:
        return self.pyramid is not None

    def _context(self, multi: bool, device: torch.device):
        """(rope tables, attention layout) for the finest grid or the multi-scale sequence, cached."""
        key = (multi, device)
        if key not in self._layouts:
            scales = self.scales if multi else [self.grid]
            rope = None
            if self.position == "rope":
                head_dim = self.blocks[0].attn.qkv.out_features // 3 // self.heads
                rope = rope_rotations(sequence_positions(scales, device), head_dim, self.rope_theta)
            layout = build_layout([s * s for s in scales], device, self.attention_kernel) if multi else AttentionLayout()
            self._layouts[key] = (rope, layout)
        return self._layouts[key]

    def add_positions(self, x: torch.Tensor) -> torch.Tensor:
        """Learned absolute positions of the finest grid (a no-op with RoPE)."""
        return x + self.pos_embed.to(x.dtype) if self.position == "learned" else x

    def to_multi_scale(self, finest: torch.Tensor) -> torch.Tensor:
        return self.pyramid(finest)

    def embed_multi_scale(self, seq: torch.Tensor) -> torch.Tensor:
        """Scale (and, if learned, pooled position) embeddings for a sequence that is already multi-scale."""
        if self.position == "learned":
            seq = seq + self.pyramid.pool(self.pos_embed[None].to(seq.dtype))
        return self.pyramid.embed_scales(seq)

    def finest(self, seq: torch.Tensor) -> torch.Tensor:
        return self.pyramid.finest(seq) if self.multi_scale else seq

    def run(self, x: torch.Tensor, start: int, stop: int, multi: bool, finest_only_last: bool = False) -> torch.Tensor:
        """Blocks [start, stop) on x. With `finest_only_last`, the last block of a multi-scale run
        returns only the finest tokens (the finest scale attends to every key, so it needs no mask)."""
        multi = multi and self.multi_scale
        rope, layout = self._context(multi, x.device)
        blocks = list(self.blocks[start:stop])
        for i, blk in enumerate(blocks):
            trim = multi and finest_only_last and i == len(blocks) - 1
            queries_from = x.shape[1] - self.grid * self.grid if trim else 0
            blk_layout = AttentionLayout() if trim else layout
            if self.grad_checkpointing and self.training:
                x = checkpoint(blk, x, rope, blk_layout, queries_from, use_reentrant=False)
            else:
                x = blk(x, rope, blk_layout, queries_from)
        return x
