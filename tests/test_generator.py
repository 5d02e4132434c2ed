"""The generator model, the flow-matching objective and latent normalisation."""
import json
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hieratok.config.errors import ConfigError
from hieratok.config.loader import load_config
from hieratok.generator.flow import drop_labels, flow_matching_loss, interpolate, sample_time, velocity_target
from hieratok.generator.model import Generator
from hieratok.generator.normalization import LatentStats

pytestmark = pytest.mark.usefixtures("single_thread")


def _tiny(seed: int = 0, **overrides) -> Generator:
    cfg = load_config("configs/generator/tiny.yaml", [f"model.{k}={v}" for k, v in overrides.items()])
    torch.manual_seed(seed)
    return Generator(cfg.model)


# --- model -----------------------------------------------------------------------------------------
def test_adaln_zero_start_predicts_zero_and_blocks_are_identity():
    model = _tiny()
    x, t, y = torch.randn(3, 64, 8), torch.rand(3), torch.tensor([0, 5, 16])  # 16 = the null class
    assert torch.equal(model(x, t, y), torch.zeros_like(x))
    h = torch.randn(3, 64, 64)
    c = model.condition(t, y)
    assert torch.equal(model.blocks[0](h, c, model.rope(h.device)), h)


def test_output_depends_on_time_label_and_every_token():
    model = _tiny()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, t, y = torch.randn(2, 64, 8), torch.tensor([0.3, 0.3]), torch.tensor([1, 1])
    base = model(x, t, y)
    assert not torch.allclose(base, model(x, t + 0.2, y))
    assert not torch.allclose(base, model(x, t, y + 1))
    x2 = x.clone()
    x2[:, 63] += 1.0  # attention is global: one token moves every output token
    assert (model(x2, t, y) - base)[:, :63].abs().amax(dim=-1).min() > 0


def test_bad_input_shape_names_the_expected_shape():
    with pytest.raises(ValueError, match=r"\[B, 64, 8\].*got \[2, 16, 8\]"):
        _tiny()(torch.zeros(2, 16, 8), torch.zeros(2), torch.zeros(2, dtype=torch.long))


def test_bad_config_names_the_key():
    with pytest.raises(ConfigError, match="model.width"):
        _tiny(width=66, heads=3)


def test_save_and_load_pretrained_exactly(tmp_path):
    model = _tiny()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    model.save_pretrained(tmp_path / "export", extra={"latent_stats": {"mean": [0.0] * 8, "std": [1.0] * 8}})
    loaded = Generator.from_pretrained(tmp_path / "export")
    x, t, y = torch.randn(2, 64, 8), torch.rand(2), torch.tensor([3, 4])
    with torch.no_grad():
        assert torch.equal(model(x, t, y), loaded(x, t, y))
    cfg = json.loads((tmp_path / "export" / "config.json").read_text())
    assert cfg["format"] == "hieratok-generator/2" and cfg["latent_grid"] == 8 and "latent_stats" in cfg


