"""LPIPS-VGG equals the reference `lpips` package loaded with the same weights; frozen; autocast-safe."""
import pytest
import torch

from hieratok.eval.weights_for_tests import make_test_lpips_heads, make_test_vgg16_weights
from hieratok.tokenizer.lpips import LIN_FILE, LPIPS, VGG16_FILE

import lpips as lpips_ref  # in .[dev]: a broken install fails here, it does not skip


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lpips_weights")
    return make_test_vgg16_weights(d / "vgg16-test-made.pth"), make_test_lpips_heads(d / "lpips-heads-test-made.pth")


@pytest.fixture(scope="module")
def reference(weight_files):
    """The `lpips` package's LPIPS(net='vgg', v0.1) with our trunk file (loaded by hand: it only downloads)."""
    ref = lpips_ref.LPIPS(net="vgg", version="0.1", pretrained=True, model_path=str(weight_files[1]),
                          pnet_rand=True, verbose=False)
    vgg = torch.load(weight_files[0], map_location="cpu")
    trunk = {}
    for name in ref.net.state_dict():  # net.slice{k}.{i}.weight keeps vgg16.features' index i
        i, p = name.split(".")[1:]
        trunk[name] = vgg[f"features.{i}.{p}"]
    ref.net.load_state_dict(trunk)
    return ref.eval()


def _images(n=3, size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    return x, (x + 0.3 * torch.randn(n, 3, size, size, generator=g)).clamp(-1, 1)


@pytest.mark.parametrize("heads", ["test_made", "lpips_package_v0.1"])
def test_matches_the_lpips_package(weight_files, reference, heads):
    import os

    vgg_path, lin_path = weight_files
    if heads == "lpips_package_v0.1":  # the real trained heads ship inside the lpips wheel
        lin_path = os.path.join(os.path.dirname(lpips_ref.__file__), "weights", "v0.1", "vgg.pth")
    ours = LPIPS.from_files(vgg_path, lin_path)
    ref = reference
    ref.load_state_dict(torch.load(lin_path, map_location="cpu"), strict=False)  # as lpips loads its heads
    x, y = _images()
    with torch.no_grad():
        expected = ref(x, y).flatten()
        got = ours(x, y)
    assert got.shape == (3,) and (got > 0).all()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        assert ours(x, x).abs().max() < 1e-6


def test_frozen_eval_mode_and_gradients_reach_the_inputs(weight_files):
    model = LPIPS.from_files(*weight_files)
    model.train()  # a parent module's .train() must not switch it out of eval mode
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x, y = _images(n=2, size=32)
    x.requires_grad_(True)
    model(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bf16_autocast_on_cpu_is_close_to_fp32(weight_files):
    model = LPIPS.from_files(*weight_files)
    x, y = _images(n=2, size=32, seed=1)
    with torch.no_grad():
        full = model(x, y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(x, y)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    torch.testing.assert_close(half, full, rtol=5e-2, atol=1e-3)


@pytest.mark.gpu
def test_bf16_autocast_on_cuda(weight_files):
    model = LPIPS.from_files(*weight_files).cuda()
    x, y = (t.cuda() for t in _images(n=2, size=64, seed=2))
    with torch.no_grad():
        full = model(x, y)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            half = model(x, y)
    assert torch.isfinite(half).all()
    torch.testing.assert_close(half, full, rtol=5e-2, atol=1e-3)


def test_missing_weights_name_the_file_and_how_to_get_it(monkeypatch, tmp_path, weight_files):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(FileNotFoundError) as e:
        LPIPS.from_files(None, weight_files[1])
    assert VGG16_FILE in str(e.value) and "hub" in str(e.value) and "vgg_weights" in str(e.value)
    with pytest.raises(FileNotFoundError, match="linear-head weights not found: .*missing.pth"):
        LPIPS.from_files(weight_files[0], tmp_path / "missing.pth")
    monkeypatch.setattr("hieratok.tokenizer.lpips._lpips_package_heads", lambda: None)
    with pytest.raises(FileNotFoundError) as e:
        LPIPS.from_files(weight_files[0], None)
    assert LIN_FILE in str(e.value) and "weights/v0.1/vgg.pth" in str(e.value)


def test_wrong_files_are_reported(tmp_path, weight_files):
    bogus = tmp_path / "bogus.pth"
    torch.save({"something": torch.zeros(1)}, bogus)
    with pytest.raises(ValueError, match="not a torchvision VGG16 state dict"):
        LPIPS.from_files(bogus, weight_files[1])
    with pytest.raises(ValueError, match="not an LPIPS v0.1 VGG head file"):
        LPIPS.from_files(weight_files[0], bogus)
