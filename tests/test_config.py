"""Typed configs: inheritance, overrides, and errors that name the key, the file and the valid keys."""
import pytest
from omegaconf import OmegaConf

from hieratok.config.errors import ConfigError
from hieratok.config.loader import load_config, save_config


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_presets_inherit_and_differ_only_in_scales():
    single = OmegaConf.to_container(load_config("configs/tokenizer/vitok_s_b16.yaml"))
    multi = OmegaConf.to_container(load_config("configs/tokenizer/hieratok_s_b16.yaml"))
    assert single["model"].pop("scales") == [16]
    assert multi["model"].pop("scales") == [1, 2, 4, 8, 16]
    assert single == multi  # "under identical settings": nothing else differs
    assert multi["train"]["lr"] == 1e-4 and multi["dist"]["backend"] == "fsdp"


def test_overrides_win_and_are_typed():
    cfg = load_config("configs/tokenizer/tiny_single.yaml", ["train.lr=0.5", "model.scales=[2,8]", "data.path=a b"])
    assert cfg.train.lr == 0.5 and list(cfg.model.scales) == [2, 8] and cfg.data.path == "a b"


def test_unknown_key_names_key_file_and_valid_keys(tmp_path):
    p = _write(tmp_path, "typo.yaml", "base: " + str(tmp_path / "b.yaml") + "\nmodel:\n  encodr: {width: 3}\n")
    _write(tmp_path, "b.yaml", "task: tokenizer\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "'model.encodr'" in msg and str(p) in msg and "Did you mean 'model.encoder'" in msg
    assert "decoder" in msg and "latent_channels" in msg  # the valid keys at that level


def test_unknown_key_in_a_base_names_the_base(tmp_path):
    base = _write(tmp_path, "base.yaml", "trian: {max_steps: 3}\n")
    child = _write(tmp_path, "child.yaml", "base: base.yaml\n")
    with pytest.raises(ConfigError, match=f"'trian' in {base}.*Did you mean 'train'"):
        load_config(child)


def test_wrong_type_names_expected_type(tmp_path):
    p = _write(tmp_path, "t.yaml", "train: {max_steps: lots}\n")
    with pytest.raises(ConfigError, match=r"'train.max_steps' in .*t.yaml.*expected int, got 'lots'"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"'model.scales\[1\]' in the command line.*expected int"):
        load_config("configs/tokenizer/tiny_single.yaml", ["model.scales=[2,x]"])


def test_override_typo_and_bad_values():
    with pytest.raises(ConfigError, match="'train.lrr' in the command line.*Did you mean 'train.lr'"):
        load_config("configs/tokenizer/tiny_single.yaml", ["train.lrr=1"])
    with pytest.raises(ConfigError, match="dist.backend.*valid values: ddp, fsdp, deepspeed"):
        load_config("configs/tokenizer/tiny_single.yaml", ["dist.backend=horovod"])
    with pytest.raises(ConfigError, match="model.scales"):
        load_config("configs/tokenizer/tiny_single.yaml", ["model.scales=[4,2,8]"])
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config("configs/tokenizer/tiny_single.yaml", ["train.lr"])


def test_inheritance_cycle_and_missing_file(tmp_path):
    _write(tmp_path, "a.yaml", "base: b.yaml\n")
    _write(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config("configs/tokenizer/tiny_hieratok.yaml", ["train.seed=7"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg
