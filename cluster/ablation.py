"""`hieratok ablate`: arms x seeds as real training runs, each a Ray Tune trial (in parallel where the
resources allow), then every run scored on the same held-out images beside the patch-PCA and
bicubic floors. Run dirs are fixed by (arm, seed), so a killed ablation, run again, resumes each
unfinished run from its last checkpoint and skips what is finished (its scores.json exists).

    OUT/data/                   the prepared shards (when the ablation file says `prepare`)
    OUT/runs/ARM/seedS/         one training run dir each, with scores.json once scored
    OUT/results.json, report.md, psnr.png
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from cluster.ablation_spec import AblationSpec
from cluster.sweep import connect, use_the_clusters_token
from cluster.sweep_trial import train_in_process, train_with_ray_train
from hieratok.metrics_file import train_seconds

SCORES = "scores.json"
EVAL_IMAGES = "eval_images.pt"


@dataclass
class AblationOutcome:
    results: Path
    report: Path
    failed: list[str]


def run_dir_of(out: Path, arm: str, seed: int | str) -> Path:
    """OUT/runs/ARM/seedS; a run labelled by a string instead of a seed ("tok1/seed0") is OUT/runs/ARM/LABEL."""
    return out / "runs" / arm / _run_folder(seed)


def _run_folder(seed: int | str) -> str:
    return seed if isinstance(seed, str) else f"seed{seed}"


def prepare_data(spec: AblationSpec, out: Path) -> str:
    """The shards every run reads: the ablation's own (prepared once, resumably) or the given path."""
    if "path" in spec.data:
        return spec.data["path"]
    from data_pipeline.prepare.options import PrepareOptions
    from data_pipeline.prepare.pipeline import run_prepare

    d = spec.data
    dest = out / "data"
    if not (dest / "manifest.json").exists():
        run_prepare(PrepareOptions(src=d["prepare"], out=str(dest), format=d.get("format", "mds"),
                                   resolution=int(d.get("resolution", 256)), split_val=float(d.get("split_val", 0.1)),
                                   limit=d.get("limit"), workers=int(d.get("workers", 2)), progress=False))
    return str(dest)


def run_one(params: dict, spec: AblationSpec, out: str, data_path: str, weights, reference: str | None) -> None:
    """The Tune function of one (arm, seed): train (or resume), then score; nothing when already scored."""
    from hieratok.eval.ablation_scores import score_tokenizer

    arm, seed = params["run"]["arm"], int(params["run"]["seed"])
    run_dir = run_dir_of(Path(out), arm, seed)
    scores_path = run_dir / SCORES
    if scores_path.exists():
        return
    torch.set_num_threads(max(1, int(spec.runs.cpus_per_worker)))
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "export" / "model.safetensors").exists():
        config = OmegaConf.to_container(spec.run_config(arm, seed, data_path), resolve=True)
        if spec.workers == 1:
            train_in_process(spec.train_fn, config, str(run_dir))
        else:
            train_with_ray_train(spec, config, run_dir)
    images = torch.load(Path(out) / EVAL_IMAGES, weights_only=True)
    scores = score_tokenizer(run_dir / "export", images, list(spec.eval.metrics), weights, reference)
    scores["train_seconds"] = train_seconds(run_dir)  # summed over the trial's resumes, from metrics.jsonl
    tmp = scores_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(scores, indent=1))
    os.replace(tmp, scores_path)  # a scores.json is whole or absent


def _run_trials(spec: AblationSpec, out: Path, data_path: str, weights, reference: str | None,
                address: str | None) -> list[str]:
    """Every (arm, seed) as a Tune trial; returns the names of the runs that failed."""
    from ray import tune

    trainable = tune.with_parameters(run_one, spec=spec, out=str(out), data_path=data_path, weights=weights,
                                     reference=reference)
    resources = ({"cpu": spec.runs.cpus_per_worker, "gpu": spec.runs.gpus_per_worker} if spec.workers == 1
                 else {"cpu": 0.01})  # a multi-worker run only drives its TorchTrainer
    return run_grid(trainable, resources, costliest_first(spec, data_path), spec.runs.max_concurrent, out,
                    "ablation", address)


def costliest_first(spec: AblationSpec, data_path: str) -> list[tuple[str, int]]:
    """Every (arm, seed), the arms with the most training FLOPs an image first, so that the runs that
    end the ablation, perhaps alone on the machine, are the cheapest (ties keep the file's order).
    The models are built on the meta device: no memory, well under a second an arm."""
    from hieratok import Tokenizer
    from hieratok.eval.ablation_scores import training_flops_per_image

    def flops(arm: str) -> int:
        model_cfg = spec.run_config(arm, spec.seeds[0], data_path).model
        with torch.device("meta"):
            return training_flops_per_image(Tokenizer(model_cfg), model_cfg.image_size)

    cost = {arm: flops(arm) for arm in spec.arms}
    return [(arm, seed) for arm in sorted(spec.arms, key=lambda a: -cost[a]) for seed in spec.seeds]


