"""2D rotary position embedding over (row, column) positions that may be fractional.

Half of each head's channels rotate with the row coordinate and half with the column, so a
coarse token placed at a cell centre (e.g. 7.5, 7.5 on a 16x16 grid) is positioned consistently
with the fine tokens it summarises.
"""
from __future__ import annotations

import torch


def rope_rotations(positions: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    """Unit complex rotations [N, head_dim / 2] for positions [N, 2] (row, col): channel pair i of a
    head turns by the row angle for the first half of the pairs and by the column angle for the rest."""
    quarter = head_dim // 4
    freqs = theta ** (-torch.arange(quarter, dtype=torch.float32, device=positions.device) / quarter)
    pos = positions.to(torch.float32)
    angles = torch.cat([pos[:, :1] * freqs, pos[:, 1:2] * freqs], dim=-1)  # [N, head_dim/2]
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i+1) of x [B, H, N, Dh] as complex numbers: one fused multiply
    (an order of magnitude faster on CPU than the same rotation written with cos/sin tables)."""
    xc = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(xc * rotations).flatten(-2).type_as(x)


def grid_positions(side: int, finest: int, device=None) -> torch.Tensor:
    """Cell centres of a side x side grid in the coordinates of the finest grid: [side^2, 2] (row, col)."""
    cell = finest / side
    c = (torch.arange(side, dtype=torch.float32, device=device) + 0.5) * cell - 0.5
    rows, cols = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], dim=-1)


def sequence_positions(scales: list[int], device=None) -> torch.Tensor:
    """(row, col) of every token of a coarse-to-fine multi-scale sequence, in finest-grid coordinates:
    [sum(s*s), 2], each token at its cell's centre."""
    finest = scales[-1]
    return torch.cat([grid_positions(s, finest, device) for s in scales], dim=0)
