"""What the training engine needs from a task (tokenizer or generator); the engine owns the rest:
distribution, precision, accumulation, optimisation, EMA, checkpoints, logging, signals."""
from __future__ import annotations

from typing import Protocol

import torch
import torch.nn as nn


class Task(Protocol):
    def build_model(self) -> nn.Module:
        """The module the engine trains (wrapped by DDP / FSDP2 / DeepSpeed). Frozen parts have
        requires_grad=False before this returns."""

    def block_modules(self, model: nn.Module) -> list[nn.Module]:
        """The repeated blocks: FSDP2 shards each of them, activation checkpointing wraps them."""

    def prepare_batch(self, batch: dict, device: torch.device) -> dict:
        """Move a loader batch to the device, encoding on the fly where the task needs it."""

    def compute_loss(self, model: nn.Module, batch: dict, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(scalar loss to backpropagate, detached scalar terms to log) for one micro-batch."""

    def export(self, state_dict: dict[str, torch.Tensor], directory, extra: dict | None = None) -> None:
        """Write `model.safetensors` + `config.json` (config plus `extra`, e.g. {"weights": "ema"}) from a
        full (unsharded, CPU) model state dict."""
