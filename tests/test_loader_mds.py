"""MDS loader: batch contract, determinism, augmentation from (seed, epoch, key), exact and elastic
resume, global-batch invariance across world sizes (ranks simulated in one process), shm cleanup."""
import multiprocessing as mp
import os
import signal

import numpy as np
import pytest
import torch

from data_pipeline import build_loader
from data_pipeline.config import DataConfig

TRAIN = 144  # samples in embedded_mds/train


def _cfg(path, **kw):
    return DataConfig(path=str(path), format="mds", resolution=32, **{"num_workers": 0, **kw})


def _keys(batches):
    return [k for b in batches for k in b["key"]]


def test_batch_contract_and_split_selection(embedded_mds):
    loader = build_loader(_cfg(embedded_mds), 0, 1, seed=0, batch_size=8)
    assert loader.dataset._nothing_to_download()  # local shards: streaming's download threads are skipped
    batches = list(loader)
    b = batches[0]
    assert b["image"].dtype == torch.float32 and b["image"].shape == (8, 3, 32, 32)
    assert -1.0 <= b["image"].min() and b["image"].max() <= 1.0 and b["image"].std() > 0.1
    assert b["label"].dtype == torch.int64 and b["label"].shape == (8,)
    assert isinstance(b["key"], list) and all(isinstance(k, str) for k in b["key"])
    assert len(batches) == len(loader) == TRAIN // 8 and len(set(_keys(batches))) == TRAIN
    val = build_loader(_cfg(embedded_mds), 0, 1, seed=0, batch_size=8, train=False, split="val")
    assert len(set(_keys(val))) == 48 and not set(_keys(val)) & set(_keys(batches))


def test_accepts_the_run_config_data_section(embedded_mds):
    from hieratok.config.loader import load_config

    data = load_config("configs/tokenizer/tiny_single.yaml", [f"data.path={embedded_mds}", "data.num_workers=0"]).data
    batch = next(iter(build_loader(data, 0, 1, seed=0, batch_size=4)))
    assert batch["image"].shape == (4, 3, 32, 32)


def test_eval_reads_file_order_with_the_stored_pixels(embedded_mds):
    from streaming import StreamingDataset

    stock = StreamingDataset(local=str(embedded_mds / "val"), shuffle=False, batch_size=1)
    loader = build_loader(_cfg(embedded_mds, num_workers=2), 0, 1, seed=5, batch_size=5, train=False, split="val")
    batches = list(loader)
    assert _keys(batches) == [stock[i]["key"] for i in range(stock.num_samples)]
    first = torch.from_numpy(np.array(stock[0]["image"].convert("RGB"))).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(batches[0]["image"][0], first)  # centre crop of a 32 px image at 32 px, no flip


def test_order_is_deterministic_for_a_seed_and_changes_with_it(embedded_mds):
    def epoch(seed, workers):
        return _keys(build_loader(_cfg(embedded_mds, num_workers=workers), 0, 1, seed=seed, batch_size=8))

    a = epoch(1, 2)
    assert a == epoch(1, 2) and a != epoch(2, 2) and sorted(a) == sorted(epoch(2, 2))


def _images_by_key(loader, epochs=1):
    out = []
    for _ in range(epochs):
        out.append({k: img for b in loader for k, img in zip(b["key"], b["image"])})
    return out


def test_augmentation_depends_on_seed_epoch_and_key_only(embedded_mds):
    # the same key must get the same crop/flip as rank 1 of 2 with 2 workers as on 1 rank without workers
    single = _images_by_key(build_loader(_cfg(embedded_mds), 0, 1, seed=3, batch_size=4), epochs=2)
    rank1 = _images_by_key(build_loader(_cfg(embedded_mds, num_workers=2), 1, 2, seed=3, batch_size=4))[0]
    assert rank1 and all(torch.equal(img, single[0][k]) for k, img in rank1.items())
    flipped = [k for k in single[0] if not torch.equal(single[0][k], single[1][k])]
    assert flipped and all(torch.equal(single[0][k].flip(-1), single[1][k]) for k in flipped)


def _global_steps(path, world, accum, micro, workers=0, seed=0):
    """Key sets of each global step: `world` simulated ranks, each taking `accum` micro-batches."""
    per_rank = [[b["key"] for b in build_loader(_cfg(path, num_workers=workers), r, world, seed, batch_size=micro)]
                for r in range(world)]
    steps = len(per_rank[0]) // accum
    return [sorted(k for r in range(world) for b in per_rank[r][s * accum:(s + 1) * accum] for k in b)
            for s in range(steps)]


@pytest.mark.parametrize("workers", [0, 2])
def test_global_step_holds_the_same_samples_at_any_world_size(embedded_mds, workers):
    two_ranks = _global_steps(embedded_mds, world=2, accum=1, micro=4, workers=workers)
    one_rank = _global_steps(embedded_mds, world=1, accum=2, micro=4, workers=workers)
    assert two_ranks == one_rank and len(two_ranks) == TRAIN // 8


