"""Run a sweep with Ray Tune and ASHA: on a local Ray, or joining a Ray cluster (`address`);
a new sweep, or an interrupted one continued with `Tuner.restore` (`resume`)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cluster.sweep_report import trial_rows, write_best_config, write_table
from cluster.sweep_spec import SweepSpec, param_space
from cluster.sweep_trial import run_trial
from hieratok.config.errors import ConfigError

LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2  # trials pass configs and metrics, not tensors
DRIVER_CPUS = 0.01  # a trial that drives a TorchTrainer only waits; Tune needs a non-empty request


class SweepInterrupted(RuntimeError):
    pass


@dataclass
class SweepOutcome:
    sweep_dir: Path
    rows: list[dict]
    csv: Path
    markdown: Path
    best_config: Path | None


def connect(address: str | None) -> None:
    """Join the Ray cluster at `address`, or start a local Ray of our own."""
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address)
    else:
        # "local": a Ray of our own, even when another one runs on this machine (ray.init() would join it)
        ray.init(address="local", include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES)


def clusters_token_env() -> dict[str, str]:
    """Ray (2.5x+) starts clusters with token authentication and keeps the token in
    ~/.ray/auth_token, but a driver (or a node) joining with an address only sends it when
    RAY_AUTH_MODE=token, read when ray is first imported: that variable, where it is needed."""
    token_there = (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                   or (Path.home() / ".ray" / "auth_token").exists())
    return {"RAY_AUTH_MODE": "token"} if token_there and "RAY_AUTH_MODE" not in os.environ else {}


def use_the_clusters_token() -> None:
    os.environ.update(clusters_token_env())


def _trainable(spec: SweepSpec):
    from ray import tune

    trainable = tune.with_parameters(run_trial, spec=spec)
    if spec.workers == 1:
        return tune.with_resources(trainable, {"cpu": spec.cpus_per_worker, "gpu": spec.gpus_per_worker})
    # the trial only drives a TorchTrainer, whose workers ask for their own CPUs / GPUs
    return tune.with_resources(trainable, {"cpu": DRIVER_CPUS})


def _new_tuner(spec: SweepSpec, trainable):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    max_steps = spec.max_steps()
    if spec.asha.grace_period >= max_steps:
        raise ConfigError(f"asha.grace_period ({spec.asha.grace_period}) must be below train.max_steps ({max_steps})")
    scheduler = ASHAScheduler(time_attr="step", max_t=max_steps, grace_period=spec.asha.grace_period,
                              reduction_factor=spec.asha.reduction_factor)
    return tune.Tuner(
        trainable,
        param_space=param_space(spec),
        tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, scheduler=scheduler,
                                    num_samples=spec.num_samples, reuse_actors=False,
                                    search_alg=BasicVariantGenerator(random_state=spec.seed,
                                                                     max_concurrent=spec.max_concurrent_trials)),
        run_config=tune.RunConfig(name=spec.name, storage_path=str(spec.sweep_dir.parent), verbose=1),
    )


def _all_trials_done(sweep_dir: Path) -> bool:
    """From the experiment state Tune saved last: an interrupted sweep saves its trials as PENDING."""
    from ray.tune import ExperimentAnalysis

    return all(t.status in ("TERMINATED", "ERROR") for t in ExperimentAnalysis(str(sweep_dir)).trials)


def run_sweep(spec: SweepSpec, address: str | None = None, resume: bool = False) -> SweepOutcome:
    if address:
        use_the_clusters_token()
    from ray import tune

    sweep_dir = spec.sweep_dir
    exists = tune.Tuner.can_restore(str(sweep_dir))
    if resume and not exists:
        raise ConfigError(f"--resume: no sweep to continue in {sweep_dir}")
    if not resume and exists:
        raise ConfigError(f"{sweep_dir} already holds sweep '{spec.name}': pass --resume to continue it, "
                          "or give the sweep another name")
    trainable = _trainable(spec)
    if resume:
        connect(address)
        tuner = tune.Tuner.restore(str(sweep_dir), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = _new_tuner(spec, trainable)  # checks the ASHA settings before Ray starts
        connect(address)
    results = tuner.fit()
    if not _all_trials_done(sweep_dir):  # Ctrl-C: Tune saved its state and stopped
        raise SweepInterrupted(f"sweep '{spec.name}' interrupted; its state is in {sweep_dir}: continue it with --resume")
    rows = trial_rows(results, spec)
    csv_path, md_path = write_table(rows, sweep_dir)
    return SweepOutcome(sweep_dir, rows, csv_path, md_path, write_best_config(rows, spec, sweep_dir))
