"""Latent cache: per-rank MDS parts with float64 sufficient statistics, exact merge, resumable parts,
the stats JSON, and reading it back with build_loader(format="latent") and the stock reader."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipeline import build_loader
from data_pipeline.config import DataConfig
from data_pipeline.errors import DataError
from data_pipeline.latent_cache.rows import LatentPartWriter, merge_latent_parts
from data_pipeline.latent_cache.stats import ChannelStats, read_latent_stats

T, C = 6, 3


def _rows(n, seed):
    rng = np.random.default_rng(seed)
    latents = (rng.normal(size=(n, T, C)) * [1.0, 3.0, 0.5] + [0.0, -2.0, 10.0]).astype(np.float32)
    return latents, rng.integers(0, 5, n), [f"img/{seed}/{i:04d}" for i in range(n)]


def _write_part(out, rank, world, latents, labels, keys, batch=7):
    writer = LatentPartWriter(str(out), rank=rank, world_size=world, latent_shape=(T, C))
    with writer:
        for i in range(0, len(keys), batch):
            writer.write_batch(torch.from_numpy(latents[i:i + batch]), torch.from_numpy(labels[i:i + batch]),
                               keys[i:i + batch])
    return writer


def test_two_parts_merge_into_one_cache_with_exact_stats(tmp_path):
    parts = [_rows(30, 0), _rows(22, 1)]
    for rank, (lat, lab, keys) in enumerate(parts):
        _write_part(tmp_path, rank, 2, lat, lab, keys)
    doc = merge_latent_parts(str(tmp_path), world_size=2, metadata={"tokenizer": "runs/x/export", "weights_sha256": "ab"})

    all_lat = np.concatenate([p[0] for p in parts]).astype(np.float64).reshape(-1, C)
    stats = read_latent_stats(str(tmp_path))
    assert stats.rows == 52 and stats.latent_shape == (T, C) and doc["n"] == 52 * T
    np.testing.assert_allclose(stats.mean, all_lat.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.std, all_lat.std(axis=0), rtol=1e-10)
    assert stats.metadata == {"tokenizer": "runs/x/export", "weights_sha256": "ab"}

    want = {k: (lat, int(lab)) for p in parts for lat, lab, k in zip(*p)}
    loader = build_loader(DataConfig(path=str(tmp_path), format="latent", num_workers=0), 0, 1, seed=0,
                          batch_size=8, train=False)
    got = {}
    for b in loader:
        assert b["latent"].dtype == torch.float32 and b["latent"].shape[1:] == (T, C) and b["label"].dtype == torch.int64
        got.update({k: (lat.numpy(), int(lab)) for k, lat, lab in zip(b["key"], b["latent"], b["label"])})
    assert got.keys() == want.keys()
    assert all(np.array_equal(got[k][0], want[k][0]) and got[k][1] == want[k][1] for k in want)

    from streaming import StreamingDataset

    stock = StreamingDataset(local=str(tmp_path), shuffle=False, batch_size=1)
    assert stock.num_samples == 52 and stock[0]["latent"].shape == (T, C)


def test_latent_loader_resumes_exactly(tmp_path):
    _write_part(tmp_path, 0, 1, *_rows(40, 3))
    merge_latent_parts(str(tmp_path), world_size=1)
    cfg = DataConfig(path=str(tmp_path), format="latent", num_workers=0)
    full = [k for b in build_loader(cfg, 0, 1, seed=1, batch_size=4) for k in b["key"]]
    first = build_loader(cfg, 0, 1, seed=1, batch_size=4)
    it = iter(first)
    head = [k for _ in range(3) for k in next(it)["key"]]
    resumed = build_loader(cfg, 0, 1, seed=1, batch_size=4)
    resumed.load_state_dict(first.state_dict())
    assert head + [k for b in resumed for k in b["key"]] == full


def test_a_rerun_skips_finished_parts_and_redoes_a_failed_one(tmp_path):
    lat, lab, keys = _rows(20, 4)
    _write_part(tmp_path, 0, 2, lat, lab, keys)
    with pytest.raises(RuntimeError):  # rank 1 dies half-way
        with LatentPartWriter(str(tmp_path), rank=1, world_size=2, latent_shape=(T, C)) as w:
            w.write_batch(lat[:5], lab[:5], keys[:5])
            raise RuntimeError("killed")
    with pytest.raises(DataError, match="parts not finished: part-00001-of-00002"):
        merge_latent_parts(str(tmp_path), world_size=2)

    assert LatentPartWriter(str(tmp_path), rank=0, world_size=2, latent_shape=(T, C)).done
    redo = LatentPartWriter(str(tmp_path), rank=1, world_size=2, latent_shape=(T, C))
    assert not redo.done
    with redo:
        redo.write_batch(lat[:5], lab[:5], [f"r1/{i}" for i in range(5)])
    assert merge_latent_parts(str(tmp_path), world_size=2)["rows"] == 25


def test_bad_latents_are_refused_naming_the_key(tmp_path):
    lat, lab, keys = _rows(4, 5)
    lat[2, 0, 1] = np.nan
    with pytest.raises(DataError, match="img/5/0002"):
        with LatentPartWriter(str(tmp_path), rank=0, world_size=1, latent_shape=(T, C)) as w:
            w.write_batch(lat, lab, keys)
    with pytest.raises(DataError, match=r"expected \[B, 6, 3\]"):
        with LatentPartWriter(str(tmp_path), rank=0, world_size=1, latent_shape=(T, C)) as w:
            w.write_batch(np.zeros((2, T, C + 1), np.float32), lab[:2], keys[:2])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=5), st.integers(0, 2**31))
def test_partial_statistics_merge_to_those_of_the_whole(sizes, seed):
    rng = np.random.default_rng(seed)
    chunks = [rng.normal(3.0, 2.0, size=(n, T, C)).astype(np.float32) for n in sizes]
    whole = ChannelStats(C)
    whole.add(np.concatenate(chunks))
    merged = ChannelStats(C)
    for chunk in chunks:
        part = ChannelStats(C)
        part.add(chunk)
        merged = merged.merge(part)
    assert (merged.rows, merged.n) == (whole.rows, whole.n)
    np.testing.assert_allclose(merged.sum, whole.sum, rtol=1e-12)
    np.testing.assert_allclose(merged.std(), whole.std(), rtol=1e-9)