def test_exact_mid_epoch_resume_and_next_epoch(embedded_mds):
    cfg = _cfg(embedded_mds, num_workers=2)
    full = build_loader(cfg, 0, 1, seed=4, batch_size=8)
    epoch0, epoch1 = _keys(full), _keys(full)

    first = build_loader(cfg, 0, 1, seed=4, batch_size=8)
    it = iter(first)
    head = [next(it)["key"] for _ in range(5)]
    state = first.state_dict()
    assert state["epoch"] == 0 and state["sample_in_epoch"] == 40

    resumed = build_loader(cfg, 0, 1, seed=4, batch_size=8)
    resumed.load_state_dict(state)
    assert sum(head, []) + _keys(resumed) == epoch0
    assert resumed.state_dict()["epoch"] == 1 and resumed.state_dict()["sample_in_epoch"] == 0
    assert _keys(resumed) == epoch1


def test_state_after_the_last_batch_points_at_the_next_epoch(embedded_mds):
    cfg = _cfg(embedded_mds)
    loader = build_loader(cfg, 0, 1, seed=0, batch_size=8)
    epoch0 = _keys(loader)
    later = build_loader(cfg, 0, 1, seed=0, batch_size=8)
    later.load_state_dict(loader.state_dict())
    assert sorted(_keys(later)) == sorted(epoch0) and later.state_dict()["epoch"] == 2


def test_elastic_resume_from_two_ranks_to_one_sees_every_sample_once(embedded_mds):
    cfg = _cfg(embedded_mds)
    ranks = [build_loader(cfg, r, 2, seed=9, batch_size=4) for r in range(2)]
    iters = [iter(lo) for lo in ranks]
    seen = [k for _ in range(7) for it in iters for k in next(it)["key"]]
    states = [lo.state_dict() for lo in ranks]
    assert states[0] == states[1] and states[0]["sample_in_epoch"] == 7 * 8

    one = build_loader(cfg, 0, 1, seed=9, batch_size=4)  # same global batch: 2 micro-steps of 4
    one.load_state_dict(states[0])
    rest = _keys(one)
    assert len(seen) + len(rest) == TRAIN == len(set(seen + rest))
    uninterrupted = _global_steps(embedded_mds, world=1, accum=2, micro=4, seed=9)
    assert [sorted(rest[i:i + 8]) for i in range(0, len(rest), 8)] == uninterrupted[7:]


def _killed_streaming_job(path, prefix):
    loader = build_loader(_cfg(path), 0, 1, seed=0, batch_size=8, clean_stale_shm=False)
    prefix.put(_prefix(loader))
    signal.pause()


def _prefix(loader) -> str:
    return f"{loader.dataset._shm_prefix_int:06d}"  # noqa: SLF001 - the prefix of its /dev/shm segments


def _streaming_prefixes():
    return {n.split("_")[0] for n in os.listdir("/dev/shm") if n.endswith("_locals") and n[:6].isdigit()}


def test_stale_shared_memory_of_a_killed_job_is_removed_and_live_memory_kept(embedded_mds):
    from data_pipeline.loading.shm_cleanup import remove_stale_streaming_shm

    live = build_loader(_cfg(embedded_mds), 0, 1, seed=0, batch_size=8)
    ctx = mp.get_context("fork")
    prefix = ctx.Queue()
    job = ctx.Process(target=_killed_streaming_job, args=(embedded_mds, prefix))
    job.start()
    killed = prefix.get(timeout=120)
    os.kill(job.pid, signal.SIGKILL)
    job.join()
    assert killed in _streaming_prefixes()  # SIGKILL left its segments behind

    removed = remove_stale_streaming_shm()
    assert killed in removed and _prefix(live) not in removed
    assert killed not in _streaming_prefixes() and _prefix(live) in _streaming_prefixes()
    assert len(_keys(live)) == TRAIN  # the live dataset still works


def _first_free_prefixes(n: int) -> list[int]:
    """The first n prefixes with no `locals` segment and no lock file: those streaming's walk stops at."""
    import itertools
    import tempfile

    from data_pipeline.loading.shm_cleanup import _FILELOCKS

    def free(i):
        taken = [f"/dev/shm/{i:06d}_locals"] + [f"{tempfile.gettempdir()}/{i:06d}_{lock}" for lock in _FILELOCKS]
        return not any(os.path.exists(t) for t in taken)

    return list(itertools.islice(filter(free, itertools.count()), n))


