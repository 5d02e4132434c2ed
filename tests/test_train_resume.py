"""Resume: after SIGTERM (exact, bit for bit), at another world size (DDP and FSDP2 via DCP, DeepSpeed
ZeRO-1/2/3 via universal checkpoints), with every sample of the epoch seen exactly once across the
restart, whether the first part stopped by a signal or at `train.stop_at_step`, with 0 or 2 loader
workers."""
import signal
import subprocess
import time

import pytest
import torch

from test_train_equivalence import assert_same_training
from train_runs import (
    REPO,
    HeldRun,
    assert_epoch_seen_once,
    env,
    exported,
    keys_by_step,
    latest_step,
    losses,
    metrics,
    run_train,
    tiny_overrides,
    train_command,
)
from hieratok.metrics_file import read_records
from hieratok.train.checkpoint import DS_DIR, DS_TAG

def _wait_for_step(run_dir, step: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"run ended before step {step}: {proc.stderr.read()[-3000:]}")
        if (run_dir / "metrics.jsonl").exists() and metrics(run_dir) and metrics(run_dir)[-1]["step"] >= step:
            return
        time.sleep(0.05)
    raise AssertionError(f"no step {step} within {timeout}s")


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
    seconds = [r["train_seconds"] for r in metrics(run_dir)]  # the resumed part counts on from the checkpoint's
    assert all(later > earlier for earlier, later in zip(seconds, seconds[1:])), seconds
    a, b = exported(reference_run), exported(run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert_epoch_seen_once(run_dir)


# (backend, ZeRO stage, first world size, second world size, loader workers, how the first part stops):
# every backend and ZeRO stage, both directions, both stops and both worker counts, in 6 runs
ELASTIC = [
    ("ddp", 2, 2, 1, 0, "stop_at_step"),
    ("fsdp", 2, 2, 1, 2, "stop_at_step"),
    ("fsdp", 2, 1, 2, 0, "signal"),
    ("deepspeed", 1, 1, 2, 2, "signal"),
    ("deepspeed", 2, 2, 1, 0, "signal"),
    ("deepspeed", 3, 2, 1, 2, "stop_at_step"),  # stop_at_step: the ZeRO-3 drift below grows with the steps after it
]


@pytest.mark.parametrize("backend,zero,first,second,workers,stop", ELASTIC,
                         ids=[f"{b}{z if b == 'deepspeed' else ''}-{f}to{s}-w{w}-{stop}" for b, z, f, s, w, stop in ELASTIC])
def test_elastic_resume(tmp_path, reference_run, embedded_mds, backend, zero, first, second, workers, stop):
    run_dir = tmp_path / "run"
    common = {"dist.backend": backend, "dist.zero_stage": zero, "data.num_workers": workers}
    if stop == "stop_at_step":
        run_train(run_dir, tiny_overrides(embedded_mds, **common, **{"train.stop_at_step": 10}), nproc=first)
    else:  # SIGTERM while the save of step 6 is held open (tests/fault_cli.py): the stop is that save's step
        run = HeldRun(tmp_path, run_dir, tiny_overrides(embedded_mds, **common, **{"checkpoint.every_steps": 3}),
                      hold="checkpoint:2", nproc=first)
        run.held("checkpoint")
        run.signal(signal.SIGTERM)  # to torchrun alone with 2 processes: it forwards it to both ranks
        rc, _ = run.finish()
        assert "stopped by SIGTERM" in run.stderr and "with a checkpoint" in run.stderr, run.stderr[-3000:]
        assert rc == 0 or first > 1, run.stderr[-3000:]  # torchrun exits 1 after a signal; its ranks exit 0
    stopped = latest_step(run_dir)
    assert stopped == (10 if stop == "stop_at_step" else 6)
    run_train(run_dir, tiny_overrides(embedded_mds, **common), nproc=second)
    resumed = [e for e in read_records(run_dir / "metrics.jsonl") if e.get("event") == "resumed"]
    assert [(e["step"], e["saved_world_size"], e["world_size"]) for e in resumed] == [(stopped, first, second)]
    if backend == "deepspeed" and first != second:  # DeepSpeed's checkpoint went through ds_to_universal
        assert resumed[0]["load"] == "universal"
        assert any((run_dir / "checkpoints" / f"step_{stopped:08d}" / DS_DIR / f"{DS_TAG}_universal").iterdir())
    else:
        assert resumed[0]["load"] == ("deepspeed" if backend == "deepspeed" else "dcp")
    # the global batch is unchanged, so every step sees the same samples as the fixed-world run
    ref_keys, got_keys = keys_by_step(reference_run), keys_by_step(run_dir)
    assert all(sorted(got_keys[s]) == sorted(ref_keys[s]) for s in range(1, 21))
    assert_epoch_seen_once(run_dir)
    if backend == "deepspeed" and zero == 3:
        # Measured: DeepSpeed's ZeRO-3 universal load (not ours: the same run resumed at its own world
        # size is exact) leaves the loss 1e-3 relative off the fixed-world trace within 10 steps. Exact
        # up to the resume; bounded after it, so that a worse drift, or a fix, shows here.
        got, ref = torch.tensor(losses(run_dir)), torch.tensor(losses(reference_run))
        torch.testing.assert_close(got[:stopped], ref[:stopped], rtol=1e-5, atol=0)
        drift = ((got - ref).abs() / ref.abs()).max().item()
        assert 1e-5 < drift < 5e-3, drift
    else:
        assert_same_training(run_dir, reference_run)
