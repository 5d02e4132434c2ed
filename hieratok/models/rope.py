"""2D rotary position embedding over (row, column) positions that may be fractional.

Half of each head's channels rotate with the row coordinate and half with the column, so a
coarse token placed at a cell centre (e.g. 7.5, 7.5 on a 16x16 grid) is positioned consistently
with the fine tokens it summarises.
"""
from __future__ import annotations

import torch


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables [N, head_dim / 2] for positions [N, 2] (row, col), in float32."""
    quarter = head_dim // 4
    freqs = theta ** (-torch.arange(quarter, dtype=torch.float32, device=positions.device) / quarter)
    pos = positions.to(torch.float32)
    angles = torch.cat([pos[:, :1] * freqs, pos[:, 1:2] * freqs], dim=-1)  # [N, head_dim/2]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i+1) of x [B, H, N, Dh] by the angles of their position."""
    x2 = x.float().unflatten(-1, (-1, 2))
    a, b = x2[..., 0], x2[..., 1]
    out = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)
    return out.type_as(x)


def grid_positions(side: int, finest: int, device=None) -> torch.Tensor:
    """Cell centres of a side x side grid in the coordinates of the finest grid: [side^2, 2] (row, col)."""
    cell = finest / side
    c = (torch.arange(side, dtype=torch.float32, device=device) + 0.5) * cell - 0.5
    rows, cols = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], dim=-1)
