"""`train(cfg, run_dir)`: assemble a run from its parts and run it; resumes from `latest`."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from data_pipeline.loading.capacity import require_full_steps
from hieratok.distributed.process_group import barrier, init_distributed
from hieratok.distributed.randomness import seed_everything
from hieratok.distributed.signals import PreemptionGuard, SignalStop
from hieratok.nn.model_card import write_model_card
from hieratok.train.backends import build_backend
from hieratok.train.checkpoint import (
    CheckpointDirs,
    Checkpointer,
    CheckpointError,
    CheckpointUnreadable,
    read_trainer_state,
)
from hieratok.train.loop import LoopState, TrainLoop, TrainResult
from hieratok.train.monitor import Monitor
from hieratok.train.periodic_work import PeriodicWork
from hieratok.train.precision import resolve_precision
from hieratok.train.run_dir import write_config
from hieratok.train.task_registry import build_task


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
            info, task, backend, loader, checkpointer, state, monitor, periodic = _setup(cfg, run_dir, guard)
    except BaseException as e:
        if not (isinstance(e, SignalStop) or guard.requested):  # a peer's exit on a signal fails collectives
            raise
        return _stopped_in_setup(run_dir, guard)
    loop = TrainLoop(cfg=cfg, run_dir=run_dir, info=info, task=task, backend=backend, loader=loader,
                     monitor=monitor, checkpointer=checkpointer, guard=guard, state=state,
                     periodic=periodic)
    try:
        result = loop.run()
    finally:
        loop.close()
        monitor.close()
    if result.preempted:
        guard.forward_to_previous_handler()  # e.g. submitit's requeue, now that the checkpoint is safe
    if not result.finished:
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
    backend = build_backend(cfg.dist.backend, model=task.build_model(), task=task, cfg=cfg, info=info,
                            saved_world_size=saved_world)
    for name, (module, lr) in task.aux_modules().items():  # the discriminator, when the GAN term is on
        task.bind_aux(name, backend.aux.add(name, module, lr))
    seed_everything(cfg.train.seed + info.rank)
    task.to(info.device, info.rank, info.world_size)

    from data_pipeline import build_loader

    loader = build_loader(cfg.data, info.rank, info.world_size, cfg.train.seed,
                          batch_size=cfg.train.micro_batch_size, train=True)
    require_full_steps(loader, global_batch=cfg.train.global_batch_size, micro_batch=cfg.train.micro_batch_size,
                       world_size=info.world_size, rank=info.rank)
    holder: dict = {}
    checkpointer = Checkpointer(cfg, run_dir, info, backend, lambda: holder["monitor"].wandb_run_id)
    state, wandb_id, restore_s, unreadable = LoopState(), None, None, []
    for candidate in dirs.candidates():
        t0 = time.perf_counter()
        try:
            state, saved = checkpointer.restore(candidate, loader)
        except CheckpointUnreadable as e:
            unreadable.append((candidate, str(e)))
            if info.is_main:
                print(f"hieratok train: warning: checkpoint {candidate} is unreadable ({unreadable[-1][1]}); "
                      f"trying the one before it", file=sys.stderr, flush=True)
            continue
        latest, wandb_id, restore_s = candidate, saved.get("wandb_run_id"), time.perf_counter() - t0
        break
    else:
        if unreadable:
            raise CheckpointError(f"no checkpoint in {dirs.root} can be read, so nothing was trained: "
                                  + "; ".join(f"{p.name}: {why}" for p, why in unreadable)
                                  + " (move them away to start over)")
    monitor = holder["monitor"] = Monitor(cfg, run_dir, info.is_main, state.step, wandb_id)
    for path, why in unreadable:
        monitor.log_event(state.step, {"event": "checkpoint_unreadable", "path": str(path), "error": why})
    if restore_s is not None:
        monitor.log_event(state.step, {"event": "resumed", "path": str(latest), "seconds": restore_s,
                                       "saved_world_size": saved_world, "world_size": info.world_size})
    # a single process leaves an evaluation on a stop signal; several ranks finish it together
    periodic = PeriodicWork(cfg, info, task, monitor, should_stop=lambda: info.world_size == 1 and guard.requested)
    return info, task, backend, loader, checkpointer, state, monitor, periodic


def _stopped_in_setup(run_dir: Path, guard: PreemptionGuard) -> TrainResult:
    """The run dir is as it was: its newest checkpoint (if any) is where a rerun resumes."""
    try:
        latest = CheckpointDirs(run_dir, 1).latest()
    except (OSError, RuntimeError):
        latest = None
    guard.forward_to_previous_handler()
    step = read_trainer_state(latest)["step"] if latest is not None else 0
    return TrainResult(step=step, stopped="signal", signal=guard.received, saved=latest is not None)


def export(task, backend, run_dir: Path, info) -> Path:
    """Collective: `export/model.safetensors` + `config.json`, EMA weights when EMA is on."""
    use_ema = backend.ema is not None
    state = backend.export_state_dict(use_ema=use_ema)
    out = run_dir / "export"
    if info.is_main:
        task.export(state, out, {"weights": "ema" if use_ema else "raw"})
        write_model_card(out, run_dir)
    barrier()
    return out
