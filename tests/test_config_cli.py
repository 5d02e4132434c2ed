"""`hieratok --version`, `hieratok config show` and `hieratok config list`, run as a user runs them."""
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

import hieratok
from hieratok.cli import package_version
from hieratok.commands.config import preset_table
from hieratok.config.loader import load_config, resolve_preset_path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
LEAF = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*): (?P<value>.+?)  # (?P<type>[^#]+)$")
SECTION = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):$")


def hieratok_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "hieratok", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def resolved(preset: str, overrides=()) -> dict:
    return OmegaConf.to_container(load_config(preset, list(overrides)), resolve=True)


def assert_same_typed(a, b, where="") -> None:
    """Equal values of equal types (1 == 1.0 == True in Python; not here)."""
    assert type(a) is type(b), (where, a, b)
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same_typed(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_typed(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)


def leaf_types(text: str) -> dict[str, tuple[str, str]]:
    """dotted key -> (value text, type comment) of every leaf line; fails on a line that is neither."""
    out, stack = {}, []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = LEAF.match(line) or SECTION.match(line)
        assert m, f"neither a section nor a leaf with a type comment: {line!r}"
        depth = len(m["indent"]) // 2
        stack[depth:] = [m["key"]]
        if "type" in m.groupdict():
            out[".".join(stack)] = (m["value"], m["type"].strip())
    return out


def flat_leaves(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flat_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def first_comment_line(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.strip().startswith("#") and line.strip().lstrip("#").strip():
            return line.strip().lstrip("#").strip()
        if line.strip():
            return ""
    return ""


# ---- --version ----------------------------------------------------------------------------------------


def test_version_prints_the_package_version():
    out = hieratok_cli("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"hieratok {importlib.metadata.version('hieratok')}\n"


def test_version_falls_back_to_the_source_tree(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert package_version() == hieratok.__version__
    # the fallback is only right if the source tree's two version strings agree
    assert hieratok.__version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


# ---- config show --------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["tokenizer/hieratok_s_b16", "configs/generator/tiny.yaml"])
def test_show_round_trips_through_yaml_with_types(preset):
    out = hieratok_cli("config", "show", preset)
    assert out.returncode == 0, out.stderr
    expected = resolved(preset)
    assert_same_typed(yaml.safe_load(out.stdout), expected)

    leaves = leaf_types(out.stdout)
    values = flat_leaves(expected)
    assert set(leaves) == set(values)  # every leaf on its own line, with a type comment
    for key, (_, type_text) in leaves.items():
        v = values[key]
        if v is None:
            assert type_text.endswith("(or null)"), (key, type_text)
        elif isinstance(v, list):
            assert type_text.startswith("list of "), (key, type_text)
        else:
            assert type_text.removesuffix(" (or null)") == type(v).__name__, (key, type_text)
    if expected["task"] == "tokenizer":  # every default filled in, with its schema type
        assert "\n  lr: 0.0001  # float\n" in out.stdout
        assert leaves["model.scales"] == ("[1, 2, 4, 8, 16]", "list of int")
        assert leaves["data.cache_dir"] == ("null", "str (or null)")
        assert leaves["model.encoder.width"][1] == "int" and leaves["dist.backend"] == ("fsdp", "str")


def test_show_output_is_a_run_config(tmp_path):
    out = hieratok_cli("config", "show", "tokenizer/tiny_hieratok")
    assert out.returncode == 0, out.stderr
    shown = tmp_path / "shown.yaml"
    shown.write_text(out.stdout)
    assert resolved(str(shown)) == resolved("tokenizer/tiny_hieratok")  # `train --config` takes it as it is


def test_show_applies_overrides():
    overrides = ["train.lr=3e-4", "model.scales=[2,8]", "data.path=a b", "logging.wandb.name='x: y #z'"]
    out = hieratok_cli("config", "show", "tokenizer/tiny_single", *overrides)
    assert out.returncode == 0, out.stderr
    shown = yaml.safe_load(out.stdout)
    assert_same_typed(shown, resolved("tokenizer/tiny_single", overrides))
    assert shown["train"]["lr"] == 3e-4 and shown["model"]["scales"] == [2, 8]
    assert shown["data"]["path"] == "a b" and shown["logging"]["wandb"]["name"] == "x: y #z"
    assert resolved("tokenizer/tiny_single")["train"]["lr"] != 3e-4  # the override did something


@pytest.mark.parametrize("override,key,hint", [
    ("train.lrr=1", "'train.lrr'", "Did you mean 'train.lr'?"),
    ("trian.lr=1", "'trian'", "Did you mean 'train'?"),
])
def test_show_unknown_key_is_one_line_exit_2(override, key, hint):
    out = hieratok_cli("config", "show", "tokenizer/tiny_single", override)
    assert out.returncode == 2
    assert out.stdout == ""
    assert "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("hieratok config: config error: unknown config key ")
    assert key in lines[0] and hint in lines[0]


def test_show_a_sweep_spec_points_at_its_run_config():
    out = hieratok_cli("config", "show", "sweeps/tiny_asha")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.splitlines()) == 1 and "configs/tokenizer/tiny_single.yaml" in out.stderr


# ---- config list --------------------------------------------------------------------------------------


def test_list_names_every_preset_with_its_description():
    out = hieratok_cli("config", "list")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    files = sorted(p for p in CONFIGS.rglob("*") if p.suffix in (".yaml", ".yml"))
    assert len(lines) == len(files) > 0
    names = [line.split()[0] for line in lines]
    assert names == sorted(names)
    by_name = dict(zip(names, lines))
    columns = set()
    for path in files:
        name = path.relative_to(CONFIGS).as_posix().removesuffix(".yaml")
        desc = first_comment_line(path)
        assert name in by_name, name
        assert by_name[name].endswith(desc) and by_name[name].startswith(name + " "), (name, by_name[name])
        assert resolve_preset_path(name) == path.resolve()  # `config show NAME` and `--config NAME` find it
        if desc:
            columns.add(by_name[name].index(desc))
    assert len(columns) == 1  # descriptions aligned


def test_preset_table_covers_any_subfolder(tmp_path):
    (tmp_path / "ablations").mkdir()
    (tmp_path / "ablations" / "scales.yaml").write_text("# Arms: single vs multi-scale.\n# more\narms: []\n")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "x.yml").write_text("\n#\n#   Padded   \nk: 1\n")
    (tmp_path / "bare.yaml").write_text("task: tokenizer  # not a description\n# nor this\n")
    (tmp_path / "notes.txt").write_text("# not a preset\n")
    assert preset_table(tmp_path) == [
        "ablations/scales  Arms: single vs multi-scale.",
        "bare",
        "deep/er/x.yml     Padded",
    ]


# ---- discoverable from train --help -------------------------------------------------------------------


def test_train_help_names_the_config_commands():
    out = hieratok_cli("train", "--help")
    assert out.returncode == 0, out.stderr
    assert "hieratok config list" in out.stdout and "hieratok config show PRESET" in out.stdout
