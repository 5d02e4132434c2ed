"""`train(cfg, run_dir)`: a `Trainer` builds the run from its parts, resuming from the newest readable
checkpoint, and runs it; a stop signal during the build leaves the run dir as it was."""
from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)


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
            trainer = Trainer(cfg, run_dir, guard)
    except BaseException as e:
        if not (isinstance(e, SignalStop) or guard.requested):  # a peer's exit on a signal fails collectives
            raise
        return _stopped_in_setup(run_dir, guard)
    return trainer.run()


class Trainer:
    """One run. Construction builds its parts in order: the process group, the run dir, the task and
    its model inside the backend (DDP / FSDP2 / DeepSpeed), the auxiliary models, the loader, the
    restored checkpoint (the newest readable one), the monitor and the periodic work. `run()` trains
    (TrainLoop: the step, logging, checkpoints, stop signals) and, when the run finished, exports."""

    def __init__(self, cfg, run_dir: Path, guard: PreemptionGuard):
        self.cfg, self.run_dir, self.guard = cfg, run_dir, guard
        info = self.info = init_distributed(force_process_group=cfg.dist.backend != "ddp",
                                            timeout_s=cfg.dist.timeout_s)
        seed_everything(cfg.train.seed)  # identical initial weights on every rank (FSDP2 does not broadcast)
        self.dirs = CheckpointDirs(run_dir, cfg.checkpoint.keep_last)
        if info.is_main:
            write_config(run_dir, cfg)
            self.dirs.remove_stale_staging()
        barrier()
        # config.yaml keeps `auto`; the run uses what it resolves to on this device
        cfg.dist.mixed_precision, warning = resolve_precision(cfg.dist.mixed_precision, info.device)
        if warning and info.is_main:
            log.warning(warning)
        latest = self.dirs.latest()
        saved_world = read_trainer_state(latest)["world_size"] if latest else info.world_size

        task = self.task = build_task(cfg)
        self.backend = build_backend(cfg.dist.backend, model=task.build_model(), task=task, cfg=cfg, info=info,
                                     saved_world_size=saved_world)
        for name, (module, lr) in task.aux_modules().items():  # the discriminator, when the GAN term is on
            task.bind_aux(name, self.backend.aux.add(name, module, lr))
        seed_everything(cfg.train.seed + info.rank)
        task.to(info.device, info.rank, info.world_size)

        from data_pipeline import build_loader
        from data_pipeline.loading.augment import unit_range_on_device

        self.loader = build_loader(cfg.data, info.rank, info.world_size, cfg.train.seed,
                                   batch_size=cfg.train.micro_batch_size, train=True,
                                   uint8_images=unit_range_on_device(cfg.data.unit_range_on, info.device))
        require_full_steps(self.loader, global_batch=cfg.train.global_batch_size,
                           micro_batch=cfg.train.micro_batch_size, world_size=info.world_size, rank=info.rank)
        self.checkpointer = Checkpointer(cfg, run_dir, info, self.backend, lambda: self.monitor.wandb_run_id)
        self.state, wandb_id, restored, unreadable = self._restore()
        self.monitor = Monitor(cfg, run_dir, info.is_main, self.state.step, wandb_id)
        for path, why in unreadable:
            self.monitor.log_event(self.state.step, {"event": "checkpoint_unreadable", "path": str(path),
                                                     "error": why})
        if restored is not None:
            path, seconds = restored
            self.monitor.log_event(self.state.step, {"event": "resumed", "path": str(path), "seconds": seconds,
                                                     "saved_world_size": saved_world, "world_size": info.world_size,
                                                     "load": self.checkpointer.last_load})
        # a single process leaves an evaluation on a stop signal; several ranks finish it together
        self.periodic = PeriodicWork(cfg, info, task, self.monitor,
                                     should_stop=lambda: info.world_size == 1 and guard.requested)

    def _restore(self):
        """(loop state, W&B run id, (checkpoint, seconds) or None, [(unreadable checkpoint, why)]): the
        newest checkpoint that loads; a damaged one is reported and the one before it tried."""
        unreadable = []
        for candidate in self.dirs.candidates():
            t0 = time.perf_counter()
            try:
                state, saved = self.checkpointer.restore(candidate, self.loader)
            except CheckpointUnreadable as e:
                unreadable.append((candidate, str(e)))
                if self.info.is_main:
                    log.warning("checkpoint %s is unreadable (%s); trying the one before it", candidate, e)
                continue
            return state, saved.get("wandb_run_id"), (candidate, time.perf_counter() - t0), unreadable
        if unreadable:
            raise CheckpointError(f"no checkpoint in {self.dirs.root} can be read, so nothing was trained: "
                                  + "; ".join(f"{p.name}: {why}" for p, why in unreadable)
                                  + " (move them away to start over)")
        return LoopState(), None, None, unreadable

    def run(self) -> TrainResult:
        loop = TrainLoop(cfg=self.cfg, run_dir=self.run_dir, info=self.info, task=self.task, backend=self.backend,
                         loader=self.loader, monitor=self.monitor, checkpointer=self.checkpointer, guard=self.guard,
                         state=self.state, periodic=self.periodic)
        try:
            result = loop.run()
        except BaseException:
            loop.close()
            self.monitor.close()
            raise
        loop.close()
        if not result.finished:
            self.monitor.close()
            if result.preempted:
                self.guard.forward_to_previous_handler()  # e.g. submitit's requeue, now that the checkpoint is safe
            return result
        self.guard.uninstall()
        try:
            out = export(self.task, self.backend, self.run_dir, self.info)
            if self.info.is_main:
                self.monitor.log_export(out, result.step)
        finally:
            self.monitor.close()
        return result
        self.guard.uninstall()
        export(self.task, self.backend, self.run_dir, self.info)
        return result


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
    barrier()
    task.after_export(out, info.rank, info.world_size, info.device)
    if info.is_main:
        write_model_card(out, run_dir)
    barrier()
    return out
