"""The run directory contract: config.yaml, metrics.jsonl, checkpoints/, export/, wandb/."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from hieratok.config.errors import ConfigError
from hieratok.config.loader import load_config, save_config

CONFIG_NAME = "config.yaml"


def config_for_run(run_dir: Path, config_path: str | None, overrides: list[str]):
    """The config to run with: the given preset + overrides, or the run dir's own config.yaml.

    Resuming with a different `model` section is refused (the checkpoint could not load).
    """
    saved = run_dir / CONFIG_NAME
    if config_path is None:
        if not saved.exists():
            raise ConfigError(f"no --config given and {saved} does not exist")
        return load_config(saved, overrides)
    cfg = load_config(config_path, overrides)
    if saved.exists() and (run_dir / "checkpoints" / "latest").exists():
        old = load_config(saved)
        if OmegaConf.to_container(old.model) != OmegaConf.to_container(cfg.model):
            a, b = OmegaConf.to_container(old.model), OmegaConf.to_container(cfg.model)
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            raise ConfigError(
                f"{run_dir} holds a checkpoint of a different model (model.{', model.'.join(diff)} differ); "
                f"use a new --run-dir, or resume with the saved config: hieratok train --run-dir {run_dir}"
            )
    return cfg


def write_config(run_dir: Path, cfg) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / CONFIG_NAME)
