"""The generator Task as the engine drives it: cache or on-the-fly latents, keyed loss, export, tokenizer checks."""
import json
import shutil

import pytest
import torch

from data_pipeline import build_loader
from data_pipeline.config import DataConfig
from hieratok.config.errors import ConfigError
from hieratok.config.loader import load_config
from hieratok.generator.latent_cache import encode_dataset, read_cache
from hieratok.generator.model import Generator
from hieratok.generator.sample_run import load_bundle
from hieratok.generator.task import GeneratorTask
from hieratok.generator.tokenizer_ref import TokenizerMismatchError
from hieratok.tokenizer.model import Tokenizer

pytestmark = pytest.mark.usefixtures("single_thread")

CPU = torch.device("cpu")


def _task(*overrides) -> GeneratorTask:
    return GeneratorTask(load_config("configs/generator/tiny.yaml", list(overrides)))


def _first_batch(data_cfg, batch_size=16):
    return next(iter(build_loader(data_cfg, 0, 1, 0, batch_size=batch_size, train=False)))


@pytest.fixture(scope="module")
def val_cache(tmp_path_factory, embedded_mds, tiny_tokenizer_export):
    """embedded_mds val/ (48 images), no flips: what on-the-fly encoding of val/ must reproduce."""
    out = tmp_path_factory.mktemp("val_cache") / "cache"
    encode_dataset(str(tiny_tokenizer_export), str(embedded_mds), str(out), split="val", batch_size=16, num_workers=0)
    return out


@pytest.fixture
def changed_tokenizer(tmp_path, tiny_tokenizer_export):
    """A copy of the tiny tokenizer with different weights."""
    other = tmp_path / "changed"
    shutil.copytree(tiny_tokenizer_export, other)
    tok = Tokenizer.from_pretrained(other)
    with torch.no_grad():
        tok.decoder.from_latent.bias.add_(0.1)
    tok.save_pretrained(other)
    return other


def test_protocol_from_the_cache(tiny_latent_cache):
    task = _task(f"data.path={tiny_latent_cache}").to(CPU)
    model = task.build_model()
    assert len(task.block_modules(model)) == 4 and all(p.requires_grad for p in model.parameters())
    loader = build_loader(DataConfig(path=str(tiny_latent_cache), format="latent", num_workers=0), 0, 1, 0,
                          batch_size=96, train=False)
    x = torch.cat([task.prepare_batch(b, CPU)["latent"] for b in loader]).reshape(-1, 8)
    torch.testing.assert_close(x.mean(0), torch.zeros(8), rtol=0, atol=1e-4)  # normalised with the cache's stats
    torch.testing.assert_close(x.std(0, unbiased=False), torch.ones(8), rtol=0, atol=1e-4)
    batch = task.prepare_batch(_first_batch(DataConfig(path=str(tiny_latent_cache), format="latent", num_workers=0)), CPU)
    loss, terms = task.compute_loss(model, batch, step=1)
    assert loss.dim() == 0 and loss.requires_grad and {"loss", "flow_mse", "t_mean"} <= set(terms)
    assert not any(t.requires_grad for t in terms.values())


def test_loss_does_not_depend_on_how_a_batch_is_split_over_ranks(tiny_latent_cache):
    """Flow time, noise and label dropout are keyed by (seed, step, key): two half batches (two ranks)
    average to the loss of the whole batch, and the same step gives the same loss."""
    task = _task(f"data.path={tiny_latent_cache}", "loss.label_dropout=0.5").to(CPU)
    torch.manual_seed(0)
    model = task.build_model()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    batch = task.prepare_batch(_first_batch(DataConfig(path=str(tiny_latent_cache), format="latent", num_workers=0)), CPU)
    half = lambda sl: {"latent": batch["latent"][sl], "label": batch["label"][sl], "key": batch["key"][sl]}  # noqa: E731
    with torch.no_grad():
        whole = task.compute_loss(model, batch, 7)[0]
        halves = (task.compute_loss(model, half(slice(0, 8)), 7)[0] + task.compute_loss(model, half(slice(8, 16)), 7)[0]) / 2
        torch.testing.assert_close(halves, whole, rtol=1e-5, atol=0)
        assert torch.equal(task.compute_loss(model, batch, 7)[0], whole)
        assert not torch.equal(task.compute_loss(model, batch, 8)[0], whole)


def test_on_the_fly_encoding_reproduces_the_cache(val_cache, embedded_mds, tiny_tokenizer_export):
    task = _task("data.format=mds", f"data.path={embedded_mds}", "data.split=val", "data.num_workers=0",
                 "data.resolution=32", f"model.tokenizer={tiny_tokenizer_export}", "model.stats_images=48").to(CPU)
    cached = read_cache(str(val_cache))
    assert task.stats.mean == pytest.approx(cached.stats.mean, abs=1e-6)
    assert task.stats.std == pytest.approx(cached.stats.std, rel=1e-5)
    images = _first_batch(DataConfig(path=str(embedded_mds), format="mds", split="val", resolution=32, num_workers=0))
    latents = _first_batch(DataConfig(path=str(val_cache), format="latent", num_workers=0))
    assert list(images["key"]) == list(latents["key"])
    torch.testing.assert_close(task.prepare_batch(images, CPU)["latent"], task.prepare_batch(latents, CPU)["latent"],
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ConfigError, match="set model.tokenizer"):
        _task("data.format=mds", f"data.path={embedded_mds}")


def test_export_records_tokenizer_and_stats_and_sampling_refuses_a_changed_tokenizer(
        tmp_path, tiny_latent_cache, tiny_tokenizer_export, changed_tokenizer):
    task = _task(f"data.path={tiny_latent_cache}").to(CPU)
    model = task.build_model()
    task.export(model.state_dict(), tmp_path / "run" / "export", {"weights": "ema"})
    cfg = json.loads((tmp_path / "run" / "export" / "config.json").read_text())
    assert cfg["tokenizer_ref"]["path"] == str(tiny_tokenizer_export.resolve())
    assert cfg["latent_stats"] == read_cache(str(tiny_latent_cache)).stats.to_dict() and cfg["weights"] == "ema"
    Generator.from_pretrained(tmp_path / "run" / "export")
    assert load_bundle(tmp_path / "run").tokenizer_ref.path == cfg["tokenizer_ref"]["path"]

    cfg["tokenizer_ref"]["path"] = str(changed_tokenizer)  # as if the tokenizer had been retrained in place
    (tmp_path / "run" / "export" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(TokenizerMismatchError, match="has changed since the generator export"):
        load_bundle(tmp_path / "run")


def test_training_refuses_a_tokenizer_other_than_the_caches(tmp_path, tiny_latent_cache, tiny_tokenizer_export,
                                                            changed_tokenizer):
    with pytest.raises(TokenizerMismatchError, match="is not the tokenizer"):
        _task(f"data.path={tiny_latent_cache}", f"model.tokenizer={changed_tokenizer}")
    same = tmp_path / "same_weights_elsewhere"
    shutil.copytree(tiny_tokenizer_export, same)
    assert _task(f"data.path={tiny_latent_cache}", f"model.tokenizer={same}").tokenizer_ref.path == str(same.resolve())
    with pytest.raises(ConfigError, match=r"shape \[64, 8\].*\[256, 8\]"):
        _task(f"data.path={tiny_latent_cache}", "model.latent_grid=16")
