"""What a submitit job runs: one training task (one rank) of a run, requeued on timeout or preemption.

The signal contract with the trainer: the trainer's handlers only set a flag; at the next step
boundary all ranks agree, write a checkpoint, and then call the handler that was installed before
theirs. Under submitit that is submitit's own: on USR2 (timeout / preemption) rank 0 calls
`checkpoint()` below, which returns the same job on the same run dir, runs `scontrol requeue` and
exits; on SIGTERM (`scontrol requeue`, `scancel`, a preemption by SLURM itself) it only logs, and
SLURM requeues (or cancels) the job by itself. Either way the requeued job calls the trainer on the
same run dir, and the trainer resumes from its latest checkpoint.
"""
from __future__ import annotations

import copy
import importlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import submitit

log = logging.getLogger(__name__)

DEFAULT_TRAIN_FN = "hieratok.train.entry:train"


@dataclass
class TaskOutcome:
    """What each task of a finished job returns to `job.results()`."""
    rank: int
    step: int
    run_dir: str
    requeues: int


def resolve_callable(path: str):
    """'package.module:function' -> the function, with an error that names what is missing."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"train function '{path}' must look like 'package.module:function'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module '{module_name}' has no '{attr}' (from train function '{path}')") from None


class TrainingJob(submitit.helpers.Checkpointable):
    """`train(load_config(raw=config), run_dir)` on every task of the job.

    `config` is the resolved run config as a plain mapping: it travels in submitit's pickle, never
    through a shell, so values with spaces or shell metacharacters arrive unchanged.
    """

    def __init__(self, config: dict, run_dir: str, max_requeues: int = 3,
                 train_fn: str = DEFAULT_TRAIN_FN, requeues: int = 0):
        self.config = config
        self.run_dir = str(run_dir)
        self.max_requeues = max_requeues
        self.train_fn = train_fn
        self.requeues = requeues

    def __call__(self) -> TaskOutcome:
        from cluster.slurm_env import torch_env_for_submitit_job
        from hieratok.config.loader import load_config
        from hieratok.logs import configure as configure_logging

        configure_logging("train")  # the trainer's diagnostics in the task's stderr log, as under the CLI
        os.environ.update(torch_env_for_submitit_job())
        _one_thread_pool_per_cpu()
        train = resolve_callable(self.train_fn)
        cfg = load_config(raw=copy.deepcopy(self.config))
        result = train(cfg, Path(self.run_dir))
        rank = int(os.environ["RANK"])
        if result.preempted:
            # The checkpoint is written and the job is being requeued (by submitit on rank 0, or
            # by SLURM). Leave without a result file, or submitit's client would take this
            # interrupted run's result for the final one.
            log.info("rank %d: preempted at step %d, checkpoint saved; leaving for the requeue", rank, result.step)
            raise SystemExit(1)
        return TaskOutcome(rank=rank, step=result.step, run_dir=self.run_dir, requeues=self.requeues)

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission | None:
        """Called by submitit on rank 0 once the trainer's checkpoint is on disk: the same job on the
        same run dir, counted, or None (no requeue) once `max_requeues` is spent."""
        if self.requeues >= self.max_requeues:
            log.warning("not requeuing: %d requeues already (max_requeues=%d)", self.requeues, self.max_requeues)
            return None
        again = copy.copy(self)
        again.requeues = self.requeues + 1
        return submitit.helpers.DelayedSubmission(again, *args, **kwargs)


def _one_thread_pool_per_cpu() -> None:
    """As torchrun does: each task's intra-op threads fit the CPUs SLURM gave it (default 1), since
    tasks that each spin up a thread per core of the node slow each other down many times over."""
    import torch

    threads = int(os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("OMP_NUM_THREADS") or 1)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
