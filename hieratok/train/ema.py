"""Exponential moving average of the trainable weights, shard-aware.

Under FSDP2 the EMA tensors are DTensors with the parameters' own sharding, so the EMA costs
1/world of a copy per rank and checkpoints through DCP like the model. Frozen parameters are not
averaged (their EMA is the parameter itself, taken at export).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class EMA:
    def __init__(self, named_params: list[tuple[str, torch.Tensor]], decay: float):
        self.decay = decay
        self.names = [n for n, _ in named_params]
        with torch.no_grad():
            self.shadow = [p.detach().clone().float() for _, p in named_params]

    @classmethod
    def for_model(cls, model: nn.Module, decay: float) -> "EMA":
        return cls([(n, p) for n, p in model.named_parameters() if p.requires_grad], decay)

    @torch.no_grad()
    def update(self, params: list[torch.Tensor]) -> None:
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in params], 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.shadow))

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = [n for n in self.names if n not in state]
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} tensors, e.g. {missing[:3]}")
        for name, t in zip(self.names, self.shadow):
            t.copy_(state[name])
