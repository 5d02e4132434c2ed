"""Tokenizer model properties: scale-causality, single-scale == plain ViT, export round trip, sizes."""
import json
import subprocess
import sys

import pytest
import torch

from hieratok import Tokenizer, scale_causal_mask
from hieratok.config.loader import load_config
from hieratok.nn.attention import build_layout
from hieratok.nn.rope import rope_rotations, sequence_positions
from hieratok.nn.weights_files import WeightsError
from hieratok.tokenizer.config import TokenizerModelConfig


def _tiny(**model_overrides):
    cfg = load_config("configs/tokenizer/tiny_hieratok.yaml", [f"model.{k}={v}" for k, v in model_overrides.items()])
    torch.manual_seed(0)
    return Tokenizer(cfg.model).eval()


def test_mask_semantics():
    m = scale_causal_mask([1, 4, 16])
    assert m.shape == (21, 21) and m.dtype == torch.bool
    assert m[0, 0] and not m[0, 1:].any()  # the coarsest token sees only itself
    assert m[1:5, :5].all() and not m[1:5, 5:].any()  # scale 1 sees scales 0 and 1, its own included
    assert m[5:].all()  # the finest scale sees everything


@pytest.mark.parametrize("downsample,kernel", [("area", "sdpa"), ("conv", "sdpa"), ("area", "split"), ("area", "mask")])
def test_hiera_stack_is_scale_causal(downsample, kernel):
    """Perturbing the tokens of scale k changes no output of scales < k (and does change scale k)."""
    model = _tiny(downsample=downsample, attention=kernel, **{"encoder.hiera_depth": 3, "encoder.depth": 3})
    stack = model.encoder.stack
    scales = stack.scales
    counts = [s * s for s in scales]
    bounds = torch.tensor([0, *counts]).cumsum(0).tolist()
    torch.manual_seed(1)
    seq = torch.randn(2, sum(counts), stack.norm.normalized_shape[0])
    base = stack.run(seq, 0, len(stack.blocks), multi=True)
    for k in range(1, len(scales)):
        pert = seq.clone()
        pert[:, bounds[k]:bounds[k + 1]] += torch.randn_like(pert[:, bounds[k]:bounds[k + 1]])
        out = stack.run(pert, 0, len(stack.blocks), multi=True)
        torch.testing.assert_close(out[:, :bounds[k]], base[:, :bounds[k]], rtol=0, atol=1e-6)
        assert (out[:, bounds[k]:] - base[:, bounds[k]:]).abs().max() > 1e-3


def test_single_scale_hiera_equals_plain_vit():
    hiera = _tiny(scales="[8]", **{"encoder.hiera_depth": 2, "decoder.hiera_depth": 2})
    plain = _tiny(scales="[8]", **{"encoder.hiera_depth": 0, "decoder.hiera_depth": 0})
    assert hiera.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(hiera.state_dict())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    torch.testing.assert_close(hiera(x, sample=False)[0], plain(x, sample=False)[0], rtol=0, atol=0)


@pytest.mark.parametrize("overrides", [{}, {"latent": "all"}, {"position": "learned"}, {"downsample": "conv"}])
def test_save_and_load_pretrained_exactly(tmp_path, overrides):
    model = _tiny(**overrides)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        recon, post = model(x, sample=False)
    model.save_pretrained(tmp_path / "export")
    loaded = Tokenizer.from_pretrained(tmp_path / "export")
    with torch.no_grad():
        recon2, post2 = loaded(x, sample=False)
    assert torch.equal(recon, recon2) and torch.equal(post.mean, post2.mean)
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["format"] == "hieratok-tokenizer/2" and config["scales"] == list(model.config.scales)  # flat


def test_format_1_exports_with_nested_fields_still_load(tmp_path):
    """Exports written before config.json went flat keep loading, to the same weights."""
    model = _tiny()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    fields = {f: config.pop(f) for f in list(config) if f in TokenizerModelConfig.__dataclass_fields__}
    (tmp_path / "config.json").write_text(json.dumps({**config, "format": "hieratok-tokenizer/1", "model": fields}))
    loaded = Tokenizer.from_pretrained(tmp_path)
    assert loaded.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True))
    (tmp_path / "config.json").write_text(json.dumps({**config, "format": "hieratok-tokenizer/3"}))
    with pytest.raises(WeightsError, match="tokenizer/1 to hieratok-tokenizer/2"):
        Tokenizer.from_pretrained(tmp_path)