def test_segments_left_without_their_prefix_are_removed_before_the_next_job_claims_one(embedded_mds):
    """A job killed while streaming's worker made `NNNNNN_epoch_shape` (it has no auto-cleanup) leaves it
    behind after the resource tracker unlinked `NNNNNN_locals`. streaming picks a prefix as the largest of
    "first prefix free of name X" over the names X, so it can land on such a segment: the job then failed
    at its first epoch with `File exists: /NNNNNN_epoch_shape` (seen in CI). Here: an orphan `barrier` at
    the first free prefix sends the walk to the next free one, where an orphan `epoch_shape` waits."""
    first, second = _first_free_prefixes(2)
    orphans = [f"/dev/shm/{first:06d}_barrier", f"/dev/shm/{second:06d}_epoch_shape"]
    for orphan in orphans:
        with open(orphan, "wb") as f:
            f.write(bytes(8))
    try:
        loader = build_loader(_cfg(embedded_mds), 0, 1, seed=0, batch_size=8)
        assert len(_keys(loader)) == TRAIN
        assert not any(os.path.exists(o) and os.stat(o).st_size == 8 for o in orphans)
    finally:
        for orphan in orphans:
            if os.path.exists(orphan) and os.stat(orphan).st_size == 8:
                os.unlink(orphan)


def test_a_shared_memory_prefix_taken_by_another_job_is_claimed_again():
    """streaming's find-then-create of its shm prefix races between jobs starting at once (the
    concurrent trials of a sweep or an ablation): the loser makes its dataset again."""
    from data_pipeline.loading.loader import claim_shm_prefix

    calls = []

    def make():
        calls.append(1)
        if len(calls) < 3:
            raise FileExistsError(17, "File exists", "/000508_locals")
        return "dataset"

    assert claim_shm_prefix(make, world_size=1) == "dataset" and len(calls) == 3
    calls.clear()
    with pytest.raises(FileExistsError):  # ranks of one job meet in streaming's barriers: no lone retry
        claim_shm_prefix(make, world_size=2)
    assert len(calls) == 1


def test_images_on_the_device_are_the_loaders_float_images_bit_for_bit():
    """`images_on` (a uint8 batch converted where it lands) gives exactly `to_unit_range`'s values, for every
    byte; a float batch passes through untouched."""
    from data_pipeline.loading.augment import images_on, to_unit_range, unit_range_on_device

    every_byte = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    want = to_unit_range({"image": every_byte.clone()})["image"]
    got = images_on(torch.device("cpu"), every_byte)
    assert got.dtype == torch.float32 and torch.equal(got.view(torch.int32), want.view(torch.int32))
    assert got[0, 0, 0, 0] == -1 and got[0, 0, -1, -1] == 1
    assert images_on(torch.device("cpu"), want) is want
    assert unit_range_on_device("auto", "cuda") and not unit_range_on_device("auto", "cpu")
    assert unit_range_on_device("device", "cpu") and not unit_range_on_device("loader", "cuda")


@pytest.mark.parametrize("fmt", ["mds", "wds"])
def test_uint8_batches_convert_to_the_float_batches(embedded_mds, embedded_wds, fmt):
    from data_pipeline.loading.augment import images_on

    cfg = DataConfig(path=str(embedded_mds if fmt == "mds" else embedded_wds), format=fmt, resolution=32,
                     num_workers=0)
    floats = list(build_loader(cfg, 0, 1, seed=3, batch_size=8))
    raw = list(build_loader(cfg, 0, 1, seed=3, batch_size=8, uint8_images=True))
    assert _keys(raw) == _keys(floats) and all(b["image"].dtype == torch.uint8 for b in raw)
    assert all(torch.equal(images_on(torch.device("cpu"), r["image"]), f["image"]) for r, f in zip(raw, floats))


CLOSE_THEN_EXIT = """
import os, signal, sys
from multiprocessing import resource_tracker
from pathlib import Path
from data_pipeline import build_loader
from data_pipeline.config import DataConfig

loader = build_loader(DataConfig(path=sys.argv[1], format="mds", resolution=32, num_workers=0), 0, 1, seed=0,
                      batch_size=8)
next(iter(loader))
prefix = f"{loader.dataset._shm_prefix_int:06d}_"
print(len(list(Path("/dev/shm").glob(prefix + "*"))))
if sys.argv[2] == "close":
    loader.close()
    print(len(list(Path("/dev/shm").glob(prefix + "*"))))
pid = resource_tracker._resource_tracker._pid  # what a Ray worker's exit does to its children
os.kill(pid, signal.SIGKILL)
os.waitpid(pid, 0)
"""


@pytest.mark.parametrize("close", [True, False])
def test_close_frees_the_datasets_shared_memory_now_not_at_exit(embedded_mds, close):
    """A long-lived process (a Ray trial worker) kept each run's segments until its exit, where Ray had
    already killed the resource tracker: every segment then printed a KeyError traceback."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", CLOSE_THEN_EXIT, str(embedded_mds), "close" if close else "keep"],
                          cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = [int(x) for x in proc.stdout.split()]
    if close:
        assert counts[0] >= 5 and counts[1] == 0, counts
        assert "Traceback" not in proc.stderr and "KeyError" not in proc.stderr, proc.stderr[-3000:]
    else:  # the failure this guards against, still there without close()
        assert "KeyError" in proc.stderr
