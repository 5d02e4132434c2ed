"""Finding pretrained weights files (Inception for FID, VGG16 and the LPIPS heads) without a network.

Every network we do not train comes from a local file: the path the user gives, else the torch hub
cache ($TORCH_HOME/hub/checkpoints), else (for files a pip package ships) that package's copy. When
none is there the error names the file, where it comes from, where to put it and the option that
points at it: this machine never downloads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from hieratok.config.errors import UserError


class WeightsError(UserError, ValueError):
    """A weights file that is not what it should be (another network, another shape, another format)."""


@dataclass(frozen=True)
class WeightsFile:
    what: str                 # "Inception weights", for the messages
    file: str                 # its name in the hub cache
    source: str               # where it comes from, said in the messages
    option: str               # the config key / flag that points at it
    bundled: Callable[[], Path | None] | None = None  # a copy a pip package ships, if any


def hub_checkpoints_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(spec: WeightsFile, path: str | Path | None) -> Path:
    """The weights file: `path` if given (it must exist), else the hub cache, else the bundled copy."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"{spec.what} not found: {p} ({spec.option}). It is {spec.source}")
        return p
    p = hub_checkpoints_dir() / spec.file
    if p.is_file():
        return p
    bundled = spec.bundled() if spec.bundled is not None else None
    if bundled is not None:
        return bundled
    raise FileNotFoundError(
        f"{spec.what} not found: expected {p}. This machine does not download them. Offline, copy "
        f"{spec.file} ({spec.source}) into {p.parent} (the torch hub cache: $TORCH_HOME/hub/checkpoints), "
        f"or set {spec.option}"
    )
