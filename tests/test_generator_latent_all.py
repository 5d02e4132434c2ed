"""The literal reading (`latent: all`): the tokenizer's whole multi-scale sequence is the latent, the
cache stores it, and the generator trains and samples on it with cell-centre RoPE and a scale embedding."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hieratok.config.errors import ConfigError
from hieratok.config.loader import load_config
from hieratok.generator.model import Generator
from hieratok.nn.rope import rope_rotations, sequence_positions
from hieratok.tokenizer.model import Tokenizer


def _hieratok(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hieratok", *map(str, args)], capture_output=True, text=True,
                          timeout=900)


def test_the_capacity_matched_presets_match_the_baselines_latent_size():
    for preset, baseline in (("tiny_hieratok_all", "tiny_single"), ("hieratok_s_b16_all", "vitok_s_b16")):
        m, b = (load_config(f"configs/tokenizer/{p}.yaml").model for p in (preset, baseline))
        values = sum(s * s for s in m.scales) * m.latent_channels
        assert m.latent == "all" and abs(values - b.scales[-1] ** 2 * b.latent_channels) <= 4, (preset, values)
    tok = Tokenizer(load_config("configs/tokenizer/tiny_hieratok_all.yaml").model)
    gen = Generator(load_config("configs/generator/tiny_all.yaml").model)
    assert tok.latent_shape == gen.latent_shape == (85, 6)


def test_tokens_sit_at_their_cells_centres_and_carry_their_scale():
    torch.manual_seed(0)
    gen = Generator(load_config("configs/generator/tiny_all.yaml").model)
    pos = sequence_positions([1, 2, 4, 8])
    assert pos[0].tolist() == [3.5, 3.5]  # the one coarsest token: the centre of the 8 x 8 grid
    assert pos[1].tolist() == [1.5, 1.5] and pos[-1].tolist() == [7.0, 7.0]
    head_dim = gen.config.width // gen.config.heads
    torch.testing.assert_close(gen.rope(torch.device("cpu")), rope_rotations(pos, head_dim, gen.config.rope_theta))
    # the scale embedding reaches the output: with it zeroed the velocity changes, and it learns
    for m in gen.modules():  # adaLN-zero starts with every block and the output shut: open them
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, std=0.05)
    x, t, y = torch.randn(2, 85, 6), torch.rand(2), torch.tensor([0, 1])
    out = gen(x, t, y)
    out.square().mean().backward()
    assert gen.scale_embed.grad is not None and gen.scale_embed.grad.abs().sum() > 0
    with torch.no_grad():
        gen.scale_embed.zero_()
    assert not torch.allclose(gen(x, t, y), out)


def test_latent_scales_must_end_at_the_grid():
    with pytest.raises(ConfigError, match="model.latent_scales"):
        Generator(load_config("configs/generator/tiny_all.yaml", ["model.latent_scales=[1,2,4]"]).model)


def test_encode_train_sample_on_the_multi_scale_latent(tmp_path, embedded_mds):
    torch.manual_seed(0)
    export = tmp_path / "tokenizer"
    Tokenizer(load_config("configs/tokenizer/tiny_hieratok_all.yaml").model).save_pretrained(export)
    cache, run = tmp_path / "latents", tmp_path / "run"
    out = _hieratok("encode", "--tokenizer", export, "--data", embedded_mds, "--out", cache, "--workers", "0")
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["latent_shape"] == [85, 6]

    # the single-grid generator refuses this cache, naming both shapes
    wrong = _hieratok("train", "--config", "configs/generator/tiny.yaml", "--run-dir", tmp_path / "wrong",
                      f"data.path={cache}", "train.max_steps=2")
    assert wrong.returncode != 0 and "[85, 6]" in wrong.stderr and "[64, 8]" in wrong.stderr, wrong.stderr[-2000:]

    out = _hieratok("train", "--config", "configs/generator/tiny_all.yaml", "--run-dir", run, f"data.path={cache}",
                    "train.max_steps=60", "logging.progress=false")
    assert out.returncode == 0, out.stderr[-3000:]
    logs = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    first, last = np.mean([r["loss"] for r in logs[:2]]), np.mean([r["loss"] for r in logs[-2:]])
    assert last < first, [r["loss"] for r in logs]

    out = _hieratok("sample", "--run-dir", run, "--num", "4", "--cfg-scale", "1.5", "--steps", "4", "--seed", "1", "--out", tmp_path / "s.npz")
    assert out.returncode == 0, out.stderr[-3000:]
    with np.load(tmp_path / "s.npz") as f:
        assert f["arr_0"].shape == (4, 32, 32, 3) and f["arr_0"].dtype == np.uint8
