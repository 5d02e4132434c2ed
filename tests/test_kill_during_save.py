"""A SIGKILL that provably lands inside a checkpoint write (issue 15), in one process and in two
(FSDP2, DeepSpeed ZeRO-2): the 2nd save is held after the backend has written its tensors into the
staging folder (tests/fault_cli.py, hold `staged`); the test sees the folder there and unpublished,
kills every process of the run, and resumes. The resumed run equals an uninterrupted one: the same
loss at every step, the same samples at every step, the same weights, no staging folder left."""
import pytest
import torch

from train_runs import HeldRun, exported, keys_by_step, latest_step, losses, run_train, tiny_overrides
from hieratok.train.checkpoint import DCP_DIR, DS_DIR, STATE_FILE

STEPS, EVERY = 8, 2  # saves at steps 2, 4, 6, 8: the one of step 4 is killed, step 2's is resumed
CASES = {"ddp-1": ("ddp", 1), "fsdp-2": ("fsdp", 2), "deepspeed-2": ("deepspeed", 2)}


def _overrides(data, backend: str) -> list[str]:
    return tiny_overrides(data, **{"train.max_steps": STEPS, "checkpoint.every_steps": EVERY,
                                   "dist.backend": backend, "dist.zero_stage": 2})


@pytest.fixture(scope="module")
def reference(tmp_path_factory, embedded_mds):
    """case -> its uninterrupted run (made once, when a test first asks)."""
    runs = {}

    def get(case: str):
        if case not in runs:
            backend, nproc = CASES[case]
            runs[case] = tmp_path_factory.mktemp(f"reference-{case}") / "run"
            run_train(runs[case], _overrides(embedded_mds, backend), nproc=nproc)
        return runs[case]
    return get


@pytest.mark.parametrize("case", list(CASES))
def test_sigkill_inside_a_checkpoint_write_resumes_as_if_uninterrupted(tmp_path, embedded_mds, reference, case):
    backend, nproc = CASES[case]
    run_dir, overrides = tmp_path / "run", _overrides(embedded_mds, backend)
    run = HeldRun(tmp_path, run_dir, overrides, hold="staged:2", nproc=nproc)
    run.held("staged")
    staging = run_dir / "checkpoints" / ".tmp-step_00000004"
    tensors = staging / (DS_DIR if backend == "deepspeed" else DCP_DIR)
    assert any(tensors.iterdir()) and not (staging / STATE_FILE).exists()  # written, not yet complete
    assert latest_step(run_dir) == 2
    run.kill()
    assert latest_step(run_dir) == 2 and staging.exists()  # the kill landed before publication

    run_train(run_dir, overrides, nproc=nproc)
    ref = reference(case)
    assert losses(run_dir) == losses(ref)  # identical, not close
    got_keys, ref_keys = keys_by_step(run_dir), keys_by_step(ref)
    assert sorted(got_keys) == list(range(1, STEPS + 1))
    assert all(sorted(got_keys[s]) == sorted(ref_keys[s]) for s in got_keys)  # each sample once, as uninterrupted
    a, b = exported(ref), exported(run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
