"""Pre-norm ViT block: RMSNorm, multi-head attention without qkv bias and with 2D RoPE, SwiGLU MLP."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from hieratok.distributed.randomness import sample_seed
from hieratok.nn.attention import AttentionLayout
from hieratok.nn.rope import apply_rope


def swiglu_hidden(width: int, mlp_ratio: float) -> int:
    """2/3 of the classic MLP width keeps SwiGLU's parameters equal to a GELU MLP's; multiple of 8."""
    hidden = int(2 * mlp_ratio * width / 3)
    return 8 * ((hidden + 7) // 8)


class SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(width, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=True)

    def forward(self, x: torch.Tensor, rope: torch.Tensor | None,
                layout: AttentionLayout, queries_from: int = 0) -> torch.Tensor:
        """Attention of the tokens x[:, queries_from:] over all of x (keys and values)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        q = q[:, :, queries_from:]
        if rope is not None:
            q, k = apply_rope(q, rope[queries_from:]), apply_rope(k, rope)
        out = layout(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n - queries_from, d))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.RMSNorm(width, eps=1e-6)
        self.attn = Attention(width, heads)
        self.norm2 = nn.RMSNorm(width, eps=1e-6)
        self.mlp = SwiGLU(width, swiglu_hidden(width, mlp_ratio))

    def forward(self, x: torch.Tensor, rope, layout: AttentionLayout, queries_from: int = 0) -> torch.Tensor:
        """`queries_from` > 0 computes only the outputs of the tokens from there on (their attention
        still reads every token): the last multi-scale block skips the coarse outputs nobody reads."""
        x = x[:, queries_from:] + self.attn(self.norm1(x), rope, layout, queries_from)
        return x + self.mlp(self.norm2(x))


def init_weights(module: nn.Module, seed: int | None = None) -> None:
    """ViT init: truncated normal 0.02 for linear and conv weights and for free parameters (position
    and scale embeddings, registers), zero biases, unit norms.

    Each tensor draws from its own generator keyed by (seed, its parameter name), so two models built
    under one seed start equal wherever they share a parameter name, whatever else either builds:
    the single-scale and multi-scale arms differ only in the parameters that only one of them has.
    `seed` None draws it from the global RNG (one draw, the first thing a model's init takes)."""
    if seed is None:
        seed = draw_init_seed()

    def normal(p: torch.Tensor, name: str) -> None:
        g = torch.Generator().manual_seed(sample_seed(seed, 0, name, "init"))
        nn.init.trunc_normal_(p, std=0.02, generator=g)

    for prefix, m in module.named_modules():
        names = {n: f"{prefix}.{n}" if prefix else n for n, _ in m.named_parameters(recurse=False)}
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            normal(m.weight, names["weight"])
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.RMSNorm) and m.weight is not None:
            nn.init.ones_(m.weight)
        else:
            for n, p in m.named_parameters(recurse=False):
                normal(p, names[n])


def draw_init_seed() -> int:
    """The seed of a model's keyed init, drawn from the global RNG (seeded by train.seed)."""
    return int(torch.randint(0, 2**62, (), device="cpu"))