def run_grid(trainable, resources: dict, runs: list[tuple[str, int | str]], max_concurrent: int, out: Path,
             name: str, address: str | None) -> list[str]:
    """`trainable({"run": {"arm", "seed"}})` for every (arm, seed) of `runs` as Ray Tune trials, started in
    that order, `max_concurrent` at a time, state under OUT/ray; returns "ARM/seedS: error" for each trial
    that failed. A seed may be a run's label instead ("tok1/seed0"), its folder under OUT/runs/ARM."""
    from ray import tune

    connect(address)
    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        # one grid over the runs, not arm x seed: Tune starts a single grid's values in their order
        param_space={"run": tune.grid_search([{"arm": arm, "seed": seed} for arm, seed in runs])},
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=False),
        run_config=tune.RunConfig(name=f"{name}-{int(time.time())}", storage_path=str(out / "ray"), verbose=1,
                                  callbacks=[runs_done_bar(len(runs), name)]),
    )
    grid = tuner.fit()
    return [f"{r.config['run']['arm']}/{_run_folder(r.config['run']['seed'])}: {r.error}"
            for r in grid if r.error is not None]


def runs_done_bar(total: int, name: str, file=None):
    """A Tune callback: a progress bar (hieratok.progress) of the runs finished, failed ones included."""
    from ray.tune import Callback

    class RunsDone(Callback):
        def __init__(self):
            self.bar = None

        def __reduce__(self):  # Tune pickles its run config: a fresh callback there, the bar stays here
            return runs_done_bar, (total, name)

        def setup(self, **info):
            from hieratok.progress import counter

            self.bar = counter(desc=f"{name} runs", total=total, unit="run", file=file)

        def _tick(self) -> None:
            if self.bar is not None:
                self.bar.update(1)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._tick()

        def on_trial_error(self, iteration, trials, trial, **info):
            self._tick()

        def on_experiment_end(self, trials, **info):
            if self.bar is not None:
                self.bar.close()

    return RunsDone()


def run_ablation(spec: AblationSpec, out: str | Path, *, quick: bool = False, seeds: list[int] | None = None,
                 arms: list[str] | None = None, address: str | None = None, inception: str | None = None,
                 vgg: str | None = None) -> AblationOutcome:
    """`inception` / `vgg`: real scoring weights (default: the torch hub cache, else test-made, labelled)."""
    from hieratok.eval.ablation_report import write_results
    from hieratok.eval.ablation_scores import reference_stats
    from hieratok.eval.baselines import floors
    from hieratok.eval.scoring_weights import scoring_weights
    from hieratok.eval.shard_data import first_images

    if address:
        use_the_clusters_token()
    spec = spec.narrowed(quick, seeds, arms)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_path = prepare_data(spec, out)
    reference_cfg = spec.run_config(spec.reference_arm, spec.seeds[0], data_path)
    resolution = int(reference_cfg.data.resolution)
    images, _ = first_images(data_path, spec.eval.num_images, "val", resolution)
    torch.save(images, out / EVAL_IMAGES)
    weights = scoring_weights(out / "weights", images, inception, vgg)
    reference = None
    if "rfid" in spec.eval.metrics:
        reference = str(reference_stats(images, weights, out / "reference_stats.npz"))
    failed = _run_trials(spec, out, data_path, weights, reference, address)

    model_cfg = reference_cfg.model
    fit = first_images(data_path, spec.eval.fit_images, "train", resolution)[0]
    latent_values = (model_cfg.image_size // model_cfg.patch_size) ** 2 * model_cfg.latent_channels
    baselines = floors(fit, images, patch=model_cfg.patch_size, latent_values=latent_values)
    runs = {arm: {seed: _read_scores(run_dir_of(out, arm, seed)) for seed in spec.seeds} for arm in spec.arms}
    protocol = {
        "base_config": spec.config, "arms": spec.arms, "seeds": spec.seeds, "overrides": spec.overrides,
        "quick": quick, "data": data_path, "resolution": resolution, "eval_split": "val",
        "eval_images": len(images), "eval_order": "the first N images of the split, centre crop, no flip",
        "baseline_fit_images": len(fit), "scoring_weights": weights.note,
        "data_order": "identical for every arm of a seed: the loader's order depends on data and train.seed only",
        "mechanism": "PSNR change when every multi-scale block reads zeros from the coarse tokens' "
                     "(or registers') keys and values, at inference",
        "rfid_reference": "Inception statistics of the same held-out images (uint8), computed once for all runs",
        "flops": "torch.utils.flop_counter, forward + backward of one image (matmuls, convolutions, attention)",
    }
    results, report = write_results(out, runs, baselines, protocol, reference=spec.reference_arm)
    return AblationOutcome(results, report, failed)


def _read_scores(run_dir: Path) -> dict | None:
    path = run_dir / SCORES
    return json.loads(path.read_text()) if path.exists() else None
