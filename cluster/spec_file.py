"""Reading a sweep or an ablation file: valid YAML, a mapping, known keys, the required ones there."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from omegaconf import OmegaConf

from hieratok.config.errors import ConfigError


def read_spec_file(path: Path, kind: str, spec_class, required: tuple[str, ...]) -> dict:
    """The file's mapping; every problem is a ConfigError that names the file and the key."""
    try:
        raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except Exception as e:  # noqa: BLE001 - YAML's parser errors have no common public base
        raise ConfigError(f"{kind} file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{kind} file {path} must hold a mapping")
    valid = {f.name for f in dataclasses.fields(spec_class)}
    unknown = sorted(set(raw) - valid)
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {kind} file {path}; valid keys: {', '.join(sorted(valid))}")
    for key in required:
        if key not in raw:
            raise ConfigError(f"{kind} file {path} needs '{key}'")
    return raw
