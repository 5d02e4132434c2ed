"""WDS loader: rank/worker splitting, shard shuffle, resampled mode, equal batch counts across ranks,
exact resume at the same layout, and the documented approximate resume at another layout."""
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipeline import build_loader
from data_pipeline.config import DataConfig
from data_pipeline.errors import DataError
from data_pipeline.loading.wds_loader import resume_point

TRAIN, VAL = 144, 48


def _cfg(path, **kw):
    return DataConfig(path=str(path), format="wds", resolution=32, **{"num_workers": 2, "wds_shuffle_buffer": 64, **kw})


def _keys(batches):
    return [k for b in batches for k in b["key"]]


def test_batch_contract_and_augmentation_match_mds(embedded_wds, embedded_mds):
    wds_images = {k: img for b in build_loader(_cfg(embedded_wds), 0, 1, seed=2, batch_size=8)
                  for k, img in zip(b["key"], b["image"])}
    b = next(iter(build_loader(_cfg(embedded_wds), 0, 1, seed=2, batch_size=8)))
    assert b["image"].shape == (8, 3, 32, 32) and b["image"].dtype == torch.float32
    assert b["label"].dtype == torch.int64 and all(isinstance(k, str) for k in b["key"])
    mds_cfg = DataConfig(path=str(embedded_mds), format="mds", resolution=32, num_workers=0)
    mds_images = {k: img for b in build_loader(mds_cfg, 0, 1, seed=2, batch_size=8) for k, img in zip(b["key"], b["image"])}
    common = set(wds_images) & set(mds_images)
    assert len(common) > 100 and all(torch.equal(wds_images[k], mds_images[k]) for k in common)


def test_ranks_get_equal_batch_counts_and_disjoint_samples(embedded_wds):
    per_rank = [list(build_loader(_cfg(embedded_wds), r, 3, seed=0, batch_size=4)) for r in range(3)]
    assert len({len(batches) for batches in per_rank}) == 1 and len(per_rank[0]) > 0
    keys = [k for batches in per_rank for k in _keys(batches)]
    assert len(keys) == len(set(keys))  # at most once an epoch


def test_shard_shuffle_changes_with_epoch_and_seed_and_is_deterministic(embedded_wds):
    loader = build_loader(_cfg(embedded_wds), 0, 1, seed=0, batch_size=8)
    e0, e1 = _keys(loader), _keys(loader)
    assert e0 != e1 and len(set(e0)) == len(e0)
    again = build_loader(_cfg(embedded_wds), 0, 1, seed=0, batch_size=8)
    assert _keys(again) == e0 and _keys(again) == e1
    assert _keys(build_loader(_cfg(embedded_wds), 0, 1, seed=1, batch_size=8)) != e0


def test_eval_reads_every_sample_once_across_ranks(embedded_wds):
    keys = [k for r in range(2) for k in _keys(build_loader(_cfg(embedded_wds), r, 2, 0, batch_size=5, train=False,
                                                            split="val"))]
    assert len(keys) == VAL == len(set(keys))


def test_resampled_mode_has_the_configured_epoch_and_is_deterministic(embedded_wds):
    cfg = _cfg(embedded_wds, wds_resampled=True, wds_epoch_samples=96)
    a = build_loader(cfg, 1, 2, seed=0, batch_size=4)
    first = _keys(a)
    assert len(first) == 96 // 2
    assert _keys(build_loader(cfg, 1, 2, seed=0, batch_size=4)) == first and _keys(a) != first


@pytest.mark.parametrize("resampled", [False, True])
def test_resume_at_the_same_layout_is_exact(embedded_wds, resampled):
    cfg = _cfg(embedded_wds, wds_resampled=resampled)
    full = build_loader(cfg, 1, 2, seed=3, batch_size=4)
    epoch0, epoch1 = _keys(full), _keys(full)
    first = build_loader(cfg, 1, 2, seed=3, batch_size=4)
    it = iter(first)
    head = _keys(itertools.islice(it, 5))
    resumed = build_loader(cfg, 1, 2, seed=3, batch_size=4)
    resumed.load_state_dict(first.state_dict())
    assert head + _keys(resumed) == epoch0 and _keys(resumed) == epoch1


def test_resume_at_another_layout_warns_and_continues_the_epoch(embedded_wds):
    two = [build_loader(_cfg(embedded_wds), r, 2, seed=0, batch_size=4) for r in range(2)]
    for lo in two:
        list(itertools.islice(iter(lo), 6))
    one = build_loader(_cfg(embedded_wds), 0, 1, seed=0, batch_size=4)
    with pytest.warns(UserWarning, match="not exact"):
        one.load_state_dict(two[0].state_dict())
    assert len(_keys(one)) == 4 * (len(one) - 12)  # the 6 global steps of 8 samples are skipped


def test_too_few_samples_for_a_batch_on_every_rank_fails_clearly(embedded_wds):
    with pytest.raises(DataError, match="no full batch"):
        build_loader(_cfg(embedded_wds), 0, 4, seed=0, batch_size=64)


def _round_robin(consumed, caps):
    """The DataLoader's order, one batch at a time: workers in turn, skipping exhausted ones."""
    done, nxt = [0] * len(caps), 0
    for _ in range(consumed):
        order = list(range(nxt, len(caps))) + list(range(nxt))
        w = next(w for w in order if done[w] < caps[w])
        done[w], nxt = done[w] + 1, (w + 1) % len(caps)
    order = list(range(nxt, len(caps))) + list(range(nxt))
    return done, next((w for w in order if done[w] < caps[w]), 0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=6), st.integers(0, 200))
def test_resume_point_follows_the_dataloader_round_robin(caps, consumed):
    consumed = min(consumed, sum(caps))
    assert resume_point(consumed, caps) == _round_robin(consumed, caps)


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")
@pytest.mark.parametrize("stop", [1, 4, 7])
def test_resume_is_exact_wherever_the_stop_falls_among_three_workers(embedded_wds, stop):
    cfg = _cfg(embedded_wds, num_workers=3)
    epoch0 = _keys(build_loader(cfg, 0, 2, seed=5, batch_size=3))
    first = build_loader(cfg, 0, 2, seed=5, batch_size=3)
    head = _keys(itertools.islice(iter(first), stop))
    resumed = build_loader(cfg, 0, 2, seed=5, batch_size=3)
    resumed.load_state_dict(first.state_dict())
    assert head + _keys(resumed) == epoch0
