"""`save_pretrained` / `from_pretrained` for any of our models: safetensors weights + config.json.

config.json is flat, as the Hugging Face Hub's mixins write it: the format tag, every model field at
the top level, then what the export records besides (weights, step, latent statistics, ...). Format
version 1 nested the model fields under "model"; such exports still load.

Both files are written to temporary names and renamed, so a crash never leaves a half export.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from hieratok.nn.weights_files import WeightsError

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def save_state_dict(state: dict[str, torch.Tensor], config: dict, directory: str | Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    tmp_w, tmp_c = directory / f".{WEIGHTS_NAME}.tmp", directory / f".{CONFIG_NAME}.tmp"
    save_file(tensors, str(tmp_w), metadata={"format": str(config.get("format", ""))})
    tmp_c.write_text(json.dumps(config, indent=2, sort_keys=True))
    os.replace(tmp_w, directory / WEIGHTS_NAME)
    os.replace(tmp_c, directory / CONFIG_NAME)
    return directory


def update_config(directory: str | Path, **records) -> dict:
    """Add or replace top-level records of an export's config.json (atomically); returns the new config."""
    path = Path(directory) / CONFIG_NAME
    config = {**json.loads(path.read_text()), **records}
    tmp = path.with_name(f".{CONFIG_NAME}.tmp")
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True))
    os.replace(tmp, path)
    return config


def save_pretrained(model: torch.nn.Module, directory: str | Path, config: dict) -> Path:
    return save_state_dict(model.state_dict(), config, directory)


def export_config(export_format: str, model_cfg, extra: dict | None = None) -> dict:
    """The flat config.json of `model_cfg` (a dataclass) plus `extra`, whose keys must not shadow a field."""
    fields = dataclasses.asdict(model_cfg)
    extra = dict(extra or {})
    clash = sorted((set(fields) | {"format"}) & set(extra))
    if clash:
        raise ValueError(f"export records {clash} would overwrite the model fields of the same name")
    return {"format": export_format, **fields, **extra}


def _family_and_version(export_format) -> tuple[str, int]:
    family, _, version = str(export_format).rpartition("/")
    return family, int(version) if version.isdigit() else -1


def model_fields(config: dict, config_class) -> dict:
    """The model's fields of a config.json: flat (format version 2) or under "model" (version 1)."""
    if _family_and_version(config.get("format"))[1] == 1:
        return config["model"]
    names = {f.name for f in dataclasses.fields(config_class)}
    return {k: v for k, v in config.items() if k in names}


def resolve_export_dir(path: str | Path) -> Path:
    """A run dir (its export/), an export dir itself, or a Hugging Face Hub repo id (owner/name)."""
    from hieratok.nn.hub import download, looks_like_repo_id

    if looks_like_repo_id(path):
        return download(str(path))
    p = Path(path)
    if (p / "export" / CONFIG_NAME).exists():
        return p / "export"
    if (p / CONFIG_NAME).exists():
        return p
    raise FileNotFoundError(
        f"no model export at {p}: expected {p}/export/{CONFIG_NAME} or {p}/{CONFIG_NAME} "
        f"(write one from a run's latest checkpoint with `hieratok export --run-dir {p}`)"
    )


def load_pretrained(cls, directory: str | Path, expected_format: str, map_location="cpu"):
    """`directory`: an export folder, a run dir (its export/) or a Hub repo id."""
    directory = resolve_export_dir(directory)
    cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.exists():
            raise FileNotFoundError(
                f"{p} not found: an export folder holds {WEIGHTS_NAME} and {CONFIG_NAME} "
                f"(write one with `hieratok export --run-dir RUN_DIR`)"
            )
    config = json.loads(cfg_path.read_text())
    family, version = _family_and_version(config.get("format"))
    newest = _family_and_version(expected_format)
    if family != newest[0] or not 1 <= version <= newest[1]:
        raise WeightsError(f"{cfg_path} has format {config.get('format')!r}; this hieratok reads "
                           f"{newest[0]}/1 to {expected_format}")
    model = cls(model_fields(config, cls.config_class))
    try:
        model.load_state_dict(load_file(str(w_path)), strict=True)
    except RuntimeError as e:  # missing / unexpected keys or another shape: the first lines name them
        detail = " ".join(" ".join(str(e).splitlines()[:3]).split())[:400]
        raise WeightsError(f"{w_path} does not fit the model its {CONFIG_NAME} describes: {detail}") from None
    model.export_config = config  # what the export records besides the model (weights, step, latent_stats, ...)
    # load_state_dict copies into the parameters where they are (the CPU): the model itself must move
    return model.to(map_location).eval()
