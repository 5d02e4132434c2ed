"""A transformer stack whose blocks run either on the finest token grid or on the multi-scale
sequence. The encoder runs its LAST `hiera_depth` blocks multi-scale, the decoder its FIRST.

All blocks live in one `blocks` list whatever `hiera_depth` is, so a single-scale model with
`hiera_depth > 0` has the same parameters, and computes the same function, as the plain ViT.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from hieratok.nn.attention import AttentionLayout, CoarseKeysZeroed, build_layout
from hieratok.nn.layers import Block
from hieratok.nn.rope import rope_rotations, sequence_positions
from hieratok.tokenizer.config import StackConfig
from hieratok.tokenizer.pyramid import MultiScalePyramid


class Stack(nn.Module):
    def __init__(self, cfg: StackConfig, scales: list[int], downsample: str, position: str,
                 rope_theta: float, attention: str, needs_pyramid: bool, scale_attention: str = "causal",
                 registers: int = 0):
        super().__init__()
        self.scales = list(scales)
        self.grid = self.scales[-1]
        self.heads = cfg.heads
        self.rope_theta = rope_theta
        self.position = position
        self.attention_kernel = attention
        self.scale_causal = scale_attention == "causal"
        self.grad_checkpointing = False
        self.zero_coarse_keys = False  # the mechanism probe (coarse_keys_zeroed), off in training
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.RMSNorm(cfg.width, eps=1e-6)
        # a single scale needs no pyramid: the sequence IS the grid, and the baseline stays a plain ViT
        self.pyramid = MultiScalePyramid(scales, cfg.width, downsample) if needs_pyramid and len(scales) > 1 else None
        # the control: a single-scale stack whose multi-scale blocks see learned register tokens instead
        # of the pyramid's coarse tokens (as many), with full attention and no position (a RoPE angle of 0)
        self.registers = nn.Parameter(torch.zeros(registers, cfg.width)) if needs_pyramid and registers else None
        if position == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(self.grid * self.grid, cfg.width))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self._layouts: dict = {}

    @property
    def multi_scale(self) -> bool:
        """Some blocks run on a longer sequence than the grid: the pyramid's, or registers + the grid."""
        return self.pyramid is not None or self.registers is not None

    def _sequence_positions(self, device) -> torch.Tensor:
        if self.registers is not None:
            grid = sequence_positions([self.grid], device)
            return torch.cat([torch.zeros(len(self.registers), 2, device=device), grid])
        return sequence_positions(self.scales, device)

    def _context(self, multi: bool, device: torch.device):
        """(rope tables, attention layout) for the finest grid or the multi-scale sequence, cached."""
        key = (multi, device)
        if key not in self._layouts:
            scales = self.scales if multi else [self.grid]
            rope = None
            if self.position == "rope":
                head_dim = self.blocks[0].attn.qkv.out_features // 3 // self.heads
                positions = self._sequence_positions(device) if multi else sequence_positions(scales, device)
                rope = rope_rotations(positions, head_dim, self.rope_theta)
            masked = multi and self.scale_causal and self.pyramid is not None
            layout = build_layout([s * s for s in scales], device, self.attention_kernel) if masked else AttentionLayout()
            self._layouts[key] = (rope, layout)
        return self._layouts[key]

    def add_positions(self, x: torch.Tensor) -> torch.Tensor:
        """Learned absolute positions of the finest grid (a no-op with RoPE)."""
        return x + self.pos_embed.to(x.dtype) if self.position == "learned" else x

    def to_multi_scale(self, finest: torch.Tensor) -> torch.Tensor:
        if self.registers is not None:
            return torch.cat([self.registers.to(finest.dtype).expand(len(finest), -1, -1), finest], dim=1)
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
            if multi and self.zero_coarse_keys:
                blk_layout = CoarseKeysZeroed(blk_layout, x.shape[1] - self.grid * self.grid)
            if self.grad_checkpointing and self.training:
                x = checkpoint(blk, x, rope, blk_layout, queries_from, use_reentrant=False)
            else:
                x = blk(x, rope, blk_layout, queries_from)
        return x
