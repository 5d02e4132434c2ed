"""Signals always work (issue 15): SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 stop a run in a data wait,
a periodic evaluation, a checkpoint write or setup, with a checkpoint when there is progress to
keep, within a bounded time; the same signal twice exits at once, even from native code.

Each test holds a real `hieratok train` process in one phase (tests/fault_cli.py), waits for the
phase's mark, signals it and reads the run dir. The exit bounds are loose on purpose: a held phase
would otherwise never end, so any bound tells a stop from a hang."""
import json
import signal
import subprocess
import sys
import textwrap

import pytest

from train_runs import REPO, HeldRun, assert_epoch_seen_once, env, latest_step, losses, metrics, run_train, tiny_overrides

EXIT_BOUND_S = 120


def _no_traceback(run: HeldRun) -> None:
    assert "Traceback" not in run.stderr, run.stderr[-3000:]


def test_a_signal_in_a_data_wait_checkpoints_the_last_step_and_resumes_exactly(tmp_path, reference_run, embedded_mds):
    """The 6th micro-batch (step 3's second, after one backward) never comes: the step is dropped and
    step 2 is saved as it stood when it ended, so the resumed run equals an uninterrupted one."""
    run_dir, overrides = tmp_path / "run", tiny_overrides(embedded_mds)
    run = HeldRun(tmp_path, run_dir, overrides, hold="data:6")
    run.held("data")
    run.signal(signal.SIGTERM)
    rc, seconds = run.finish()
    assert rc == 0 and seconds < EXIT_BOUND_S, run.stderr[-3000:]
    _no_traceback(run)
    assert "stopped by SIGTERM at step 2 with a checkpoint" in run.stderr
    assert latest_step(run_dir) == 2
    run_train(run_dir, overrides)
    assert losses(run_dir) == losses(reference_run)  # identical, not close
    assert_epoch_seen_once(run_dir)


def test_a_signal_during_setup_ends_it_without_a_checkpoint(tmp_path, embedded_mds):
    run_dir = tmp_path / "run"
    run = HeldRun(tmp_path, run_dir, tiny_overrides(embedded_mds), hold="setup")
    run.held("setup")
    run.signal(signal.SIGINT)
    rc, seconds = run.finish()
    assert rc == 0 and seconds < EXIT_BOUND_S, run.stderr[-3000:]
    _no_traceback(run)
    assert "stopped by SIGINT at step 0 without a checkpoint" in run.stderr
    assert not (run_dir / "checkpoints" / "latest").exists() and not (run_dir / "metrics.jsonl").exists()


def test_a_signal_during_periodic_eval_abandons_it_and_checkpoints(tmp_path, embedded_mds):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(embedded_mds, **{"eval.every_steps": 2, "eval.num_images": 16, "eval.batch_size": 8})
    run = HeldRun(tmp_path, run_dir, overrides, hold="eval")
    run.held("eval")
    run.signal(signal.SIGUSR1)
    rc, seconds = run.finish()
    assert rc == 0 and seconds < EXIT_BOUND_S, run.stderr[-3000:]
    _no_traceback(run)
    assert latest_step(run_dir) == 2 and max(r["step"] for r in metrics(run_dir)) == 2
    kinds = [(e["step"], e["event"]) for e in run.events()]
    assert (2, "eval_abandoned") in kinds and (2, "eval") not in kinds  # nothing partial is logged


def test_a_signal_during_a_checkpoint_write_lets_it_finish_then_stops(tmp_path, embedded_mds):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(embedded_mds, **{"checkpoint.every_steps": 2})
    run = HeldRun(tmp_path, run_dir, overrides, hold="checkpoint:1")
    run.held("checkpoint")
    run.signal(signal.SIGUSR2)
    rc, seconds = run.finish()
    assert rc == 0 and seconds < EXIT_BOUND_S, run.stderr[-3000:]
    _no_traceback(run)
    assert latest_step(run_dir) == 2 and max(r["step"] for r in metrics(run_dir)) == 2  # no step after it
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))


def test_with_two_ranks_a_signal_in_a_data_wait_exits_after_the_grace(tmp_path, embedded_mds):
    """torchrun forwards SIGTERM to both ranks, each stuck at its 3rd batch (step 3). Neither can know
    whether the other waits in a collective, so no checkpoint is agreed; each gives up its wait after
    the grace (1 s here, loop.STOP_GRACE_S) and leaves cleanly, as a requeue needs."""
    run_dir = tmp_path / "run"
    run = HeldRun(tmp_path, run_dir, tiny_overrides(embedded_mds), hold="data:3", nproc=2,
                  HIERATOK_FAULT_STOP_GRACE_S="1")
    run.held("data")
    run.signal(signal.SIGTERM)
    _, seconds = run.finish()  # torchrun itself ends with its SignalException
    assert seconds < EXIT_BOUND_S
    assert "stopped by SIGTERM at step 2 without a checkpoint of that step" in run.stderr, run.stderr[-3000:]
    assert "data error" not in run.stderr and not (run_dir / "checkpoints" / "latest").exists()
    assert json.loads(run.out_path.read_text().strip().splitlines()[-1])["preempted"] is True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the native hold locks a glibc pthread mutex")
def test_the_same_signal_twice_exits_at_once_even_from_native_code(tmp_path, embedded_mds):
    """The second checkpoint write (step 4) deadlocks in C, where no Python handler can run, as in a
    collective whose peer is gone. The first TERM is noticed, the second exits; `latest` stays 2."""
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(embedded_mds, **{"checkpoint.every_steps": 2})
    run = HeldRun(tmp_path, run_dir, overrides, hold="native:2")
    run.held("native")
    run.signal(signal.SIGTERM)
    run.noticed(signal.SIGTERM)
    run.signal(signal.SIGTERM)
    rc, seconds = run.finish()
    assert rc == 128 + signal.SIGTERM and seconds < EXIT_BOUND_S, run.stderr[-3000:]
    assert "SIGTERM again: exiting now" in run.stderr
    assert latest_step(run_dir) == 2 and (run_dir / "checkpoints" / ".tmp-step_00000004").exists()


_GUARD_ONLY = textwrap.dedent("""
    import time
    from hieratok.distributed.signals import PreemptionGuard
    guard = PreemptionGuard().install()
    print("ready", flush=True)
    while len(guard.received_all) < 2:
        time.sleep(0.01)
    print("both", [int(s) for s in guard.received_all], flush=True)
""")


def _guard_process():
    proc = subprocess.Popen([sys.executable, "-c", _GUARD_ONLY], cwd=REPO, env=env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _await_notice(proc, name: str) -> str:
    line = proc.stderr.readline()
    assert f"{name} received" in line, line
    return line


def test_a_second_sigint_exits_at_once_but_term_then_usr2_is_a_preemption():
    """Ctrl-C twice ends a run at once (130); submitit's preemption, TERM then USR2, is two first
    signals: both are recorded and the process goes on to checkpoint and requeue."""
    proc = _guard_process()
    proc.send_signal(signal.SIGINT)
    _await_notice(proc, "SIGINT")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=EXIT_BOUND_S) == 128 + signal.SIGINT
    proc.stdout.close()
    proc.stderr.close()

    proc = _guard_process()
    proc.send_signal(signal.SIGTERM)
    _await_notice(proc, "SIGTERM")
    proc.send_signal(signal.SIGUSR2)
    out, _ = proc.communicate(timeout=EXIT_BOUND_S)
    assert proc.returncode == 0 and f"both [{int(signal.SIGTERM)}, {int(signal.SIGUSR2)}]" in out
