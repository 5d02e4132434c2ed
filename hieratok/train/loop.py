"""The optimisation loop: accumulation, mixed precision, non-finite guard, logging, checkpoints."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from data_pipeline.errors import DataError
from data_pipeline.loading.batch_wait import BatchFetcher, WaitAbandoned
from hieratok.config.errors import ConfigError
from hieratok.distributed.process_group import all_reduce_sum
from hieratok.distributed.randomness import rng_state
from hieratok.metrics_file import truncate_after
from hieratok.train.optim import lr_at, scaled_lr

log = logging.getLogger(__name__)

# With several ranks, how long a rank that is waiting for data when a stop signal comes keeps
# waiting (so the step can end and all ranks checkpoint together) before it gives up without a
# checkpoint: SLURM signals 90 s before a time limit, and the requeue needs a clean exit.
STOP_GRACE_S = 30.0


@dataclass
class TrainResult:
    step: int
    stopped: str | None = None  # None: ran to max_steps; "signal": preempted; "stop_at_step": time-boxed
    signal: int | None = None
    saved: bool = True  # a checkpoint holds `step` (False: stopped before any progress worth saving)

    @property
    def finished(self) -> bool:
        return self.stopped is None

    @property
    def preempted(self) -> bool:
        """Stopped by a signal: the requeue (or a rerun) goes on from the checkpoint."""
        return self.stopped == "signal"


class NonFiniteLossError(RuntimeError):
    pass


@dataclass
class LoopState:
    """What a checkpoint must restore besides the tensors."""

    step: int = 0
    samples_seen: int = 0
    nonfinite_total: int = 0
    nonfinite_in_a_row: int = 0
    # wall seconds the run has trained for, summed over its resumes (work redone after a kill counts once)
    train_seconds: float = 0.0


class TrainLoop:
    def __init__(self, *, cfg, run_dir: Path, info, task, backend, loader, monitor, checkpointer, guard,
                 state: LoopState, periodic=None):
        self.cfg, self.run_dir, self.info = cfg, run_dir, info
        self.task, self.backend, self.loader = task, backend, loader
        self.monitor, self.checkpointer, self.guard, self.state = monitor, checkpointer, guard, state
        self.periodic = periodic  # held-out evaluation and image grids
        t = cfg.train
        self.accum = t.global_batch_size // (t.micro_batch_size * info.world_size)
        if self.accum * t.micro_batch_size * info.world_size != t.global_batch_size:
            raise ConfigError(
                f"train.global_batch_size {t.global_batch_size} is not train.micro_batch_size {t.micro_batch_size} "
                f"x world size {info.world_size} x an integer number of accumulation steps"
            )
        self._iter = None
        self._iter_empty, self._empty_epochs = True, 0
        self._fetch = BatchFetcher(getattr(loader, "where", f"data.path {cfg.data.path}"), cfg.data.timeout_s)
        self._boundary: dict | None = None  # data and RNG state where the step in flight started
        self._saved_step = state.step  # the step the newest checkpoint holds (or the start)
        self._keys_file = self._open_key_log() if cfg.logging.record_keys else None

    # --- data ----------------------------------------------------------------------------------
    def _next_batch(self) -> tuple[dict, float]:
        """The next micro-batch, through the bounded wait of data_pipeline/loading/batch_wait.py: a stalled
        loader fails after data.timeout_s, and a stop signal ends the wait (WaitAbandoned), at once
        in a single process; with several ranks, the others may sit in a collective where no
        checkpoint can be agreed, so the wait goes on for STOP_GRACE_S in case the step can end."""
        t0 = time.perf_counter()
        while True:
            if self._iter is None:
                self._iter, self._iter_empty = iter(self.loader), True
            try:
                batch = self._fetch.next(self._iter, stop=self._leave_waits)
                self._iter_empty, self._empty_epochs = False, 0
                break
            except StopIteration:  # epoch boundary: the loader starts the next epoch
                self._iter = None
                # one empty epoch is a resume at an epoch's very end; two in a row would spin for ever
                self._empty_epochs += self._iter_empty
                if self._empty_epochs >= 2:
                    raise DataError(f"{self._fetch.where}: two epochs in a row gave rank {self.info.rank} "
                                    f"no batch of {self.cfg.train.micro_batch_size}") from None
        return batch, time.perf_counter() - t0

    def _leave_waits(self) -> bool:
        if not self.guard.requested:
            return False
        return self.info.world_size == 1 or time.monotonic() - self.guard.first_at > STOP_GRACE_S

    def _autocast(self):
        if self.cfg.dist.mixed_precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.info.device.type, dtype=torch.bfloat16)

    # --- one optimizer step --------------------------------------------------------------------
    def _train_step(self, step: int) -> dict[str, float]:
        backend, task = self.backend, self.task
        lr = lr_at(step, self.cfg.train)
        backend.set_lr(lr)
        backend.aux.set_schedule(lr / max(scaled_lr(self.cfg.train), 1e-30))  # the same warm-up and decay
        sums: dict[str, torch.Tensor] = {}
        data_wait = 0.0
        for micro in range(self.accum):
            batch, wait = self._next_batch()
            data_wait += wait
            if self._keys_file is not None:
                self._keys_file.write(json.dumps({"step": step, "micro": micro, "keys": list(batch["key"])}) + "\n")
            batch = task.prepare_batch(batch, self.info.device)
            last = micro == self.accum - 1
            with backend.accumulate(last):
                with self._autocast():
                    loss, terms = task.compute_loss(backend.model, batch, step)
                    aux = task.aux_losses(step)
                for _, aux_terms in aux.values():
                    terms.update(aux_terms)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v.float()
                if last:  # the sums are complete: the step's non-finite check, once, on the device
                    names = sorted(sums)
                    values = torch.stack([sums[k] for k in names]).double()
                    any_bad_dev = all_reduce_sum((~torch.isfinite(values)).any().double())
                    loss, aux = self._poison_if_nonfinite(any_bad_dev, loss, aux)
                backend.backward(loss, self.accum)
                for name, (aux_loss, _) in aux.items():
                    backend.aux.backward(name, aux_loss, self.accum, last)
        # one all-reduce carries the logged terms and the stop request; one device-to-host copy, the
        # step's only blocking sync, brings them back with the (already global) non-finite flag and
        # the grad norm
        n = len(names)
        stop = torch.full((1,), float(self.guard.requested), dtype=torch.float64, device=self.info.device)
        packed = torch.cat([all_reduce_sum(torch.cat([values, stop])), any_bad_dev.reshape(1)])
        grad_norm = backend.clip_grad_norm(self.cfg.train.grad_clip)  # None: the backend clips in step()
        if grad_norm is not None:
            packed = torch.cat([packed, grad_norm.detach().double().reshape(1)])
        host = packed.tolist()
        scale = self.accum * self.info.world_size
        scalars = {k: host[i] / scale for i, k in enumerate(names)}
        any_stop, any_bad = host[n] > 0, host[n + 1] > 0
        norm = host[n + 2] if grad_norm is not None else None
        if norm is not None and not math.isfinite(norm):
            any_bad = True
        applied = not any_bad and backend.step()  # DeepSpeed may still find inf/nan gradients
        if applied:
            backend.aux.step()
            self.state.nonfinite_in_a_row = 0
        else:
            if any_bad:
                backend.skip_step()
            self.state.nonfinite_total += 1
            self.state.nonfinite_in_a_row += 1
        backend.aux.zero_grad()
        if norm is None:  # known only after the backend's step; read it only when someone looks
            norm = backend.last_grad_norm() if self.monitor.should_log(step) or not applied else float("nan")
        scalars.update(lr=lr, grad_norm=norm, nonfinite_steps=self.state.nonfinite_total)
        self.monitor.add_interval(self.cfg.train.global_batch_size, data_wait)
        self._stop_requested = any_stop
        self._step_was_bad = not applied
        return scalars

    @staticmethod
    def _poison_if_nonfinite(any_bad: torch.Tensor, loss: torch.Tensor, aux: dict) -> tuple[torch.Tensor, dict]:
        """A non-finite term anywhere in this step, on any rank (`any_bad`, summed over ranks; a NaN
        discriminator loss included), makes the last backward's gradients NaN, decided on the device
        without a host sync. Every backend then sees non-finite gradients and skips the step: ours
        by the grad norm, DeepSpeed by its own overflow check, which also keeps its step counters right."""
        poison = torch.where(any_bad > 0, float("nan"), 1.0).to(loss.dtype)
        return loss * poison, {name: (a * poison, t) for name, (a, t) in aux.items()}

    # --- the run -------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        t, st = self.cfg.train, self.state
        self._stop_requested = False
        started, before = time.perf_counter(), st.train_seconds
        while st.step < t.max_steps:
            step = st.step + 1
            if self.info.world_size == 1:  # what a checkpoint of the last step holds, should this one be cut
                self._boundary = {"data_state": self._data_state(), "rng": rng_state()}
            try:
                scalars = self._train_step(step)
            except (WaitAbandoned, DataError) as e:
                return self._leave_mid_step(e)
            st.step, st.samples_seen = step, st.samples_seen + t.global_batch_size
            st.train_seconds = before + time.perf_counter() - started
            if self._step_was_bad:
                self._on_nonfinite(step, scalars)
            if self.monitor.should_log(step):
                self.monitor.log(step, st.samples_seen, {**scalars, "train_seconds": st.train_seconds})
            self.monitor.advance(step)
            evaluated = self.periodic is not None and self.periodic.maybe_run(step, self.backend.model)
            # a signal during the evaluation or the checkpoint write: all ranks agree at once
            stop = self._stop_requested or (evaluated and self._stop_agreed())
            periodic = self.cfg.checkpoint.every_steps > 0 and step % self.cfg.checkpoint.every_steps == 0
            time_boxed = step == t.stop_at_step
            if periodic or stop or time_boxed:
                self._save()
                stop = stop or self._stop_agreed()
            if stop or time_boxed:
                return TrainResult(step=step, stopped="signal" if stop else "stop_at_step", signal=self.guard.received)
        if self.cfg.checkpoint.every_steps <= 0 or st.step % self.cfg.checkpoint.every_steps:
            self._save()
        return TrainResult(step=st.step)

    def _save(self, boundary: dict | None = None) -> None:
        path = self.checkpointer.save(self.state, self.loader, boundary=boundary)
        self._saved_step = self.state.step
        self.monitor.log_event(self.state.step, {"event": "checkpoint_saved", "path": str(path),
                                                 "seconds": self.checkpointer.last_save_s})

    # --- stopping ------------------------------------------------------------------------------
    def _stop_agreed(self) -> bool:
        """Whether any rank has a stop signal (one all-reduce; only after evaluations and saves)."""
        flag = torch.tensor([float(self.guard.requested)], dtype=torch.float64, device=self.info.device)
        return all_reduce_sum(flag).item() > 0

    def _data_state(self):
        return self.loader.state_dict() if hasattr(self.loader, "state_dict") else None

    def _leave_mid_step(self, error: Exception) -> TrainResult:
        """A data wait ended without a batch: a stop signal, a stalled loader, bad data. The step in
        flight is dropped (its gradients are never applied) and, in a single process, the last
        completed step is checkpointed as it stood when it ended, data and RNG state included, so
        that a resume replays the dropped step exactly. With several ranks nothing is saved: the
        other ranks may wait in a collective, so no checkpoint can be agreed."""
        st, saved = self.state, None
        self._drop_unfinished_keys()
        if self.info.world_size == 1 and st.step > self._saved_step:
            self._save(boundary=self._boundary)
            saved = self.checkpointer.dirs.latest()
        if isinstance(error, WaitAbandoned):
            kept = st.step == self._saved_step and self.checkpointer.dirs.latest() is not None
            return TrainResult(step=st.step, stopped="signal", signal=self.guard.received, saved=kept)
        if saved is not None:
            raise type(error)(f"{error} (steps up to {st.step} are saved: {saved})") from error
        raise error

    def _open_key_log(self):
        """This rank's key log (logging.record_keys), holding only the steps this run starts from: a run
        killed after its last checkpoint redoes the later steps and records them again, as metrics.jsonl
        does. Rank 0 also trims the logs of ranks this run does not have (a resume at a smaller world
        size). Line-buffered, so that a kill loses no record of a step a checkpoint holds."""
        logs = [self.run_dir / f"keys_rank{self.info.rank}.jsonl"]
        if self.info.is_main:
            logs += [p for p in self.run_dir.glob("keys_rank*.jsonl")
                     if int(p.stem.removeprefix("keys_rank")) >= self.info.world_size]
        for path in logs:
            truncate_after(path, self.state.step)
        return logs[0].open("a", buffering=1)

    def _drop_unfinished_keys(self) -> None:
        """The key log keeps only steps that happened: a resume records the dropped step again."""
        if self._keys_file is None:
            return
        self._keys_file.close()
        path = Path(self._keys_file.name)
        truncate_after(path, self.state.step)
        self._keys_file = path.open("a", buffering=1)

    def _on_nonfinite(self, step: int, scalars: dict) -> None:
        st, limit = self.state, self.cfg.train.max_nonfinite_steps
        msg = (f"non-finite loss or gradient at step {step} (loss={scalars.get('loss')}, "
               f"grad_norm={scalars.get('grad_norm')}): step skipped "
               f"({st.nonfinite_in_a_row} in a row, {st.nonfinite_total} in total)")
        self.monitor.log_event(step, {"event": "nonfinite_step_skipped", "message": msg})
        if self.info.is_main:
            log.warning(msg)
        if st.nonfinite_in_a_row >= limit:
            latest = self.checkpointer.dirs.latest()
            raise NonFiniteLossError(
                f"{st.nonfinite_in_a_row} non-finite steps in a row (limit train.max_nonfinite_steps={limit}), "
                f"last at step {step}; the last good checkpoint is kept: {latest}"
            )

    def close(self) -> None:
        self._fetch.close()
        self.loader.close()  # every rank is past its last batch (a collective save or an error ended the run)
        if self.periodic is not None and hasattr(self.periodic, "close"):
            self.periodic.close()
        if self._keys_file is not None:
            self._keys_file.close()

