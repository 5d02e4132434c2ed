"""The comparison is fair and the mechanism acts: shared weights start equal under one seed, the
scale-causal mask changes the outputs of every shipped multi-scale preset, and a config whose mask
would act nowhere is refused with the reason."""
from pathlib import Path

import pytest
import torch

from hieratok import Tokenizer
from hieratok.config.errors import ConfigError
from hieratok.config.loader import load_config
from hieratok.tokenizer.layout import SCALE_CAUSAL, block_layout, describe

pytestmark = pytest.mark.usefixtures("single_thread")

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs" / "tokenizer").glob("*.yaml"))
MULTI_SCALE = [p for p in PRESETS if len(load_config(str(p)).model.scales) > 1
               and load_config(str(p)).model.scale_attention == "causal"]
# narrow stacks keep this cheap; depth, hiera_depth, scales, latent and image size stay the preset's
NARROW = ["model.encoder.width=32", "model.encoder.heads=2", "model.decoder.width=32", "model.decoder.heads=2"]


def _model(preset, *overrides) -> Tokenizer:
    torch.manual_seed(0)
    return Tokenizer(load_config(str(preset), [*NARROW, *overrides]).model).eval()


def test_every_multi_scale_preset_is_covered():
    names = {p.stem for p in MULTI_SCALE}
    assert {"tiny_hieratok", "hieratok_s_b16", "hieratok_s_l16"} <= names


@pytest.mark.parametrize("preset", MULTI_SCALE, ids=lambda p: p.stem)
def test_scale_causal_mask_changes_encoder_and_decoder_outputs(preset):
    causal = _model(preset)
    full = _model(preset, "model.scale_attention=full")
    full.load_state_dict(causal.state_dict())  # the control has the same parameters
    cfg = causal.config
    assert all(n >= 1 for n in (block_layout(cfg)["encoder"].count(SCALE_CAUSAL),
                                block_layout(cfg)["decoder"].count(SCALE_CAUSAL)))
    # a no-op mask gives bitwise-equal outputs (the same kernels run); weights at init move outputs by ~1e-5
    x = torch.rand(1, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        z_causal, z_full = causal.encode(x), full.encode(x)
        assert (z_causal - z_full).abs().max() > 1e-6, "the mask does not act in the encoder"
        y_causal, y_full = causal.decode(z_causal), full.decode(z_causal)
        assert (y_causal - y_full).abs().max() > 1e-6, "the mask does not act in the decoder"


@pytest.mark.parametrize("stack", ["encoder", "decoder"])
def test_a_mask_that_acts_in_no_block_is_a_config_error(stack):
    with pytest.raises(ConfigError, match=f"model.{stack}.hiera_depth=1 .* act in no {stack} block"):
        load_config("configs/tokenizer/tiny_hieratok.yaml", [f"model.{stack}.hiera_depth=1"])
    # the full-attention control has no mask to act, and latent=all keeps the encoder's last block masked
    load_config("configs/tokenizer/tiny_hieratok.yaml", [f"model.{stack}.hiera_depth=1", "model.scale_attention=full"])
    if stack == "encoder":
        load_config("configs/tokenizer/tiny_hieratok.yaml", ["model.encoder.hiera_depth=1", "model.latent=all"])


def test_block_layout_of_hieratok_s_b16():
    lines = describe(load_config("configs/tokenizer/hieratok_s_b16.yaml").model)
    assert lines["encoder"] == "0-3 grid 16x16; 4 scale-causal over 1,2,4,8,16; 5 finest queries over 1,2,4,8,16"
    assert lines["decoder"] == "0 scale-causal over 1,2,4,8,16; 1 finest queries over 1,2,4,8,16; 2-11 grid 16x16"


@pytest.mark.parametrize("overrides", [[], ["model.position=learned", "model.downsample=conv"]])
def test_arms_share_bitwise_equal_initial_weights_under_one_seed(overrides):
    """Only the parameters that only the multi-scale arm has may differ (the pyramid's)."""
    single = _model("configs/tokenizer/tiny_single.yaml", *overrides).state_dict()
    multi = _model("configs/tokenizer/tiny_hieratok.yaml", *overrides).state_dict()
    shared = set(single) & set(multi)
    assert len(shared) == len(single)
    assert [k for k in sorted(shared) if not torch.equal(single[k], multi[k])] == []
    assert all("pyramid" in k for k in set(multi) - shared)
    registers = _model("configs/tokenizer/tiny_registers.yaml", *overrides).state_dict()
    assert [k for k in sorted(set(single) & set(registers)) if not torch.equal(single[k], registers[k])] == []
    assert sorted(set(registers) - set(single)) == ["decoder.stack.registers", "encoder.stack.registers"]
    assert registers["encoder.stack.registers"].shape[0] == sum(s * s for s in [1, 2, 4])
    torch.manual_seed(1)  # another seed gives other weights
    other = Tokenizer(load_config("configs/tokenizer/tiny_single.yaml", [*NARROW, *overrides]).model).state_dict()
    assert not torch.equal(other["encoder.patch_embed.weight"], single["encoder.patch_embed.weight"])
