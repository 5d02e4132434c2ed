"""DeepSpeed ZeRO-1/2/3. Checkpoints carry universal-checkpoint info, so a run saved at one world
size resumes at another: the checkpoint is converted with `ds_to_universal` on first such load.

With `dist.mixed_precision=bf16` the engine runs its forward under torch.autocast in bf16 over fp32
weights, which are the optimizer's master copy, as the DDP and FSDP2 backends do (DeepSpeed's
`torch_autocast` section); DeepSpeed reduces the gradients of Linear and Conv weights in bf16. Not
its `bf16` section: that casts the module, buffers included, to bf16 and turns the caller's autocast
off inside the engine, so every fp32 tensor entering the model (images, sinusoids of t) would need a
cast. On an H200 it failed at step 1 ("Input type (float) and bias type (c10::BFloat16)"). The EMA lives beside the engine: full tensors
under ZeRO-1/2, the rank's own flat partition under ZeRO-3 (gathered to full tensors on save, so
it reloads at any world size).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn

from hieratok.distributed.process_group import barrier
from hieratok.train.backends.base import Backend, compile_blocks
from hieratok.train.checkpoint import DS_DIR, DS_EXTRA, DS_TAG
from hieratok.train.optim import param_groups, scaled_lr, set_lr



def _ds_config(cfg, world_size: int, universal: bool) -> dict:
    t = cfg.train
    accum = t.global_batch_size // (t.micro_batch_size * world_size)
    return {
        "train_batch_size": t.global_batch_size,
        "train_micro_batch_size_per_gpu": t.micro_batch_size,
        "gradient_accumulation_steps": accum,
        "gradient_clipping": t.grad_clip,
        "optimizer": {"type": "AdamW", "params": {
            "lr": scaled_lr(t), "betas": list(t.betas), "eps": 1e-8, "weight_decay": t.weight_decay,
            "torch_adam": True,  # the fused op needs a GPU and a compiler
        }},
        "zero_optimization": {"stage": cfg.dist.zero_stage},
        # autocast inside the engine (DeepSpeed would otherwise turn the loop's autocast off there)
        "torch_autocast": {"enabled": cfg.dist.mixed_precision == "bf16", "dtype": "bfloat16"},
        "checkpoint": {"load_universal": universal},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


class _ZeroEMA:
    """EMA of the trainable parameters, over full tensors (ZeRO-1/2) or local partitions (ZeRO-3)."""

    def __init__(self, named_params: list[tuple[str, nn.Parameter]], decay: float, zero3: bool):
        self.decay, self.zero3 = decay, zero3
        self.names = [n for n, _ in named_params]
        self.params = [p for _, p in named_params]
        with torch.no_grad():
            self.shadow = [self._local(p).detach().clone().float() for p in self.params]

    def _local(self, p):
        return p.ds_tensor if self.zero3 else p.data

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.shadow, [self._local(p).float() for p in self.params], 1.0 - self.decay)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Full CPU tensors (a collective under ZeRO-3)."""
        if not self.zero3:
            return {n: s.detach().cpu() for n, s in zip(self.names, self.shadow)}
        out = {}
        world = dist.get_world_size()
        for name, p, s in zip(self.names, self.params, self.shadow):
            parts = [torch.empty_like(s) for _ in range(world)]
            dist.all_gather(parts, s)
            out[name] = torch.cat(parts)[: p.ds_numel].view(p.ds_shape).cpu()
        return out

    @torch.no_grad()
    def load_full_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, p, s in zip(self.names, self.params, self.shadow):
            full = state[name].float().flatten()
            if self.zero3:
                n = s.numel()
                start = dist.get_rank() * n
                chunk = torch.zeros(n, dtype=full.dtype)
                piece = full[start:start + n]
                chunk[: piece.numel()] = piece
                s.copy_(chunk.view_as(s))
            else:
                s.copy_(full.view_as(s))


