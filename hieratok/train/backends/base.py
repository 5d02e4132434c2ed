"""What every backend provides to the loop: the abstract `Backend`, and the auxiliary models
(the GAN discriminator) that every backend trains the same way beside its main model.

Per optimizer step the loop calls `accumulate(last)` around each micro-batch's forward and
`backward(loss)`, then `clip_grad_norm()`, then `step()` or `skip_step()`; the auxiliary models
take `aux.backward` per micro-batch and `aux.step` / `aux.zero_grad` per step. Checkpoints go
through `save(folder)` / `load(folder)`, which every rank calls together.
"""
from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

RECOMPILE_LIMIT = 32  # graphs per block class: block kinds x grad modes x input layouts, with room


def compile_blocks(task, model: nn.Module, cfg, forward_only: bool = False) -> None:
    """`train.compile`: torch.compile each repeated block before any wrapping or sharding, as torchtitan
    does, so that FSDP2's and DDP's hooks stay outside the compiled regions and the blocks, which share
    their code, compile once. `forward_only` compiles the blocks' forward and leaves their module hooks
    out of the compiled region (DeepSpeed ZeRO-3's, whose per-module ids make Dynamo recompile per block).

    Shapes are static: a HieraTok stack has three kinds of block (grid, scale-causal, finest queries),
    each one graph per grad mode (training, evaluation), so the default limit of 8 graphs per code
    object is already met by the tiny presets; past it Dynamo falls back to eager for good."""
    if not cfg.train.compile:
        return
    import torch._dynamo.config as dynamo_config

    limit = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"  # torch < 2.6
    setattr(dynamo_config, limit, max(getattr(dynamo_config, limit), RECOMPILE_LIMIT))
    for block in task.block_modules(model):
        if forward_only:
            block.forward = torch.compile(block.forward, backend=cfg.train.compile_backend, dynamic=False)
        else:
            block.compile(backend=cfg.train.compile_backend, dynamic=False)


class AuxModels:
    """Small models with their own AdamW (the discriminator): plain DDP in every backend, following
    the main schedule (their lr times the main lr's warm-up and decay factor)."""

    def __init__(self, cfg, info):
        self.cfg, self.info = cfg, info
        self.models: dict[str, tuple[nn.Module, nn.Module, torch.optim.Optimizer]] = {}  # name -> (module, wrapped, opt)

    def add(self, name: str, module: nn.Module, lr: float) -> nn.Module:
        """Registers `module`; returns its DDP-wrapped copy, which the task's losses call."""
        module.to(self.info.device)
        wrapped = module
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.info.device.index] if self.info.device.type == "cuda" else None
            wrapped = DistributedDataParallel(module, device_ids=ids)
        t = self.cfg.train
        opt = torch.optim.AdamW(module.parameters(), lr=lr, betas=tuple(t.betas), weight_decay=t.weight_decay)
        for g in opt.param_groups:
            g["base_lr"] = lr
        self.models[name] = (module, wrapped, opt)
        return wrapped

    def items(self):
        """name -> (module, optimizer): what a checkpoint holds."""
        return ((name, (module, opt)) for name, (module, _, opt) in self.models.items())

    def set_schedule(self, factor: float) -> None:
        for _, _, opt in self.models.values():
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * factor

    def backward(self, name: str, loss: torch.Tensor, accumulation_steps: int, last: bool) -> None:
        """Gradients all-reduced only on the step's last micro-batch, as the main model's."""
        wrapped = self.models[name][1]
        sync = wrapped.no_sync() if not last and hasattr(wrapped, "no_sync") else contextlib.nullcontext()
        with sync:
            (loss / accumulation_steps).backward()

    def step(self) -> None:
        for _, _, opt in self.models.values():
            opt.step()

    def zero_grad(self) -> None:
        for _, _, opt in self.models.values():
            opt.zero_grad(set_to_none=True)


class Backend(ABC):
    """One parallelism strategy: DDP and FSDP2 (`torch_dcp.TorchBackend`), DeepSpeed ZeRO."""

    def __init__(self, cfg, info):
        self.cfg, self.info = cfg, info
        self.aux = AuxModels(cfg, info)
        self.ema = None  # set by a backend when train.ema_decay > 0

    @property
    @abstractmethod
    def model(self) -> nn.Module:
        """What the task calls forward on (the wrapped model)."""

    def accumulate(self, last: bool):
        """A context around one micro-batch; `last`: the step's last (gradients are reduced then)."""
        return contextlib.nullcontext()

    @abstractmethod
    def backward(self, loss: torch.Tensor, accumulation_steps: int) -> None: ...

    @abstractmethod
    def set_lr(self, lr: float) -> None: ...

    @abstractmethod
    def clip_grad_norm(self, max_norm: float) -> torch.Tensor | None:
        """The global grad norm before clipping, on the device; None when the backend clips inside
        `step()` and knows the norm only afterwards (then `last_grad_norm()` reads it)."""

    @abstractmethod
    def step(self) -> bool:
        """Apply the optimizer (and EMA); True when the weights were updated."""

    @abstractmethod
    def skip_step(self) -> None:
        """Drop this step's gradients without touching the weights or the optimizer state."""

    def last_grad_norm(self) -> float:
        """The grad norm of the last step, for backends whose `clip_grad_norm` returns None."""
        return float("nan")

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Model, optimizer, EMA and auxiliary models into `folder` (all ranks together)."""

    @abstractmethod
    def load(self, folder: Path, saved_world_size: int) -> str:
        """Restore what `save` wrote, at this world size; returns how (recorded in the `resumed` event):
        e.g. "dcp" (resharded by DCP whatever the world size) or "universal" (DeepSpeed's conversion)."""

    @abstractmethod
    def export_state_dict(self, use_ema: bool) -> dict[str, torch.Tensor] | None:
        """Full fp32 CPU state dict on rank 0 (None elsewhere); EMA weights replace trainable ones."""
