"""An ablation file (YAML): arms (each a list of overrides of one base config) x seeds, trained with
the same data order and budget, then scored on the same held-out images.

    name: cpu
    config: ../tokenizer/cpu64_single.yaml      # the base every arm starts from
    data: {prepare: embedded, resolution: 64, split_val: 0.1}   # or {path: DIR_OR_S3_URL}
    arms:                                       # name -> overrides of the base; the first is the reference
      single-scale: []
      hieratok: [model.scales=[1,2,4,8,16]]
    seeds: [0, 1, 2]
    overrides: []                               # for every run
    eval: {num_images: 400, metrics: [psnr, ssim, lpips, rfid], fit_images: 3000}
    runs: {workers: 1, cpus_per_worker: 1, gpus_per_worker: 0, max_concurrent: 2}
    quick: {arms: [single-scale, hieratok], seeds: [0], overrides: [train.max_steps=20], num_images: 32}
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from cluster.spec_file import read_spec_file
from hieratok.config.errors import ConfigError
from hieratok.config.loader import load_config, resolve_preset_path

# arms run on Ray workers, off the main thread, where the trainer cannot install signal handlers
RUN_OVERRIDES = ["checkpoint.on_signal=false", "logging.progress=false"]


@dataclass
class EvalSpec:
    num_images: int = 400
    metrics: list = field(default_factory=lambda: ["psnr", "ssim", "lpips", "rfid"])
    fit_images: int = 3000  # training images the patch-PCA floor is fitted on


@dataclass
class RunsSpec:
    workers: int = 1  # N > 1: each run a TorchTrainer with N workers
    cpus_per_worker: float = 1
    gpus_per_worker: float = 0
    max_concurrent: int = 2


@dataclass
class QuickSpec:
    arms: list = field(default_factory=list)  # empty: the first two arms
    seeds: list = field(default_factory=lambda: [0])
    overrides: list = field(default_factory=lambda: ["train.max_steps=10", "train.warmup_steps=2"])
    num_images: int = 32
    fit_images: int = 256


@dataclass
class AblationSpec:
    config: str
    arms: dict
    data: dict
    name: str = "ablation"
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    overrides: list = field(default_factory=list)
    eval: EvalSpec = field(default_factory=EvalSpec)
    runs: RunsSpec = field(default_factory=RunsSpec)
    quick: QuickSpec = field(default_factory=QuickSpec)
    train_fn: str = "hieratok.train.entry:train"

    # what cluster.sweep_trial's runners read
    @property
    def workers(self) -> int:
        return self.runs.workers

    @property
    def cpus_per_worker(self) -> float:
        return self.runs.cpus_per_worker

    @property
    def gpus_per_worker(self) -> float:
        return self.runs.gpus_per_worker

    @property
    def reference_arm(self) -> str:
        return next(iter(self.arms))

    def run_config(self, arm: str, seed: int, data_path: str | None = None, extra: list | None = None):
        """The typed run config of one (arm, seed)."""
        overrides = [*self.overrides, *self.arms[arm], *(extra or []), f"train.seed={seed}", *RUN_OVERRIDES]
        if data_path is not None:
            overrides.append(f"data.path={data_path}")
        return load_config(self.config, overrides)

    def narrowed(self, quick: bool, seeds: list[int] | None = None, arms: list[str] | None = None) -> "AblationSpec":
        """The arms, seeds, overrides and image counts this invocation runs."""
        spec = dataclasses.replace(self)
        names, after_arm = list(self.arms), []
        if quick:
            names = self.quick.arms or names[:2]
            after_arm = list(self.quick.overrides)  # after each arm's own: a few steps even where an arm sets max_steps
            spec.seeds = list(self.quick.seeds)
            spec.eval = dataclasses.replace(self.eval, num_images=self.quick.num_images,
                                            fit_images=self.quick.fit_images)
        if seeds is not None:
            spec.seeds = list(seeds)
        if arms is not None:
            names = pick_arms(arms, self.arms, self.name)
        spec.arms = {n: [*self.arms[n], *after_arm] for n in names}
        return spec


def pick_arms(requested: list[str], known, ablation: str) -> list[str]:
    """`--arms`: the requested arms, each one of the ablation's (`known`), else a ConfigError naming them."""
    unknown = [a for a in requested if a not in known]
    if unknown:
        raise ConfigError(f"--arms {unknown}: not arms of ablation '{ablation}' ({', '.join(known)})")
    return list(requested)


def load_ablation(path: str | Path) -> AblationSpec:
    """Read and check an ablation file; every arm's config is loaded, so a bad key fails here."""
    path = Path(path)
    if not path.exists():
        path = resolve_preset_path(str(path))
    raw = read_spec_file(path, "ablation", AblationSpec, ("config", "arms", "data"))
    if not isinstance(raw["arms"], dict) or not raw["arms"]:
        raise ConfigError(f"ablation file {path}: 'arms' must map arm names to lists of overrides")
    data = raw["data"]
    if not isinstance(data, dict) or ("path" in data) == ("prepare" in data):
        raise ConfigError(f"ablation file {path}: 'data' needs exactly one of 'path' (prepared shards) or "
                          f"'prepare' (a source for hieratok prepare, e.g. embedded)")
    beside = path.parent / raw["config"]
    raw["config"] = str(beside.resolve() if beside.exists() else resolve_preset_path(raw["config"]))
    for key, kind in (("eval", EvalSpec), ("runs", RunsSpec), ("quick", QuickSpec)):
        try:
            raw[key] = kind(**raw.get(key, {}))
        except TypeError as e:
            raise ConfigError(f"ablation file {path}: '{key}': {e}") from None
    raw["arms"] = {str(k): list(v or []) for k, v in raw["arms"].items()}
    spec = AblationSpec(**raw)
    missing = [a for a in spec.quick.arms if a not in spec.arms]
    if missing:
        raise ConfigError(f"ablation file {path}: quick.arms {missing} are not arms ({', '.join(spec.arms)})")
    if "path" in data and "://" not in data["path"]:
        data["path"] = str(Path(data["path"]).resolve())  # runs happen in Ray workers' own folders
    for arm in spec.arms:
        spec.run_config(arm, spec.seeds[0] if spec.seeds else 0)  # unknown or mistyped keys fail here
    return spec