def test_model_info_matches_lightningdit_sizes():
    """DiT / SiT / LightningDiT publish B 130M, L 458M, XL 675M; ours differ only by biases: within 0.5 %."""
    from hieratok.generator.info import generator_info

    out = subprocess.run([sys.executable, "-m", "hieratok", "model-info", "--config",
                          "configs/generator/lightningdit_xl.yaml", "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    sizes = {"lightningdit_xl": json.loads(out.stdout)}
    for preset in ("lightningdit_b", "lightningdit_l", "tiny"):
        sizes[preset] = generator_info(load_config(f"configs/generator/{preset}.yaml").model)
    for preset, published in (("lightningdit_b", 130e6), ("lightningdit_l", 458e6), ("lightningdit_xl", 675e6)):
        assert abs(sizes[preset]["params"]["total"] / published - 1) < 0.005, (preset, sizes[preset])
        assert sizes[preset]["latent_shape"] == [256, 16]
    assert 1e5 < sizes["tiny"]["params"]["total"] < 1e6 and sizes["tiny"]["latent_shape"] == [64, 8]


# --- flow matching ---------------------------------------------------------------------------------
def test_interpolation_endpoints_and_velocity_is_its_time_derivative():
    x0, eps = torch.randn(4, 64, 8, dtype=torch.float64), torch.randn(4, 64, 8, dtype=torch.float64)
    assert torch.equal(interpolate(x0, eps, torch.zeros(4, dtype=torch.float64)), x0)
    assert torch.equal(interpolate(x0, eps, torch.ones(4, dtype=torch.float64)), eps)
    t, h = torch.rand(4, dtype=torch.float64) * 0.8 + 0.1, 1e-6
    finite_diff = (interpolate(x0, eps, t + h) - interpolate(x0, eps, t - h)) / (2 * h)
    torch.testing.assert_close(finite_diff, velocity_target(x0, eps))


def test_logit_normal_times_and_label_dropout():
    g = torch.Generator().manual_seed(0)
    t = sample_time(100_000, mean=0.5, std=1.0, generator=g)
    assert 0 < t.min() and t.max() < 1
    assert abs(t.median().item() - torch.sigmoid(torch.tensor(0.5)).item()) < 0.01
    labels = torch.arange(100_000) % 10
    dropped = drop_labels(labels, 0.1, null_class=10, generator=g)
    assert abs((dropped == 10).float().mean().item() - 0.1) < 0.005
    kept = dropped != 10
    assert torch.equal(dropped[kept], labels[kept])
    assert torch.equal(drop_labels(labels, 0.0, 10), labels)
    u = torch.tensor([0.05, 0.5, 0.09, 0.99])
    assert drop_labels(torch.tensor([1, 2, 3, 4]), 0.1, 10, uniform=u).tolist() == [10, 2, 10, 4]
    with pytest.raises(ValueError, match="label_dropout"):
        drop_labels(labels, 1.5, 10)


def test_tiny_model_overfits_a_handful_of_latents():
    model = _tiny()
    latents = torch.randn(4, 64, 8, generator=torch.Generator().manual_seed(1)).repeat(2, 1, 1)
    labels = torch.arange(4).repeat(2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)

    def loss_at(x0, y, seed):
        g = torch.Generator().manual_seed(seed)
        t, noise = sample_time(len(x0), 0.0, 1.0, generator=g), torch.randn(x0.shape, generator=g)
        return flow_matching_loss(model, x0, y, t, noise)

    def held_out_loss() -> float:  # the same (t, noise) draws every time: a deterministic yardstick
        with torch.no_grad():
            return loss_at(latents.repeat(4, 1, 1), labels.repeat(4), 123)[0].item()

    before = held_out_loss()
    for step in range(160):
        loss, logs = loss_at(latents, labels, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_loss()
    assert set(logs) == {"flow_mse", "t_mean"}
    assert after < 0.85 * before, (before, after)


# --- latent normalisation --------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(channels=st.integers(1, 16), scale=st.floats(1e-2, 1e2), offset=st.floats(-30, 30), seed=st.integers(0, 2**16))
def test_normalisation_round_trips_and_standardises(channels, scale, offset, seed):
    """Sum / sum-of-squares moments lose ~eps (mean/std)^2 relative precision: fine for |mean| / std up to ~1e3."""
    shift = offset * scale
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(6, 32, channels, generator=g, dtype=torch.float64) * scale * torch.rand(channels, generator=g,
         dtype=torch.float64).add(0.1) + shift)
    stats = LatentStats.from_latents(z)
    x = stats.normalize(z)
    torch.testing.assert_close(stats.denormalize(x), z, rtol=1e-9, atol=1e-9 * (abs(shift) + scale))
    flat = x.reshape(-1, channels)
    torch.testing.assert_close(flat.mean(0), torch.zeros(channels, dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(flat.std(0, unbiased=False), torch.ones(channels, dtype=torch.float64), rtol=1e-6, atol=0)
    assert LatentStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats


def test_stats_from_merged_moments_equal_stats_of_the_whole():
    z = torch.randn(10, 16, 4, dtype=torch.float64) * 3 + 1
    parts = [z[:3].reshape(-1, 4), z[3:].reshape(-1, 4)]
    merged = LatentStats.from_moments(sum(p.shape[0] for p in parts), sum(p.sum(0) for p in parts),
                                      sum((p * p).sum(0) for p in parts))
    whole = LatentStats.from_latents(z)
    assert merged.mean == pytest.approx(whole.mean) and merged.std == pytest.approx(whole.std)
    with pytest.raises(ValueError, match="3 channels"):
        whole.normalize(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="positive"):
        LatentStats((0.0,), (0.0,))
