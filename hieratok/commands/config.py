"""`hieratok config show PRESET [key=value ...]` and `hieratok config list`: what a preset holds, and which exist.

`show` prints the resolved run config with every default filled in from the typed schema and the
type of each value as a trailing comment (`lr: 0.0001  # float`); the output is plain YAML, so it
reloads to the same values (and `hieratok train --config` takes it as it is). `list` prints the
presets under the repository's `configs/` folder, each with the first comment line of its file.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="config_command", metavar="{show,list}", required=True)
    show = sub.add_parser(
        "show", help="print a preset's resolved config: every key, its value (defaults filled in) and its type",
        description="Print a preset's resolved config as YAML: every key, with the schema default where the "
                    "preset leaves it unset, and the type of each value as a trailing comment.")
    show.add_argument("preset", help="a YAML path, or a preset name under configs/, e.g. tokenizer/hieratok_s_b16 "
                                     "(see `hieratok config list`)")
    show.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. train.lr=3e-4")
    sub.add_parser("list", help="list the presets under configs/ with their one-line descriptions",
                   description="List the presets under the repository's configs/ folder with their one-line "
                               "descriptions (the first comment line of each file).")


def run(args) -> int:
    text = _show(args.preset, args.overrides) if args.config_command == "show" else _list()
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `hieratok config show ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


# ---- show -------------------------------------------------------------------------------------------


def _show(preset: str, overrides: list[str]) -> str:
    from omegaconf import OmegaConf

    from hieratok.config.errors import ConfigError
    from hieratok.config.loader import load_config, preset_sources
    from hieratok.config.schema import schema_for_task

    try:
        cfg = load_config(preset, overrides)
    except ConfigError as e:
        raise _spec_hint(preset) or e from None
    sources = [_display_path(p) for p in preset_sources(preset)]
    if overrides:
        sources.append("the command line (" + " ".join(overrides) + ")")
    origin = f"{preset}: {' < '.join(sources)}".replace("\r", "\\r").replace("\n", "\\n")  # one comment line
    header = f"# {origin}\n# every key of the schema, defaults filled in; `# type` after each value\n"
    return header + render_with_types(OmegaConf.to_container(cfg, resolve=True), schema_for_task(cfg.task))


def render_with_types(data: dict, schema: type) -> str:
    """YAML of a config's values with each leaf's schema type as a trailing comment.

    Sections (fields typed with a dataclass) are block mappings; every other value is one line in
    flow style, so `yaml.safe_load` of the result gives `data` back."""
    lines: list[str] = []
    _render(data, schema, 0, lines)
    return "".join(lines)


def _render(data: dict, schema: Any, indent: int, lines: list[str]) -> None:
    hints = typing.get_type_hints(schema) if dataclasses.is_dataclass(schema) else {}
    pad = "  " * indent
    for key, value in data.items():
        tp = hints.get(key, Any)
        section = _dataclass_of(tp)
        if section is not None and isinstance(value, dict) and value:
            lines.append(f"{pad}{_flow(key)}:\n")
            _render(value, section, indent + 1, lines)
        else:
            lines.append(f"{pad}{_flow(key)}: {_flow(value)}  # {type_name(tp)}\n")


def _dataclass_of(tp: Any) -> type | None:
    """The dataclass a field holds (also through `X | None`), or None for a leaf type."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else None
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def _flow(value: Any) -> str:
    """One line of YAML (flow style) that loads back to `value`."""
    import yaml

    text = yaml.safe_dump([value], default_flow_style=True, width=float("inf"), sort_keys=False, allow_unicode=True)
    text = text.strip()[1:-1]  # drop the list brackets around the one item
    if "\n" in text:  # a string with line breaks: JSON's double-quoted form is YAML too, on one line
        text = json.dumps(value)
    return text


def type_name(tp: Any) -> str:
    """How `config show` names a schema type: int, float, str, bool, list of int, str (or null), ..."""
    if tp is Any:
        return "any"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        named = " or ".join(type_name(a) for a in args if a is not type(None))
        return f"{named} (or null)" if type(None) in args else named
    if origin in (list, tuple):
        (arg, *_) = typing.get_args(tp) or (Any,)
        return f"list of {type_name(arg)}"
    if origin is dict or tp is dict:
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _spec_hint(preset: str):
    """A sweep spec (or the like) names its run config under `config:`; point there instead of at its keys."""
    from hieratok.config.errors import ConfigError
    from hieratok.config.loader import resolve_preset_path

    try:
        path = resolve_preset_path(preset)
        import yaml

        raw = yaml.safe_load(path.read_text())
    except Exception:  # noqa: BLE001 - the loader's own error says what is wrong
        return None
    if not (isinstance(raw, dict) and isinstance(raw.get("config"), str) and "task" not in raw and "model" not in raw):
        return None
    target = _display_path((path.parent / raw["config"]).resolve())
    return ConfigError(f"{_display_path(path)} is not a run config but a spec that builds on the run config "
                       f"{target} (its `config:`); see it with: hieratok config show {target}")


def _display_path(path: Path) -> str:
    """Relative to the working directory when it lies below it, else absolute."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


# ---- list -------------------------------------------------------------------------------------------


def _list() -> str:
    from hieratok.config.errors import ConfigError
    from hieratok.config.loader import CONFIG_ROOT

    if not CONFIG_ROOT.is_dir():
        raise ConfigError(f"no configs/ folder at {CONFIG_ROOT} (the presets ship inside the package: reinstall hieratok)")
    return "".join(f"{line}\n" for line in preset_table(CONFIG_ROOT))


def preset_table(root: Path) -> list[str]:
    """`name  description` for every YAML file under `root` (any depth), sorted by name, descriptions aligned.

    A `.yaml` file is named as `hieratok config show` and `--config` accept it without the suffix."""
    rows = []
    for path in root.rglob("*"):
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        name = path.relative_to(root).as_posix()
        rows.append((name.removesuffix(".yaml"), description(path)))
    rows.sort()
    width = max((len(name) for name, _ in rows), default=0)
    return [f"{name:<{width}}  {desc}".rstrip() for name, desc in rows]


def description(path: Path) -> str:
    """The first comment line of a YAML file (before its first key), without the `#`; '' when it has none."""
    for line in path.read_text(errors="replace").splitlines():
        s = line.strip()
        if not s or s == "---" or s.startswith("%"):
            continue
        if not s.startswith("#"):
            return ""
        text = s.lstrip("#").strip()
        if text:
            return text
    return ""
