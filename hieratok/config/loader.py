"""Load a run config: YAML presets with inheritance, `key=value` overrides, strict typed validation.

A preset may name the presets it builds on with a top-level `base:` key (a path, or a list of
paths, relative to the preset's own folder). Bases merge first, in order; the preset's own keys
win. Every file, and the command line, is checked against the schema on its own, so an error
names the file the bad key lives in.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hieratok.config.errors import ConfigError

BASE_KEY = "base"
# the presets ship inside the package (hieratok/presets: a link to the source tree's configs/, copied
# into the wheel), so a preset name resolves from any working directory, installed or not
CONFIG_ROOT = Path(__file__).resolve().parents[1] / "presets"


def resolve_preset_path(path: str | Path) -> Path:
    """A path as given, or else a preset name relative to the presets (`tokenizer/hieratok_s_b16`)."""
    p = Path(path)
    if p.exists():
        return p.resolve()
    for candidate in (CONFIG_ROOT / p, CONFIG_ROOT / f"{p}.yaml"):
        if candidate.exists():
            return candidate.resolve()
    raise ConfigError(f"config file not found: {path} (looked in the working directory and {CONFIG_ROOT})")


def _read_yaml(path: Path) -> dict:
    try:
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except OmegaConfBaseException as e:  # yaml syntax errors surface here too
        raise ConfigError(f"cannot parse config file {path}: {e}") from e
    except Exception as e:  # noqa: BLE001 - yaml.YAMLError and friends
        raise ConfigError(f"cannot parse config file {path}: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def _layers(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[str, dict]]:
    """(source name, raw dict) for a preset and all its bases, bases first."""
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"config inheritance cycle: {chain}")
    raw = _read_yaml(path)
    bases = raw.pop(BASE_KEY, None) or []
    if isinstance(bases, str):
        bases = [bases]
    out: list[tuple[str, dict]] = []
    for b in bases:
        base_path = (path.parent / b).resolve()
        if not base_path.exists():
            raise ConfigError(f"{path}: base preset '{b}' not found (looked for {base_path})")
        out.extend(_layers(base_path, (*seen, path)))
    out.append((str(path), raw))
    return out


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " (or null)"
    if origin in (list, tuple):
        (arg, *_) = typing.get_args(tp) or (Any,)
        return f"list of {_type_name(arg)}"
    if origin is dict:
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _check_keys(raw: dict, schema: type, source: str, prefix: str = "") -> None:
    """Reject keys the schema does not know, naming the key, its source and the valid keys."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    for key, value in raw.items():
        full = f"{prefix}{key}"
        if key not in fields:
            valid = sorted(fields)
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
            level = f"'{prefix[:-1]}'" if prefix else "the top level"
            raise ConfigError(
                f"unknown config key '{full}' in {source}.{hint} Valid keys at {level}: {', '.join(valid)}"
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(
                    f"config key '{full}' in {source} must be a mapping with keys "
                    f"{', '.join(f.name for f in dataclasses.fields(tp))}; got {value!r}"
                )
            _check_keys(value, tp, source, f"{full}.")


def _merge_typed(cfg: DictConfig, raw: dict, schema: type, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, raw)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        field_key, _, index = key.partition("[")
        value = _lookup(raw, field_key)
        expected = _expected_type(schema, field_key) or "another type"
        if index and isinstance(value, list):
            value = value[int(index.rstrip("]"))]
            expected = expected.removeprefix("list of ")
        raise ConfigError(
            f"config key '{key}' in {source} has the wrong type: expected {expected}, "
            f"got {value!r} ({type(value).__name__})"
        ) from None


def _lookup(raw: dict, dotted: str):
    node = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _expected_type(schema: type, dotted: str) -> str | None:
    tp: Any = schema
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(tp):
            return None
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return None
        tp = hints[part]
    return _type_name(tp)


def parse_overrides(overrides: list[str]) -> dict:
    """`a.b=1 c=x y` style overrides into a nested dict; values are parsed as YAML scalars/lists."""
    for o in overrides:
        if "=" not in o or o.startswith("="):
            raise ConfigError(f"override '{o}' is not of the form key=value")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)), resolve=False)
    except OmegaConfBaseException as e:
        raise ConfigError(f"cannot parse overrides {overrides}: {e}") from e


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                raw: dict | None = None) -> DictConfig:
    """The typed, validated run config for a preset file (or a raw dict) plus command-line overrides."""
    from hieratok.config.schema import schema_for_task

    layers: list[tuple[str, dict]] = []
    if path is not None:
        layers.extend(_layers(resolve_preset_path(path)))
    if raw is not None:
        layers.append(("the given mapping", dict(raw)))
    if overrides:
        layers.append(("the command line", parse_overrides(overrides)))

    task = "tokenizer"
    for _, layer in layers:
        task = layer.get("task", task)
    schema = schema_for_task(task)

    cfg = OmegaConf.structured(schema)
    for source, layer in layers:
        _check_keys(layer, schema, source)
        cfg = _merge_typed(cfg, layer, schema, source)
    from hieratok.config.schema import validate

    validate(cfg)
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def save_config(cfg: DictConfig, path: str | Path) -> None:
    """Write the resolved config; a run dir's `config.yaml` reloads with `load_config` unchanged."""
    Path(path).write_text(to_yaml(cfg))


def model_section(path_or_cfg):
    """The `model:` config of a preset or run-config YAML path, of a full run config, or the model
    config itself (what the models' `from_config` accept)."""
    if isinstance(path_or_cfg, (str, Path)):
        return load_config(path_or_cfg).model
    if hasattr(path_or_cfg, "model") and hasattr(path_or_cfg, "task"):
        return path_or_cfg.model
    return path_or_cfg


def preset_sources(path: str | Path) -> list[Path]:
    """The files a preset resolves to, bases first and the preset itself last (later files win)."""
    return [Path(source) for source, _ in _layers(resolve_preset_path(path))]
