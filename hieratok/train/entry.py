"""`train(cfg, run_dir)`: assemble a run from its parts and run it; resumes from `latest`."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from data_pipeline.capacity import require_full_steps
from hieratok.distributed.process_group import barrier, init_distributed
from hieratok.distributed.randomness import seed_everything
from hieratok.train.backends import build_backend
from hieratok.train.backends.base import wrap_aux_ddp
from hieratok.train.checkpoint_dirs import CheckpointDirs, read_trainer_state
from hieratok.train.checkpointer import Checkpointer
from hieratok.train.loop import LoopState, TrainLoop, TrainResult
from hieratok.train.monitor import Monitor
from hieratok.train.periodic import PeriodicEval
from hieratok.train.precision import resolve_precision
from hieratok.train.run_dir import write_config
from hieratok.train.signals import PreemptionGuard, SignalStop
from hieratok.train.tasks import build_task


def train(cfg, run_dir: str | Path) -> TrainResult:
    run_dir = Path(run_dir)
    guard = PreemptionGuard()
    if cfg.checkpoint.on_signal:
        guard.install()  # before anything slow: a signal during setup is handled too
    try:
        return _train(cfg, run_dir, guard)
    finally:
        guard.uninstall()  # a no-op where it already happened


def _train(cfg, run_dir: Path, guard: PreemptionGuard) -> TrainResult:
    try:
        with guard.raising():  # nothing trained yet: a stop signal ends setup at once
            info, task, backend, aux, loader, checkpointer, state, monitor, periodic = _setup(cfg, run_dir, guard)
    except BaseException as e:
        if not (isinstance(e, SignalStop) or guard.requested):  # a peer's exit on a signal fails collectives
            raise
        return _stopped_in_setup(run_dir, guard)
    loop = TrainLoop(cfg=cfg, run_dir=run_dir, info=info, task=task, backend=backend, loader=loader,
                     monitor=monitor, checkpointer=checkpointer, guard=guard, state=state, aux=aux,
                     periodic=periodic)
    try:
        result = loop.run()
    finally:
        loop.close()
        monitor.close()
    if result.preempted:
        guard.forward_to_previous_handler()  # e.g. submitit's requeue, now that the checkpoint is safe
        return result
    guard.uninstall()
    export(task, backend, run_dir, info)
    return result


def _setup(cfg, run_dir: Path, guard: PreemptionGuard):
    info = init_distributed(force_process_group=cfg.dist.backend != "ddp", timeout_s=cfg.dist.timeout_s)
    seed_everything(cfg.train.seed)  # identical initial weights on every rank (FSDP2 does not broadcast)
    dirs = CheckpointDirs(run_dir, cfg.checkpoint.keep_last)
    if info.is_main:
        write_config(run_dir, cfg)
        dirs.remove_stale_staging()
    barrier()
    cfg.dist.mixed_precision, warning = resolve_precision(cfg.dist.mixed_precision, info.device)  # config.yaml keeps `auto`
    if warning and info.is_main:
        print(f"hieratok train: warning: {warning}", file=sys.stderr, flush=True)
    latest = dirs.latest()
    saved_world = read_trainer_state(latest)["world_size"] if latest else info.world_size

    task = build_task(cfg)
    extra = {"universal_resume": saved_world != info.world_size} if cfg.dist.backend == "deepspeed" else {}
    backend = build_backend(cfg.dist.backend, model=task.build_model(), task=task, cfg=cfg, info=info, **extra)
    aux = _build_aux(task, backend, info, cfg)
    seed_everything(cfg.train.seed + info.rank)
    if cfg.train.compile:
        for block in task.block_modules(backend.module):
            block.compile()
    task.to(info.device)

    from data_pipeline import build_loader

    loader = build_loader(cfg.data, info.rank, info.world_size, cfg.train.seed,
                          batch_size=cfg.train.micro_batch_size, train=True)
    require_full_steps(loader, global_batch=cfg.train.global_batch_size, micro_batch=cfg.train.micro_batch_size,
                       world_size=info.world_size, rank=info.rank)
    holder: dict = {}
    checkpointer = Checkpointer(cfg, run_dir, info, backend, lambda: holder["monitor"].wandb_run_id)
    state, wandb_id, restore_s = LoopState(), None, None
    if latest is not None:
        t0 = time.perf_counter()
        state, saved = checkpointer.restore(latest, loader)
        wandb_id, restore_s = saved.get("wandb_run_id"), time.perf_counter() - t0
    monitor = holder["monitor"] = Monitor(cfg, run_dir, info.is_main, state.step, wandb_id)
    if restore_s is not None:
        monitor.log_event(state.step, {"event": "resumed", "path": str(latest), "seconds": restore_s,
                                       "saved_world_size": saved_world, "world_size": info.world_size})
    # a single process leaves an evaluation on a stop signal; several ranks finish it together
    periodic = PeriodicEval(cfg, info, task, monitor, should_stop=lambda: info.world_size == 1 and guard.requested)
    return info, task, backend, aux, loader, checkpointer, state, monitor, periodic


def _stopped_in_setup(run_dir: Path, guard: PreemptionGuard) -> TrainResult:
    """The run dir is as it was: its newest checkpoint (if any) is where a rerun resumes."""
    try:
        latest = CheckpointDirs(run_dir, 1).latest()
    except (OSError, RuntimeError):
        latest = None
    guard.forward_to_previous_handler()
    step = read_trainer_state(latest)["step"] if latest is not None else 0
    return TrainResult(step=step, preempted=True, signal=guard.received, saved=latest is not None)


def _build_aux(task, backend, info, cfg) -> dict:
    """Auxiliary models (the discriminator): DDP-wrapped, their own AdamW, checkpointed by the backend."""
    aux = {}
    for name, (module, lr) in (task.aux_modules() if hasattr(task, "aux_modules") else {}).items():
        wrapped = wrap_aux_ddp(module, info)
        opt = torch.optim.AdamW(module.parameters(), lr=lr, betas=tuple(cfg.train.betas),
                                weight_decay=cfg.train.weight_decay)
        for g in opt.param_groups:
            g["base_lr"] = lr
        backend.aux[name] = (module, opt)
        task.bind_aux(name, wrapped)
        aux[name] = (wrapped, opt)
    return aux


def export(task, backend, run_dir: Path, info) -> Path:
    """Collective: `export/model.safetensors` + `config.json`, EMA weights when EMA is on."""
    use_ema = backend.ema is not None
    state = backend.export_state_dict(use_ema=use_ema)
    out = run_dir / "export"
    if info.is_main:
        task.export(state, out, {"weights": "ema" if use_ema else "raw"})
    barrier()
    return out
