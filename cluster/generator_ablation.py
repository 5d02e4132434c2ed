"""`hieratok ablate` on a generator ablation file: the tiny generator trained at a constant learning
rate on each arm's latent cache (encoded with the arm's trained tokenizer from a tokenizer ablation),
with the same budget and data order, as Ray Tune trials; then loss curves and the steps each arm needs
to reach a fixed loss (hieratok/eval/convergence.py).

    name: cpu_generator
    task: generator
    tokenizers: ../../runs/ablations/cpu     # a tokenizer ablation's --out (relative to this file)
    tokenizer_seeds: [0, 1]                  # whose exports encode the caches: each arm's seeds 0 and 1
    config: ../generator/tiny.yaml           # the generator every arm trains
    arms: [single-scale, hieratok]           # tokenizer arms (default: all of the tokenizer ablation)
    seeds: [0, 1]
    overrides: [train.max_steps=1500, train.min_lr_ratio=1.0]
    target_loss: null                        # null: the highest final loss over all runs
    runs: {cpus_per_worker: 1, max_concurrent: 2}
    quick: {arms: [single-scale, hieratok], seeds: [0], overrides: [train.max_steps=20]}  # first tokenizer seed

    OUT/caches/ARM/tokT/        each arm's latent cache (its train split, with flips) by its seed-T tokenizer
    OUT/runs/ARM/tokT/seedS/    one generator run each: tokenizer seed T, generator seed S
    OUT/results.json, report.md, loss_curves.png
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from cluster.ablation import run_dir_of
from cluster.ablation_spec import RUN_OVERRIDES, RunsSpec, pick_arms
from cluster.spec_file import read_spec_file
from cluster.sweep_trial import train_in_process
from hieratok.config.errors import ConfigError
from hieratok.config.loader import load_config, resolve_preset_path
from hieratok.metrics_file import train_seconds

DONE = "done.json"


@dataclass
class GeneratorQuickSpec:
    arms: list = field(default_factory=list)
    seeds: list = field(default_factory=lambda: [0])
    overrides: list = field(default_factory=lambda: ["train.max_steps=20", "train.warmup_steps=2"])


@dataclass
class GeneratorAblationSpec:
    tokenizers: str
    config: str
    name: str = "generator_ablation"
    task: str = "generator"
    # more than one: a tokenizer's seed moves the generator's convergence as much as the arm does
    tokenizer_seeds: list = field(default_factory=lambda: [0])
    arms: list = field(default_factory=list)
    seeds: list = field(default_factory=lambda: [0])
    overrides: list = field(default_factory=list)
    target_loss: float | None = None
    smoothing_window: int = 10
    runs: RunsSpec = field(default_factory=RunsSpec)
    quick: GeneratorQuickSpec = field(default_factory=GeneratorQuickSpec)
    train_fn: str = "hieratok.train.entry:train"

    def export_of(self, arm: str, tokenizer_seed: int) -> Path:
        return run_dir_of(Path(self.tokenizers), arm, tokenizer_seed) / "export"

    def run_labels(self) -> list[tuple[str, str]]:
        """Every (arm, "tokT/seedS"), tokenizer seed T and generator seed S; a run's folder under OUT/runs/ARM."""
        return [(arm, f"tok{t}/seed{s}") for arm in self.arms for t in self.tokenizer_seeds for s in self.seeds]

    def run_config(self, arm: str, tokenizer_seed: int, seed: int, cache: str):
        """The generator config of one run: the latent's shape taken from the arm's tokenizer."""
        from hieratok.tokenizer.model import read_export_model_fields

        m = read_export_model_fields(self.export_of(arm, tokenizer_seed))
        grid = m["image_size"] // m["patch_size"]
        multi = m.get("latent") == "all" and len(m["scales"]) > 1
        scales = f"[{','.join(map(str, m['scales']))}]" if multi else "null"
        latent = [f"model.latent_channels={m['latent_channels']}", f"model.latent_grid={grid}",
                  f"model.latent_scales={scales}", f"data.path={cache}", "data.format=latent"]
        return load_config(self.config, [*self.overrides, *latent, f"train.seed={seed}", *RUN_OVERRIDES])

    def narrowed(self, quick: bool, seeds: list[int] | None, arms: list[str] | None) -> "GeneratorAblationSpec":
        spec = dataclasses.replace(self)
        if quick:
            spec.arms = list(self.quick.arms or self.arms[:2])
            spec.seeds = list(self.quick.seeds)
            spec.tokenizer_seeds = list(self.tokenizer_seeds[:1])
            spec.overrides = [*self.overrides, *self.quick.overrides]
        if seeds is not None:
            spec.seeds = list(seeds)
        if arms is not None:
            spec.arms = pick_arms(arms, self.arms, self.name)
        return spec


def is_generator_ablation(path: Path) -> bool:
    """A `task: generator` file; a file that does not parse is left to the tokenizer ablation's reader,
    which names the problem."""
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception:  # noqa: BLE001 - YAML's parser errors have no common public base
        return False
    return isinstance(raw, dict) and raw.get("task") == "generator"


