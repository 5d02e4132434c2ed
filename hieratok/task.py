"""What the training engine needs from a task (tokenizer or generator); the engine owns the rest:
distribution, precision, accumulation, optimisation, EMA, checkpoints, logging, signals.

A task subclasses `Task`: five methods it must write, and hooks whose no-op defaults a task
without auxiliary models, held-out scoring or previews simply keeps, so the engine never asks
which task it runs. It lives outside `hieratok.train` because the tasks import it and only the
entry points may import the engine.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch
import torch.nn as nn


class Task(ABC):
    previews: str | None = None  # the name of the image grid `preview` makes ("reconstructions"), if any

    # --- what every task writes ----------------------------------------------------------------
    @abstractmethod
    def build_model(self) -> nn.Module:
        """The module the engine trains (wrapped by DDP / FSDP2 / DeepSpeed). Frozen parts have
        requires_grad=False before this returns."""

    @abstractmethod
    def block_modules(self, model: nn.Module) -> list[nn.Module]:
        """The repeated blocks: FSDP2 shards each of them, activation checkpointing wraps them."""

    @abstractmethod
    def prepare_batch(self, batch: dict, device: torch.device) -> dict:
        """Move a loader batch to the device, encoding on the fly where the task needs it."""

    @abstractmethod
    def compute_loss(self, model: nn.Module, batch: dict, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(scalar loss to backpropagate, detached scalar terms to log) for one micro-batch."""

    @abstractmethod
    def export(self, state_dict: dict[str, torch.Tensor], directory, extra: dict | None = None) -> None:
        """Write `model.safetensors` + `config.json` (config plus `extra`, e.g. {"weights": "ema"}) from a
        full (unsharded, CPU) model state dict."""

    # --- hooks with no-op defaults ---------------------------------------------------------------
    def to(self, device: torch.device, rank: int = 0, world_size: int = 1) -> "Task":
        """Move what the task itself holds (frozen networks, statistics) to the training device. All
        ranks call it together, so a task may measure something over the ranks here."""
        return self

    def after_export(self, directory, rank: int = 0, world_size: int = 1, device="cpu") -> None:
        """Collective, after rank 0 has written the export: measure what the export should record
        besides the weights (every rank may take part; rank 0 writes)."""

    def aux_modules(self) -> dict[str, tuple[nn.Module, float]]:
        """Models with their own optimizer and learning rate (the GAN discriminator): name -> (module, lr)."""
        return {}

    def bind_aux(self, name: str, wrapped: nn.Module) -> None:
        """The engine's wrapped (DDP) copy of an auxiliary model, for the task's own losses."""

    def aux_losses(self, step: int) -> dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """After `compute_loss`: name -> (loss of that auxiliary model, its terms to log)."""
        return {}

    def held_out_scorer(self, device: torch.device):
        """What scores the model on held-out batches every `eval.every_steps` (None: nothing to score).
        It has `due(step)` and `__call__(model, batches, autocast_dtype)` -> metrics dict."""
        return None

    def preview(self, model: nn.Module, held_out_images: Callable[[], torch.Tensor]) -> torch.Tensor | None:
        """An image grid [3, H, W] in [-1, 1] for W&B and TensorBoard (when `previews`), or None when it
        cannot be made here; a collective under FSDP2. `held_out_images()` gives a batch of held-out
        images on the device, for a task that needs them."""
        raise NotImplementedError(f"{type(self).__name__} makes no previews")
