"""What DDP and FSDP2 share: a torch AdamW, a torch EMA and DCP checkpoints (reshardable at any
world size)."""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.checkpoint.stateful import Stateful

from hieratok.train.backends.base import AuxModels, Backend, compile_blocks
from hieratok.train.checkpoint import DCP_DIR
from hieratok.train.ema import EMA
from hieratok.train.optim import build_adamw, set_lr


class _TrainState(Stateful):
    """Model, optimizer and EMA (and auxiliary models) as one DCP-reshardable state."""

    def __init__(self, model: nn.Module, optimizer, ema: EMA | None, aux: AuxModels):
        self.model, self.optimizer, self.ema, self.aux = model, optimizer, ema, aux

    def state_dict(self) -> dict:
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
        out = {"model": model_sd, "optim": optim_sd}
        if self.ema is not None:
            out["ema"] = self.ema.state_dict()
        for name, (module, opt) in self.aux.items():
            m, o = get_state_dict(module, opt)
            out[f"aux_{name}"] = {"model": m, "optim": o}
        return out

    def load_state_dict(self, state: dict) -> None:
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        for name, (module, opt) in self.aux.items():
            sub = state[f"aux_{name}"]
            set_state_dict(module, opt, model_state_dict=sub["model"], optim_state_dict=sub["optim"])


class TorchBackend(Backend):
    """Shared by DDP and FSDP2: a torch optimizer, a torch EMA and DCP checkpoints."""

    def __init__(self, model: nn.Module, task, cfg, info):
        super().__init__(cfg, info)
        self.task = task
        self.module = model  # the unwrapped module (FSDP2 shards it in place)
        compile_blocks(task, model, cfg)
        self.wrapped = self._wrap(model)
        self.optimizer = build_adamw(self.module, cfg.train)
        self.trainable = [p for p in self.module.parameters() if p.requires_grad]
        self.ema = EMA.for_model(self.module, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None

    # --- wrapping ------------------------------------------------------------------------------
    def _wrap(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError

    @property
    def model(self) -> nn.Module:
        return self.wrapped

    # --- the step ------------------------------------------------------------------------------
    def backward(self, loss: torch.Tensor, accumulation_steps: int) -> None:
        (loss / accumulation_steps).backward()

    def set_lr(self, lr: float) -> None:
        set_lr(self.optimizer, lr)

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor | None:
        """The global grad norm before clipping, on the device (None: known only after `step()`)."""
        norm = torch.nn.utils.clip_grad_norm_(self.trainable, max_norm if max_norm > 0 else float("inf"))
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm

    def step(self) -> bool:
        """Apply the optimizer; True when the weights were updated."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.trainable)
        return True

    def skip_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    # --- checkpoints ---------------------------------------------------------------------------
    def _state(self) -> _TrainState:
        return _TrainState(self.module, self.optimizer, self.ema, self.aux)

    def save(self, folder: Path) -> None:
        with single_process_is_intended():
            dcp.save({"train": self._state()}, checkpoint_id=str(folder / DCP_DIR))

    def load(self, folder: Path, saved_world_size: int) -> str:
        with single_process_is_intended():
            dcp.load({"train": self._state()}, checkpoint_id=str(folder / DCP_DIR))
        return "dcp"

    def export_state_dict(self, use_ema: bool) -> dict[str, torch.Tensor] | None:
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        full = get_model_state_dict(self.module, options=opts)
        if use_ema and self.ema is not None:
            for name, t in self.ema.state_dict().items():
                t = t.full_tensor() if hasattr(t, "full_tensor") else t  # collective under FSDP2
                if name in full:
                    full[name] = t.detach().to("cpu", full[name].dtype)
        return full if self.info.rank == 0 else None


@contextlib.contextmanager
def single_process_is_intended():
    """DCP warns when it runs without a process group; for a 1-process DDP run that is the intent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield

