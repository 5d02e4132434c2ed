"""One Tune trial: a real training run (in this process, or a TorchTrainer with N workers) in its
own run dir, whose metrics.jsonl records are reported to Tune as they appear, so ASHA can stop it.

The trainer runs on a helper thread (or as Ray Train workers) and this, the trial's own thread,
follows metrics.jsonl. When ASHA stops the trial, Ray ends the trial's actor, and the training
(its thread, or the Train workers the actor owns) ends with it. A restored sweep reruns unfinished
trials on the same run dirs, so the trainer resumes them from their last checkpoint.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from omegaconf import OmegaConf

from cluster.sweep_spec import SweepSpec
from cluster.training_job import resolve_callable
from hieratok.metrics_file import MetricsTail, is_event

POLL_S = 0.5


def trial_run_dir(spec: SweepSpec, trial_id: str) -> Path:
    return spec.sweep_dir / "runs" / trial_id


def run_trial(params: dict, spec: SweepSpec) -> None:
    """The Tune function: `params` maps dotted config keys to this trial's values."""
    import ray
    from ray import tune

    run_dir = trial_run_dir(spec, tune.get_context().get_trial_id())
    run_dir.mkdir(parents=True, exist_ok=True)
    config = OmegaConf.to_container(spec.trial_config(params), resolve=True)
    training = _TrainingThread(spec, config, run_dir)
    training.start()
    tail = MetricsTail(run_dir / "metrics.jsonl")
    reported_step = -1
    node = ray.get_runtime_context().get_node_id()[:8]  # which Ray node ran it, as `ray list nodes` shows ids
    while True:
        finished = not training.is_alive()  # read before the tail, so no last record is missed
        for record in tail.read_new():
            if is_event(record) or spec.metric not in record or record.get("step", -1) <= reported_step:
                continue  # an event, a record without the watched metric, or a step redone after a resume
            reported_step = record["step"]
            tune.report({**{k: v for k, v in record.items() if isinstance(v, (int, float))}, "node": node})
        if finished:
            break
        time.sleep(POLL_S)
    if training.error is not None:
        raise training.error


class _TrainingThread(threading.Thread):
    def __init__(self, spec: SweepSpec, config: dict, run_dir: Path):
        super().__init__(name="training", daemon=True)
        self.spec, self.config, self.run_dir = spec, config, run_dir
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            if self.spec.workers == 1:
                train_in_process(self.spec.train_fn, self.config, str(self.run_dir))
            else:
                train_with_ray_train(self.spec, self.config, self.run_dir)
        except BaseException as e:  # noqa: BLE001 - handed to the trial's thread, which raises it
            self.error = e


def train_in_process(train_fn: str, config: dict, run_dir: str) -> None:
    from hieratok.config.loader import load_config

    resolve_callable(train_fn)(load_config(raw=config), run_dir)


def _worker_loop(loop_config: dict) -> None:
    """Each Ray Train worker: the process group is set up by TorchTrainer; the trainer joins it."""
    train_in_process(loop_config["train_fn"], loop_config["config"], loop_config["run_dir"])


def train_with_ray_train(spec: SweepSpec, config: dict, run_dir: Path) -> None:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"train_fn": spec.train_fn, "config": config, "run_dir": str(run_dir)},
        torch_config=TorchConfig(backend="nccl" if spec.gpus_per_worker else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=spec.workers, use_gpu=bool(spec.gpus_per_worker),
                                               resources_per_worker={"CPU": spec.cpus_per_worker,
                                                                     "GPU": spec.gpus_per_worker}),
        run_config=ray.train.RunConfig(storage_path=str(run_dir.parent.parent / "ray_train"), name=run_dir.name),
    )
    trainer.fit()
