"""A sweep file (YAML): which training config, which keys to search and how, what ASHA watches.

    name: tiny_lr                       # the sweep's folder under `storage`
    config: configs/tokenizer/tiny_single.yaml
    overrides: [train.max_steps=60]     # fixed for every trial
    space:                              # any config keys
      train.lr: {loguniform: [1.0e-4, 1.0e-2]}
      train.warmup_steps: {choice: [0, 10]}
      model.scales: {grid: [[8], [1, 2, 4, 8]]}
      loss.kl.weight: {uniform: [0.0, 1.0e-3]}
    num_samples: 2                      # random draws (per grid point)
    metric: loss                        # a key of the run's metrics.jsonl
    mode: min
    asha: {grace_period: 10, reduction_factor: 2}   # in training steps; max_t is train.max_steps
    workers: 1                          # 1: one process per trial; N: a TorchTrainer with N workers
    cpus_per_worker: 1
    gpus_per_worker: 0
    max_concurrent_trials: 2
    storage: runs/sweeps
    seed: 0                             # of the random draws
    train_fn: hieratok.train.entry:train   # the training function (advanced)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cluster.spec_file import read_spec_file
from hieratok.config.errors import ConfigError
from hieratok.config.loader import load_config, parse_overrides, resolve_preset_path

DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform")
# Ray stops a trial by ending its actor, and the trainer's signal handlers need the main thread,
# which a trial does not run on: trials rely on the trainer's periodic checkpoints instead.
TRIAL_OVERRIDES = ["checkpoint.on_signal=false"]


@dataclass
class AshaSpec:
    grace_period: int = 10
    reduction_factor: int = 2


@dataclass
class SweepSpec:
    config: str
    space: dict
    name: str = "sweep"
    overrides: list = field(default_factory=list)
    num_samples: int = 1
    metric: str = "loss"
    mode: str = "min"
    asha: AshaSpec = field(default_factory=AshaSpec)
    workers: int = 1
    cpus_per_worker: float = 1
    gpus_per_worker: float = 0
    max_concurrent_trials: int = 2
    storage: str = "runs/sweeps"
    seed: int = 0
    train_fn: str = "hieratok.train.entry:train"

    @property
    def sweep_dir(self) -> Path:
        return Path(self.storage) / self.name

    def trial_config(self, params: dict, for_trial: bool = True):
        """The typed run config of one trial (for_trial=False: as a user would train it afterwards)."""
        extra = TRIAL_OVERRIDES if for_trial else []
        return load_config(self.config, [*self.overrides, *extra], raw=nest(params))

    def max_steps(self) -> int:
        return int(self.trial_config({}).train.max_steps)


def nest(flat: dict) -> dict:
    """{'train.lr': 1e-3} -> {'train': {'lr': 1e-3}}"""
    out: dict = {}
    for dotted, value in flat.items():
        node = out
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _check_distribution(key: str, dist: object, source: str) -> None:
    if not isinstance(dist, dict) or len(dist) != 1 or next(iter(dist)) not in DISTRIBUTIONS:
        raise ConfigError(f"{source}: space.{key} must be one of {{grid: [...]}}, {{choice: [...]}}, "
                          f"{{uniform: [low, high]}}, {{loguniform: [low, high]}}; got {dist!r}")
    kind, args = next(iter(dist.items()))
    if not isinstance(args, list) or not args:
        raise ConfigError(f"{source}: space.{key}.{kind} needs a non-empty list, got {args!r}")
    if kind in ("uniform", "loguniform"):
        if len(args) != 2 or not all(isinstance(a, (int, float)) for a in args) or not args[0] < args[1]:
            raise ConfigError(f"{source}: space.{key}.{kind} needs [low, high] numbers with low < high, got {args!r}")
        if kind == "loguniform" and args[0] <= 0:
            raise ConfigError(f"{source}: space.{key}.loguniform needs low > 0, got {args!r}")


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file; every swept key is checked against the training config's schema."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"sweep file not found: {path}")
    raw = read_spec_file(path, "sweep", SweepSpec, ("config", "space"))
    if not isinstance(raw["space"], dict) or not raw["space"]:
        raise ConfigError(f"sweep file {path}: 'space' must map config keys to distributions")
    raw["config"] = str(_config_path(raw["config"], path))
    # trials run with their own working directory: every path they use is absolute
    raw["storage"] = str(Path(raw.get("storage", SweepSpec.storage)).resolve())
    raw["asha"] = AshaSpec(**raw.get("asha", {}))
    spec = SweepSpec(**raw)
    if spec.mode not in ("min", "max"):
        raise ConfigError(f"sweep file {path}: mode must be 'min' or 'max', got '{spec.mode}'")
    if spec.workers < 1 or spec.num_samples < 1 or spec.max_concurrent_trials < 1:
        raise ConfigError(f"sweep file {path}: workers, num_samples and max_concurrent_trials must be at least 1")
    for key, dist in spec.space.items():
        _check_distribution(key, dist, str(path))
    fixed = set(_flatten(parse_overrides(spec.overrides)))
    clash = sorted(fixed & set(spec.space))
    if clash:
        raise ConfigError(f"sweep file {path}: {clash} both fixed in 'overrides' and swept in 'space'")
    spec.trial_config({k: _example(d) for k, d in spec.space.items()})  # unknown or mistyped keys fail here
    spec.overrides = [*spec.overrides, *_absolute_paths(spec)]
    return spec


def _absolute_paths(spec: SweepSpec) -> list[str]:
    """Trials run in Ray workers with their own working directory: pin relative local paths of the
    config to the directory the sweep was started from."""
    cfg = spec.trial_config({})
    pinned = []
    for key, value in (("data.path", cfg.data.path), ("train.init_from", cfg.train.init_from)):
        if value and key not in spec.space and "://" not in value and not Path(value).is_absolute():
            pinned.append(f"{key}={Path(value).resolve()}")
    return pinned


def _config_path(config: str, sweep_file: Path) -> Path:
    beside = sweep_file.parent / config
    return beside.resolve() if beside.exists() else resolve_preset_path(config)


def _flatten(d: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in d.items():
        keys.extend(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"])
    return keys


def _example(dist: dict):
    kind, args = next(iter(dist.items()))
    return args[0]


def param_space(spec: SweepSpec) -> dict:
    """Tune's search space, keyed by dotted config keys."""
    from ray import tune

    make = {"grid": tune.grid_search, "choice": tune.choice,
            "uniform": lambda a: tune.uniform(*a), "loguniform": lambda a: tune.loguniform(*a)}
    return {key: make[kind](args) for key, dist in spec.space.items() for kind, args in dist.items()}
