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


# --- data pipeline: small prepared datasets shared by the data tests (32 px crops of `embedded`)
def _prepare_embedded(tmp_path_factory, fmt: str):
    from data_pipeline.prepare import run_prepare
    from data_pipeline.prepare_options import PrepareOptions

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