def test_shapes_and_latent_options():
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    for latent, tokens in (("finest", 64), ("all", 85)):
        model = _tiny(latent=latent)
        z = model.encode(x)
        assert z.shape == (3, tokens, 8) == (3, *model.latent_shape)
        assert model.decode(z).shape == x.shape
    z_sample = model.encode(x, sample=True, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(z_sample, model.encode(x))


def test_grad_checkpointing_matches_gradients():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    grads = []
    for ckpt in (False, True):
        model = _tiny(grad_checkpointing=str(ckpt).lower()).train()
        recon, post = model(x, sample=False)
        (recon.square().mean() + post.kl()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_rope_positions_are_cell_centres():
    pos = sequence_positions([1, 2, 4])
    assert pos[0].tolist() == [1.5, 1.5]  # the single coarsest cell sits at the grid centre
    assert pos[1].tolist() == [0.5, 0.5] and pos[5].tolist() == [0.0, 0.0]
    rot = rope_rotations(pos, 32, 100.0)
    assert rot.shape == (21, 16) and rot.is_complex() and torch.allclose(rot.abs(), torch.ones(()))


def test_rope_is_relative():
    """RoPE scores depend on position differences only: shifting every position changes nothing."""
    from hieratok.nn.rope import apply_rope

    q, k = torch.randn(1, 1, 5, 16), torch.randn(1, 1, 5, 16)
    pos = torch.rand(5, 2) * 8
    scores = []
    for shift in (0.0, 3.25):
        rot = rope_rotations(pos + shift, 16, 100.0)
        scores.append(apply_rope(q, rot) @ apply_rope(k, rot).transpose(-1, -2))
    torch.testing.assert_close(scores[0], scores[1], rtol=1e-4, atol=1e-4)


def test_auto_layout_is_the_dense_mask_up_to_its_limit_then_per_scale_prefix_sdpa_on_a_cpu():
    from hieratok.nn.attention import DENSE_MASK_MAX_TOKENS

    layout = build_layout([1, 4, 16], torch.device("cpu"))
    assert layout.block_mask is None and layout.prefix_ends is None and layout.mask.shape == (21, 21)
    long = [1, DENSE_MASK_MAX_TOKENS]
    layout = build_layout(long, torch.device("cpu"))
    assert layout.mask is None and layout.prefix_ends == (1, DENSE_MASK_MAX_TOKENS + 1)
    assert build_layout([64], torch.device("cpu")) == build_layout([64], torch.device("cpu"), "mask")


@pytest.mark.parametrize("kernel", ["sdpa", "split"])
@pytest.mark.parametrize("counts", [[1, 4, 16, 64], [1, 4], [4, 16, 64]])
def test_exact_kernels_equal_the_dense_mask_forward_and_backward(kernel, counts):
    q, k, v = (torch.randn(2, 3, sum(counts), 16, requires_grad=True) for _ in range(3))
    grad = torch.randn(2, 3, sum(counts), 16)
    results = []
    for name in (kernel, "mask"):
        layout = build_layout(counts, torch.device("cpu"), name)
        assert layout.kernel == name
        layout(q, k, v).backward(grad)
        results.append([layout(q, k, v).detach()] + [t.grad.clone() for t in (q, k, v)])
        q.grad = k.grad = v.grad = None
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("latent", ["finest", "all"])
def test_tokenizer_kernels_agree_and_finest_only_block_is_exact(latent):
    """The prefix kernel, and skipping the coarse outputs of the last hiera block, change nothing."""
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    outs = []
    for kernel in ("sdpa", "split", "mask"):
        model = _tiny(attention=kernel, latent=latent, **{"encoder.hiera_depth": 2, "decoder.hiera_depth": 2})
        with torch.no_grad():
            recon, post = model(x, sample=False)
        outs.append((recon, post.mean))
    for recon, mean in outs[:-1]:
        torch.testing.assert_close(recon, outs[-1][0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mean, outs[-1][1], rtol=1e-5, atol=1e-5)
    stack = model.encoder.stack
    seq = torch.randn(2, 85, 64)
    full = stack.run(seq, 0, len(stack.blocks), multi=True)
    trimmed = stack.run(seq, 0, len(stack.blocks), multi=True, finest_only_last=True)
    torch.testing.assert_close(trimmed, full[:, -64:], rtol=1e-5, atol=1e-6)


VITOK = {"S": 43.3e6, "B": 85.8e6, "L": 383.7e6}


@pytest.mark.parametrize("preset,enc,dec,total", [
    ("hieratok_s_b16", "S", "B", 129.0e6),
    ("vitok_s_b16", "S", "B", 129.0e6),
    ("hieratok_s_l16", "S", "L", None),
])
def test_parameter_counts_match_vitok(preset, enc, dec, total):
    from hieratok.tokenizer.info import tokenizer_info

    info = tokenizer_info(load_config(f"configs/tokenizer/{preset}.yaml").model)
    assert abs(info["params"]["encoder"] / VITOK[enc] - 1) < 0.03
    assert abs(info["params"]["decoder"] / VITOK[dec] - 1) < 0.03
    if total:
        assert abs(info["params"]["total"] / total - 1) < 0.03


def test_model_info_cli_json():
    out = subprocess.run([sys.executable, "-m", "hieratok", "model-info", "--config",
                          "configs/tokenizer/tiny_hieratok.yaml", "--json"], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["tokens_per_scale"] == [1, 4, 16, 64] and info["latent_shape"] == [64, 8]
    assert info["params"]["total"] == info["params"]["encoder"] + info["params"]["decoder"]
    assert 100_000 < info["params"]["total"] < 1_000_000


@pytest.mark.gpu
def test_flex_attention_agrees_with_sdpa_bf16():
    from hieratok.nn.attention import AttentionLayout

    counts = [1, 4, 16, 64, 256]
    q, k, v = (torch.randn(2, 12, sum(counts), 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    flex = build_layout(counts, torch.device("cuda"), "flex")
    sdpa = AttentionLayout(mask=scale_causal_mask(counts).cuda())
    assert flex.block_mask is not None
    torch.testing.assert_close(flex(q, k, v).float(), sdpa(q, k, v).float(), rtol=2e-2, atol=2e-2)
