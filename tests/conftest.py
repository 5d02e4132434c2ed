import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def tiny_model_cfg():
    from hieratok.config.loader import load_config

    return load_config("configs/tokenizer/tiny_hieratok.yaml").model


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (runs on a lent GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


# --- evaluation (FID) fixtures: two small, clearly different image folders and an Inception weights
# file made for tests (random init, BatchNorm calibrated on these images; see hieratok.eval.weights_for_tests)
def _fid_test_images(kind: str, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "noise":
        return (torch.rand(n, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    freq, phase = torch.rand(n, 3, 1, 1, generator=g) * 8 + 1, torch.rand(n, 3, 1, 1, generator=g) * 6
    return ((torch.sin(freq * xx + phase) * torch.cos(freq * yy) * 0.5 + 0.5) * 255).round().to(torch.uint8)


@pytest.fixture(scope="session")
def fid_image_sets(tmp_path_factory):
    """(smooth/, noise/): 6 PNGs of 32 px each, and their uint8 tensors (few: Inception costs ~0.2 s an image)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("fid_sets")
    out = {}
    for name, seed in (("smooth", 0), ("noise", 1)):
        images = _fid_test_images(name, 6, seed)
        (root / name).mkdir()
        for i, im in enumerate(images):
            Image.fromarray(im.permute(1, 2, 0).numpy()).save(root / name / f"{i:03d}.png")
        out[name] = (root / name, images)
    return out


@pytest.fixture(scope="session")
def test_inception_weights(tmp_path_factory, fid_image_sets):
    from hieratok.eval.weights_for_tests import make_test_inception_weights

    calib = torch.cat([fid_image_sets["smooth"][1][:3], fid_image_sets["noise"][1][:3]])
    return make_test_inception_weights(calib, tmp_path_factory.mktemp("weights") / "inception-test-made.pth")


# --- data pipeline: small prepared datasets shared by the data tests (32 px crops of `embedded`)
def _prepare_embedded(tmp_path_factory, fmt: str):
    from data_pipeline.prepare.pipeline import run_prepare
    from data_pipeline.prepare.options import PrepareOptions

    out = tmp_path_factory.mktemp(f"embedded_{fmt}") / "data"
    run_prepare(PrepareOptions(src="embedded", out=str(out), format=fmt, resolution=32, limit=192,
                               samples_per_shard=8, split_val=0.25, workers=2, progress=False))
    return out


@pytest.fixture(scope="session")
def embedded_mds(tmp_path_factory):
    """MDS of 192 embedded crops at 32 px: train/ (144 samples) and val/ (48), 8 samples a shard."""
    return _prepare_embedded(tmp_path_factory, "mds")


@pytest.fixture(scope="session")
def embedded_wds(tmp_path_factory):
    """The same samples as `embedded_mds`, as WebDataset tars."""
    return _prepare_embedded(tmp_path_factory, "wds")


# --- training: the 1-process reference run that the backend, compile and resume comparisons equal
@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, embedded_mds):
    """20 steps of tests/train_runs.py's tiny_overrides in one process: micro-batch 4, 2 accumulation steps
    (global batch 8)."""
    from train_runs import run_train, tiny_overrides

    run_dir = tmp_path_factory.mktemp("reference") / "run"
    run_train(run_dir, tiny_overrides(embedded_mds))
    return run_dir


# --- generator: a tiny tokenizer export (random init: the plumbing, not its quality, is under test)
# and the latent cache it makes of embedded_mds/train (144 images + their mirrors)
@pytest.fixture(scope="session")
def tiny_tokenizer_export(tmp_path_factory):
    from hieratok.config.loader import load_config
    from hieratok.tokenizer.model import Tokenizer

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_tokenizer") / "export"
    Tokenizer(load_config("configs/tokenizer/tiny_hieratok.yaml").model).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_latent_cache(tmp_path_factory, embedded_mds, tiny_tokenizer_export):
    """288 rows of [64, 8] latents: embedded_mds train/ encoded with --flip by tiny_tokenizer_export."""
    from hieratok.generator.latent_cache import encode_dataset

    out = tmp_path_factory.mktemp("tiny_latents") / "cache"
    encode_dataset(str(tiny_tokenizer_export), str(embedded_mds), str(out), flip=True, split="train",
                   batch_size=48, num_workers=0)
    return out


@pytest.fixture
def single_thread():
    """One torch thread for tests of tiny models: a second thread buys little there and, on a busy
    machine, its spinning makes them many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