def load_generator_ablation(path: str | Path) -> GeneratorAblationSpec:
    path = Path(path)
    raw = read_spec_file(path, "generator ablation", GeneratorAblationSpec, ("tokenizers", "config"))
    beside = path.parent / raw["config"]
    raw["config"] = str(beside.resolve() if beside.exists() else resolve_preset_path(raw["config"]))
    if "://" not in raw["tokenizers"]:
        raw["tokenizers"] = str((path.parent / raw["tokenizers"]).resolve())
    for key, kind in (("runs", RunsSpec), ("quick", GeneratorQuickSpec)):
        try:
            raw[key] = kind(**raw.get(key, {}))
        except TypeError as e:
            raise ConfigError(f"generator ablation file {path}: '{key}': {e}") from None
    spec = GeneratorAblationSpec(**raw)
    if not spec.tokenizer_seeds or not all(isinstance(t, int) for t in spec.tokenizer_seeds):
        raise ConfigError(f"generator ablation file {path}: tokenizer_seeds must be a non-empty list of seeds "
                          f"(the tokenizer ablation's), got {spec.tokenizer_seeds!r}")
    results = Path(spec.tokenizers) / "results.json"
    if not results.exists():
        raise ConfigError(f"generator ablation file {path}: tokenizers={spec.tokenizers} holds no results.json; "
                          f"run the tokenizer ablation first (hieratok ablate --config ... --out {spec.tokenizers})")
    spec.arms = list(spec.arms or json.loads(results.read_text())["arms"])
    return spec


def _encode_caches(spec: GeneratorAblationSpec, out: Path) -> dict[str, dict[int, str]]:
    """{ARM: {T: cache}}: each arm's train split encoded by its seed-T tokenizer, once."""
    from hieratok.generator.latent_cache import encode_dataset

    data = json.loads((Path(spec.tokenizers) / "results.json").read_text())["protocol"]["data"]
    caches = {arm: {} for arm in spec.arms}
    for arm in spec.arms:
        for t in spec.tokenizer_seeds:
            export = spec.export_of(arm, t)
            if not (export / "model.safetensors").exists():
                raise ConfigError(f"arm {arm!r} has no trained tokenizer at {export} (tokenizer seed {t})")
            cache = out / "caches" / arm / f"tok{t}"
            if not (cache / "latent_stats.json").exists():
                encode_dataset(str(export), data, str(cache), flip=True, split="train", num_workers=0)
            caches[arm][t] = str(cache)
    return caches


def train_one(params: dict, spec: GeneratorAblationSpec, out: str, caches: dict) -> None:
    """The Tune function of one (arm, "tokT/seedS"): train (or resume) unless it finished."""
    import torch

    arm, run = params["run"]["arm"], params["run"]["seed"]
    tok, seed = map(int, re.fullmatch(r"tok(\d+)/seed(\d+)", run).groups())  # run_labels' form
    run_dir = run_dir_of(Path(out), arm, run)
    if (run_dir / DONE).exists():
        return
    torch.set_num_threads(max(1, int(spec.runs.cpus_per_worker)))
    run_dir.mkdir(parents=True, exist_ok=True)
    config = spec.run_config(arm, tok, seed, caches[arm][tok])
    train_in_process(spec.train_fn, OmegaConf.to_container(config, resolve=True), str(run_dir))
    (run_dir / DONE).write_text(json.dumps({"train_seconds": train_seconds(run_dir)}))


def run_generator_ablation(spec: GeneratorAblationSpec, out: str | Path, *, quick: bool = False,
                           seeds: list[int] | None = None, arms: list[str] | None = None,
                           address: str | None = None):
    from ray import tune

    from cluster.ablation import AblationOutcome, run_grid
    from hieratok.eval.convergence import convergence_table, read_curve, write_convergence_report

    spec = spec.narrowed(quick, seeds, arms)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    caches = _encode_caches(spec, out)
    trainable = tune.with_parameters(train_one, spec=spec, out=str(out), caches=caches)
    resources = {"cpu": spec.runs.cpus_per_worker, "gpu": spec.runs.gpus_per_worker}
    runs = spec.run_labels()
    failed = run_grid(trainable, resources, runs, spec.runs.max_concurrent, out, "generator-ablation", address)
    curves = {arm: {} for arm in spec.arms}
    for arm, run in runs:
        run_dir = run_dir_of(out, arm, run)
        curves[arm][run] = read_curve(run_dir) if (run_dir / DONE).exists() else []
    table = convergence_table(curves, spec.arms[0], spec.smoothing_window, spec.target_loss)
    protocol = {"tokenizers": spec.tokenizers, "tokenizer_seeds": spec.tokenizer_seeds,
                "generator_config": spec.config,
                "overrides": spec.overrides, "seeds": spec.seeds, "quick": quick, "caches": caches,
                "loss": "flow-matching MSE on per-channel normalised latents (comparable across latent spaces)",
                "data_order": "identical for every arm of a seed: the loader's order depends on data and train.seed only"}
    results, report = write_convergence_report(out, curves, table, protocol)
    return AblationOutcome(results, report, failed)
