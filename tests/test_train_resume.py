"""Resume: after SIGTERM (exact, bit for bit), at another world size (FSDP2 via DCP, DeepSpeed via
universal checkpoints), with every sample of the epoch seen exactly once across the restart."""
import signal
import subprocess
import time
from collections import Counter

import pytest
import torch

from test_train_equivalence import assert_same_training, reference_run  # noqa: F401 (fixture)
from train_runs import REPO, env, exported, keys_by_step, latest_step, losses, metrics, run_train, tiny_overrides, train_command

EPOCH_STEPS = 144 // 8  # the train split of `embedded_mds` at global batch 8


def _wait_for_step(run_dir, step: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"run ended before step {step}: {proc.stderr.read()[-3000:]}")
        if (run_dir / "metrics.jsonl").exists() and metrics(run_dir) and metrics(run_dir)[-1]["step"] >= step:
            return
        time.sleep(0.05)
    raise AssertionError(f"no step {step} within {timeout}s")


def assert_epoch_seen_once(run_dir):
    by_step = keys_by_step(run_dir)
    epoch = [k for s in range(1, EPOCH_STEPS + 1) for k in by_step[s]]
    counts = Counter(epoch)
    assert len(epoch) == 144 and set(counts.values()) == {1}, counts.most_common(3)


def test_sigterm_then_resume_is_bit_exact(tmp_path, reference_run, embedded_mds):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(embedded_mds)
    proc = subprocess.Popen(train_command(run_dir, overrides), cwd=REPO, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_step(run_dir, 4, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    stopped = latest_step(run_dir)
    assert 4 <= stopped < 20, "the signal must land mid-run"
    assert not (run_dir / "export").exists()
    run_train(run_dir, overrides)
    assert losses(run_dir) == losses(reference_run)  # identical, not close
    a, b = exported(reference_run), exported(run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert_epoch_seen_once(run_dir)


@pytest.mark.parametrize("backend,first,second", [
    ("fsdp", 2, 1), ("fsdp", 1, 2), ("deepspeed", 2, 1), ("deepspeed", 1, 2),
])
def test_elastic_resume(tmp_path, reference_run, embedded_mds, backend, first, second):
    run_dir = tmp_path / "run"
    common = {"dist.backend": backend, "dist.zero_stage": 2}
    run_train(run_dir, tiny_overrides(embedded_mds, **common, **{"train.stop_at_step": 10}), nproc=first)
    assert latest_step(run_dir) == 10
    run_train(run_dir, tiny_overrides(embedded_mds, **common), nproc=second)
    # the global batch is unchanged, so every step sees the same samples as the fixed-world run
    ref_keys, got_keys = keys_by_step(reference_run), keys_by_step(run_dir)
    assert all(sorted(got_keys[s]) == sorted(ref_keys[s]) for s in range(1, 21))
    assert_epoch_seen_once(run_dir)
    assert_same_training(run_dir, reference_run)
