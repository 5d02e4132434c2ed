"""The latent cache: rows equal the tokenizer's own encodings, flips, stats, provenance, resume, refusal."""
import json
import shutil

import pytest
import torch

from data_pipeline import build_loader
from data_pipeline.config import DataConfig
from data_pipeline.errors import DataError
from hieratok.generator.latent_cache import FLIP_SUFFIX, encode_dataset, read_cache
from hieratok.generator.normalization import LatentStats
from hieratok.generator.tokenizer_ref import tokenizer_ref
from hieratok.tokenizer.model import Tokenizer

pytestmark = pytest.mark.usefixtures("single_thread")


def _rows(cache) -> dict[str, tuple[torch.Tensor, int]]:
    loader = build_loader(DataConfig(path=str(cache), format="latent", num_workers=0), 0, 1, 0, batch_size=64,
                          train=False)
    return {k: (z, int(y)) for b in loader for k, z, y in zip(b["key"], b["latent"], b["label"])}


def _images(data, split) -> dict[str, tuple[torch.Tensor, int]]:
    cfg = DataConfig(path=str(data), format="mds", split=split, resolution=32, num_workers=0)
    return {k: (x, int(y)) for b in build_loader(cfg, 0, 1, 0, batch_size=64, train=False)
            for k, x, y in zip(b["key"], b["image"], b["label"])}


def test_cache_rows_are_the_tokenizers_encodings_of_the_centre_crops_and_their_mirrors(
        tiny_latent_cache, embedded_mds, tiny_tokenizer_export):
    rows, images = _rows(tiny_latent_cache), _images(embedded_mds, "train")
    assert len(images) == 144 and set(rows) == set(images) | {k + FLIP_SUFFIX for k in images}
    tok = Tokenizer.from_pretrained(tiny_tokenizer_export)
    keys = sorted(images)
    x = torch.stack([images[k][0] for k in keys])
    with torch.no_grad():
        direct, mirrored = tok.encode(x), tok.encode(x.flip(-1))
    torch.testing.assert_close(torch.stack([rows[k][0] for k in keys]), direct, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.stack([rows[k + FLIP_SUFFIX][0] for k in keys]), mirrored, rtol=1e-5, atol=1e-6)
    assert all(rows[k][1] == images[k][1] == rows[k + FLIP_SUFFIX][1] for k in keys)

    info = read_cache(str(tiny_latent_cache))
    assert info.rows == 288 and info.latent_shape == (64, 8)
    assert info.tokenizer == tokenizer_ref(tiny_tokenizer_export)
    assert info.metadata["flip"] is True and info.metadata["repeated_images"] == 0
    expected = LatentStats.from_latents(torch.stack([z for z, _ in rows.values()]))
    assert info.stats.mean == pytest.approx(expected.mean, abs=1e-6)
    assert info.stats.std == pytest.approx(expected.std, rel=1e-5)


def test_resume_keeps_finished_parts_redoes_unfinished_ones_and_refuses_another_tokenizer(
        tmp_path, embedded_mds, tiny_tokenizer_export):
    out = tmp_path / "cache"
    args = dict(split="val", batch_size=16, num_workers=0)
    first = encode_dataset(str(tiny_tokenizer_export), str(embedded_mds), str(out), **args)
    part = out / "part-00000-of-00001"
    shards = {p: p.stat().st_mtime_ns for p in part.glob("shard.*")}
    again = encode_dataset(str(tiny_tokenizer_export), str(embedded_mds), str(out), **args)
    assert again == first and {p: p.stat().st_mtime_ns for p in part.glob("shard.*")} == shards

    (part / "stats.json").unlink()  # as if killed before the part finished
    redone = encode_dataset(str(tiny_tokenizer_export), str(embedded_mds), str(out), **args)
    assert redone["rows"] == first["rows"] == 48 and redone["mean"] == pytest.approx(first["mean"])

    other = tmp_path / "other_tokenizer"
    shutil.copytree(tiny_tokenizer_export, other)
    tok = Tokenizer.from_pretrained(other)
    with torch.no_grad():
        tok.encoder.to_moments.bias.add_(0.5)
    tok.save_pretrained(other)
    with pytest.raises(DataError, match="tokenizer_sha256"):
        encode_dataset(str(other), str(embedded_mds), str(out), **args)
    with pytest.raises(DataError, match="flip"):
        encode_dataset(str(tiny_tokenizer_export), str(embedded_mds), str(out), flip=True, **args)
    assert json.loads((out / "latent_stats.json").read_text())["rows"] == 48


def test_encode_cli_reports_a_missing_tokenizer_clearly(tmp_path, embedded_mds):
    from hieratok.cli import main

    assert main(["encode", "--tokenizer", str(tmp_path / "nope"), "--data", str(embedded_mds),
                 "--out", str(tmp_path / "c")]) == 2
