"""Too little data is a clear error, never a hang (issue 15: 4 samples and a global batch of 8 sat
at 0/6 steps for 13 minutes). A dataset, split or rank share short of one optimizer step fails
before training with exit 2 and one line naming the data and the counts; a loader that yields
nothing for data.timeout_s fails naming the data; the bounded wait itself is checked in-process."""
import re
import threading

import pytest

from data_pipeline import build_loader
from data_pipeline.loading.batch_wait import BatchFetcher, DataTimeoutError, WaitAbandoned
from data_pipeline.loading.capacity import require_full_steps
from data_pipeline.config import DataConfig
from data_pipeline.errors import DataError
from train_runs import HeldRun, run_train, tiny_overrides


def _prepare(tmp_path_factory, fmt: str, limit: int, per_shard: int):
    from data_pipeline.prepare.pipeline import run_prepare
    from data_pipeline.prepare.options import PrepareOptions

    out = tmp_path_factory.mktemp(f"small_{fmt}_{limit}") / "data"
    run_prepare(PrepareOptions(src="embedded", out=str(out), format=fmt, resolution=32, limit=limit,
                               samples_per_shard=per_shard, workers=1, progress=False))
    return out


@pytest.fixture(scope="module")
def four_mds(tmp_path_factory):
    return _prepare(tmp_path_factory, "mds", 4, 1)


@pytest.fixture(scope="module")
def four_wds(tmp_path_factory):
    return _prepare(tmp_path_factory, "wds", 4, 1)


@pytest.mark.parametrize("fmt,micro", [("mds", 8), ("mds", 4), ("wds", 8)])
def test_fewer_samples_than_a_global_batch_fail_before_training(tmp_path, four_mds, four_wds, fmt, micro):
    """The reported case (micro-batch 8: an epoch of zero batches), and micro-batch 4 (one batch an
    epoch, so each step would read the 4 samples twice)."""
    data = four_mds if fmt == "mds" else four_wds
    run_dir = tmp_path / "run"
    proc = run_train(run_dir, tiny_overrides(data, **{"data.format": fmt, "train.max_steps": 6,
                                                      "train.micro_batch_size": micro}), check=False, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("hieratok train: data error: ") and str(data) in lines[0]
    assert re.search(r"\b4 (training )?samples\b.*\b8\b", lines[0]), lines[0]  # the samples, the batch they miss
    assert not (run_dir / "checkpoints" / "latest").exists()


def test_a_rank_share_short_of_one_step_fails_clearly(tmp_path_factory):
    """24 samples fill one global batch of 24, but in shards of 6 over 2 workers each worker reads 12
    (one full micro-batch of 8), so the rank gets 2 micro-batches an epoch where a step takes 3."""
    data = _prepare(tmp_path_factory, "wds", 24, 6)
    cfg = DataConfig(path=str(data), format="wds", resolution=32, num_workers=2)
    loader = build_loader(cfg, 0, 1, seed=0, batch_size=8)
    with pytest.raises(DataError, match=r"rank 0 of 1 gets 2 full micro-batches of 8 .* from 24 samples.* takes 3") as e:
        require_full_steps(loader, global_batch=24, micro_batch=8, world_size=1)
    assert str(data) in str(e.value)


def test_a_stalled_loader_fails_after_data_timeout_naming_the_data(tmp_path, embedded_mds):
    """The 6th micro-batch never comes; after data.timeout_s the run fails (exit 2) naming the data,
    and the steps it finished (2) are kept."""
    run_dir = tmp_path / "run"
    run = HeldRun(tmp_path, run_dir, tiny_overrides(embedded_mds, **{"data.timeout_s": 2}), hold="data:6")
    rc, _ = run.finish()
    last = run.stderr.strip().splitlines()[-1]
    assert rc == 2 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert last.startswith("hieratok train: data error: no batch from MDS data ") and str(embedded_mds) in last
    assert "data.timeout_s=2" in last and "steps up to 2 are saved" in last


# --- the bounded wait, in-process -------------------------------------------------------------
class _Gate:
    """An iterator whose items each wait for a release; counts the items asked for."""

    def __init__(self, n: int):
        self.n, self.asked, self.release = n, 0, threading.Semaphore(0)

    def __iter__(self):
        return self

    def __next__(self):
        self.asked += 1
        if self.asked > self.n:
            raise StopIteration
        self.release.acquire()
        return self.asked


def test_the_wait_times_out_naming_the_data_and_never_reads_ahead():
    gate, fetch = _Gate(2), BatchFetcher("MDS data /somewhere", timeout_s=0.3)
    try:
        with pytest.raises(DataTimeoutError, match=r"no batch from MDS data /somewhere .*data.timeout_s=0.3"):
            fetch.next(gate)
        gate.release.release()
        assert fetch.next(gate) == 1  # the same request, answered late, is the next item
        assert gate.asked == 1  # one next() per item asked for: the loader's state stays exact
    finally:
        fetch.close()


def test_the_wait_is_abandoned_on_stop_and_can_be_resumed():
    gate, fetch, stop = _Gate(1), BatchFetcher("data", timeout_s=0), threading.Event()
    try:
        stop.set()
        with pytest.raises(WaitAbandoned):
            fetch.next(gate, stop=stop.is_set)
        gate.release.release()
        assert fetch.next(gate) == 1 and gate.asked == 1
        with pytest.raises(StopIteration):
            fetch.next(gate)
    finally:
        fetch.close()


def test_the_wait_passes_on_loader_errors_and_rejects_a_negative_timeout():
    def broken():
        raise DataError("cannot read WDS shard x.tar")
        yield

    fetch = BatchFetcher("data")
    try:
        with pytest.raises(DataError, match="x.tar"):
            fetch.next(broken())
    finally:
        fetch.close()
    with pytest.raises(DataError, match="data.timeout_s"):
        BatchFetcher("data", timeout_s=-1)


def test_epochs_that_keep_yielding_nothing_fail_instead_of_spinning(tmp_path):
    """The setup check sees the first epoch; should later ones come up empty (WDS shards fall on
    ranks anew each epoch), the loop fails naming the data. One empty epoch is a resume that
    landed on an epoch's very end, and goes on."""
    from types import SimpleNamespace as NS

    from hieratok.train.loop import LoopState, TrainLoop
    from hieratok.distributed.signals import PreemptionGuard

    class Epochs:
        where = "WDS data /somewhere (split train)"

        def __init__(self, sizes):
            self.sizes = iter(sizes)

        def __iter__(self):
            return iter([{"key": ["k"]}] * next(self.sizes))

        def close(self):
            pass

    cfg = NS(train=NS(global_batch_size=4, micro_batch_size=4), logging=NS(record_keys=False),
             data=NS(path="/somewhere", timeout_s=0))

    def loop(sizes):
        return TrainLoop(cfg=cfg, run_dir=tmp_path, info=NS(rank=0, world_size=1), task=None, backend=None,
                         loader=Epochs(sizes), monitor=None, checkpointer=None, guard=PreemptionGuard(),
                         state=LoopState())

    resumed_at_an_end = loop([0, 1])
    assert resumed_at_an_end._next_batch()[0] == {"key": ["k"]}
    resumed_at_an_end.close()
    empty = loop([1, 0, 0])
    empty._next_batch()
    with pytest.raises(DataError, match=r"/somewhere \(split train\): two epochs in a row gave rank 0 no batch of 4"):
        empty._next_batch()
    empty.close()