class DeepSpeedBackend(Backend):
    def __init__(self, model: nn.Module, task, cfg, info, universal_resume: bool = False):
        import deepspeed

        super().__init__(cfg, info)
        self.task = task
        self.zero3 = cfg.dist.zero_stage == 3
        if self.zero3 and cfg.train.compile:
            # ZeRO-3 hooks every submodule to gather its weights; inside a compiled block Dynamo traces those
            # hooks and recompiles per module. As leaves, the blocks gather all their weights at entry (as
            # FSDP2 does per block) and their compiled forward holds no hook.
            from deepspeed.utils import set_z3_leaf_modules

            set_z3_leaf_modules(model, list({type(b) for b in task.block_modules(model)}))
        compile_blocks(task, model, cfg, forward_only=self.zero3)
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=model.to(info.device),
            model_parameters=param_groups(model, cfg.train.weight_decay),
            config=_ds_config(cfg, info.world_size, universal_resume),
        )
        self.module = self.engine.module
        named = [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]
        self.ema = _ZeroEMA(named, cfg.train.ema_decay, self.zero3) if cfg.train.ema_decay > 0 else None

    @property
    def model(self) -> nn.Module:
        return self.engine

    def backward(self, loss: torch.Tensor, accumulation_steps: int) -> None:
        self.engine.backward(loss)  # scales by 1 / gradient_accumulation_steps itself
        if not self.engine.is_gradient_accumulation_boundary():
            self.engine.step()  # only advances the engine's micro-step counter

    def set_lr(self, lr: float) -> None:
        set_lr(self.optimizer, lr)

    def clip_grad_norm(self, max_norm: float) -> None:
        """The engine clips inside step(); its norm is known only afterwards (`last_grad_norm`)."""
        return None

    def step(self) -> bool:
        self.engine.step()
        applied = self.engine.was_step_applied()  # ZeRO skips a step whose gradients hold inf/nan
        if applied and self.ema is not None:
            self.ema.update()
        return applied

    def skip_step(self) -> None:
        """The loop made this step's gradients NaN, so the engine's own overflow check drops them and
        advances its counters without touching the weights or the optimizer state."""
        self.engine.step()
        if self.engine.was_step_applied():
            raise RuntimeError("DeepSpeed applied a step that the loop flagged as non-finite")

    def last_grad_norm(self) -> float:
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    # --- checkpoints ---------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        from deepspeed.checkpoint.constants import UNIVERSAL_CHECKPOINT_INFO

        self.engine.save_checkpoint(str(folder / DS_DIR), tag=DS_TAG,
                                    client_state={UNIVERSAL_CHECKPOINT_INFO: {}}, save_latest=False)
        extra = {"ema": self.ema.full_state_dict() if self.ema is not None else None}
        extra["aux"] = {name: {"model": m.state_dict(), "optim": o.state_dict()} for name, (m, o) in self.aux.items()}
        if self.info.rank == 0:
            torch.save(extra, folder / DS_EXTRA)

    def load(self, folder: Path, saved_world_size: int) -> str:
        ds_dir = folder / DS_DIR
        tag = DS_TAG
        if saved_world_size != self.info.world_size:
            tag = f"{DS_TAG}_universal"
            if self.info.rank == 0 and not (ds_dir / tag).exists():
                convert_to_universal(ds_dir / DS_TAG, ds_dir / tag)
            barrier()
        self.engine.load_checkpoint(str(ds_dir), tag=tag, load_optimizer_states=True,
                                    load_lr_scheduler_states=False, load_module_strict=True)
        extra = torch.load(folder / DS_EXTRA, map_location="cpu", weights_only=False)
        if self.ema is not None and extra["ema"] is not None:
            self.ema.load_full_state_dict(extra["ema"])
        for name, (m, o) in self.aux.items():
            m.load_state_dict(extra["aux"][name]["model"])
            o.load_state_dict(extra["aux"][name]["optim"])
        return "universal" if tag != DS_TAG else "deepspeed"

    def export_state_dict(self, use_ema: bool) -> dict[str, torch.Tensor] | None:
        """Full fp32 CPU state dict on rank 0 (a collective under ZeRO-3)."""
        if self.zero3:
            import deepspeed

            params = list(self.module.parameters())
            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                full = {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}
        else:
            full = {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}
        if self.engine.bfloat16_enabled():  # the module holds bf16 copies: export the fp32 masters
            from deepspeed.utils import safe_get_full_fp32_param

            for name, p in self.module.named_parameters():
                master = safe_get_full_fp32_param(p)  # None for frozen parameters (a collective under ZeRO-3)
                full[name] = master.detach().cpu() if master is not None else full[name].float()
        if use_ema and self.ema is not None:
            full.update({k: v.to(full[k].dtype) for k, v in self.ema.full_state_dict().items()})
        return full if self.info.rank == 0 else None


def convert_to_universal(src: Path, dst: Path) -> None:
    """`ds_to_universal` into a temp folder, renamed into place when complete."""
    from deepspeed.checkpoint import ds_to_universal

    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    args = argparse.Namespace(input_folder=str(src), output_folder=str(tmp), num_extract_workers=1,
                              num_merge_workers=1, keep_temp_folder=False, strict=True, inject_missing_state=True)
    ds_to_universal.main(args)
    tmp.rename(dst)
