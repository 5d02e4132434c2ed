"""Failure handling: non-finite steps are reported and skipped, too many abort with the last good
checkpoint kept, a half-written checkpoint is never taken as latest (a kill inside a real save:
test_kill_during_save.py), W&B never sees the key."""
import json
import os
import signal
import warnings

import pytest
import torch

from train_runs import exported, latest_step, metrics, run_train, tiny_overrides
from hieratok.train.checkpoint import STATE_FILE, CheckpointDirs


def test_nan_at_step_k_is_reported_and_skipped(tmp_path, embedded_mds):
    run_dir = tmp_path / "run"
    proc = run_train(run_dir, tiny_overrides(embedded_mds, **{"train.max_steps": 8}),
                     faults={"HIERATOK_FAULT_NAN_LOSS": "5"})
    assert "non-finite loss or gradient at step 5" in proc.stdout + proc.stderr
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    events = [r for r in rows if r.get("event") == "nonfinite_step_skipped"]
    assert [e["step"] for e in events] == [5]
    by_step = {r["step"]: r for r in metrics(run_dir)}
    assert by_step[5]["loss"] == "nan" and by_step[5]["nonfinite_steps"] == 1
    assert by_step[8]["nonfinite_steps"] == 1 and isinstance(by_step[8]["loss"], float)


def test_too_many_nonfinite_steps_abort_keeping_last_good_checkpoint(tmp_path, embedded_mds):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(embedded_mds, **{"train.max_steps": 10, "checkpoint.every_steps": 2,
                                                "train.max_nonfinite_steps": 2})
    proc = run_train(run_dir, overrides, check=False, faults={"HIERATOK_FAULT_NAN_LOSS": "5,6"})
    assert proc.returncode == 3
    assert "2 non-finite steps in a row" in proc.stderr and "last at step 6" in proc.stderr
    assert "step_00000004" in proc.stderr  # names the checkpoint that is kept
    assert latest_step(run_dir) == 4


def test_stale_staging_is_never_latest_and_is_removed(tmp_path):
    dirs = CheckpointDirs(tmp_path, keep_last=2)
    for step in (1, 2, 3):
        staged = dirs.prepare_staging(step)
        (staged / STATE_FILE).write_text("{}")
        dirs.publish(step)
    assert dirs.latest().name == "step_00000003"
    assert sorted(p.name for p in dirs.root.glob("step_*")) == ["step_00000002", "step_00000003"]
    half = dirs.prepare_staging(4)
    (half / "dcp").mkdir()  # a save that died before publication
    assert dirs.latest().name == "step_00000003"
    assert dirs.remove_stale_staging() == [half] and not half.exists()


def test_wandb_offline_logs_and_never_records_the_api_key(tmp_path, embedded_mds, monkeypatch):
    run_dir = tmp_path / "run"
    secret = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    monkeypatch.setenv("WANDB_MODE", "offline")
    overrides = tiny_overrides(embedded_mds, **{"train.max_steps": 4, "logging.wandb.mode": "offline",
                                                "train.stop_at_step": 2})
    run_train(run_dir, overrides)
    first_id = json.loads((run_dir / "checkpoints" / "step_00000002" / STATE_FILE).read_text())["wandb_run_id"]
    run_train(run_dir, overrides)
    second_id = json.loads((run_dir / "checkpoints" / "step_00000004" / STATE_FILE).read_text())["wandb_run_id"]
    assert first_id and first_id == second_id  # the resumed run keeps its W&B run id
    assert list((run_dir / "wandb").glob(f"offline-run-*-{first_id}"))
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"API key leaked into {path}"


def test_preemption_guard_remembers_every_signal_and_forwards_usr2_first():
    from hieratok.distributed.signals import PreemptionGuard

    calls = []
    old = {s: signal.signal(s, lambda n, f: calls.append(n)) for s in (signal.SIGTERM, signal.SIGUSR2)}
    try:
        guard = PreemptionGuard().install()
        os.kill(os.getpid(), signal.SIGTERM)  # submitit's simulation: TERM, then the requeue signal
        os.kill(os.getpid(), signal.SIGUSR2)
        assert guard.requested and guard.received_all == [signal.SIGTERM, signal.SIGUSR2] and calls == []
        assert guard.forward_to_previous_handler()
        assert calls == [signal.SIGUSR2, signal.SIGTERM]
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def test_preemption_guard_off_the_main_thread_warns_instead_of_failing():
    import threading

    from hieratok.distributed.signals import PreemptionGuard

    caught, warned = [], []

    def body():  # pytest.warns in a thread would turn a missing warning into a thread error, not a failure
        with warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            caught.append(PreemptionGuard().install())
        warned.extend(str(r.message) for r in records if issubclass(r.category, UserWarning))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert caught and not caught[0].requested
    assert any("not on the main thread" in w for w in warned), warned


@pytest.mark.parametrize("backend", ["ddp", "deepspeed"])
def test_nan_only_in_the_discriminator_loss_skips_the_whole_step(tmp_path, embedded_mds, backend):
    """The tokenizer's gradients are finite, yet the step is flagged: its weights must not move (under
    DeepSpeed ZeRO-2 too, whose optimizer would otherwise apply a zero-gradient AdamW update)."""
    gan = {"loss.gan.weight": 0.1, "loss.gan.start_step": 0, "loss.gan.ramp_steps": 1, "train.ema_decay": 0,
           "train.min_lr_ratio": 1.0, "train.warmup_steps": 1, "dist.backend": backend, "dist.zero_stage": 2}
    run_train(tmp_path / "two", tiny_overrides(embedded_mds, **{"train.max_steps": 2, **gan}))
    proc = run_train(tmp_path / "three", tiny_overrides(embedded_mds, **{"train.max_steps": 3, **gan}),
                     faults={"HIERATOK_FAULT_NAN_AUX": "3"})
    assert "non-finite loss or gradient at step 3" in proc.stdout + proc.stderr
    after_two, after_three = exported(tmp_path / "two"), exported(tmp_path / "three")
    assert after_two.keys() == after_three.keys()
    assert [k for k in after_two if not torch.equal(after_two[k], after_three[k])] == []
    run_train(tmp_path / "four", tiny_overrides(embedded_mds, **{"train.max_steps": 3, **gan}))
    moved = exported(tmp_path / "four")  # without the fault, step 3 does change the weights
    assert any(not torch.equal(after_two[k], moved[k]) for k in after_two)
