"""`hieratok launch --wait` reports the requeues SLURM did, whoever caused them: from `sacct
--duplicates` (one row per start of the job), else from the run dir's `resumed` events, saying so.
sacct is a stub here (the real one is exercised by tests/test_slurm_training.py)."""
import json
import os
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from cluster.requeue_count import RunDirSnapshot, count_requeues, sacct_requeues
from hieratok.commands.launch import _wait_and_report

NAME = "hieratok-run"


def at(seconds_from_now: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds_from_now).strftime("%Y-%m-%dT%H:%M:%S")


@pytest.fixture
def fake_sacct(tmp_path, monkeypatch):
    """Put a `sacct` on PATH that prints `stdout` and exits with `code`; returns the setter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def set_output(stdout: str = "", code: int = 0, stderr: str = ""):
        (bin_dir / "out").write_text(stdout)
        (bin_dir / "err").write_text(stderr)
        script = bin_dir / "sacct"
        script.write_text(f"#!/bin/sh\ncat '{bin_dir}/out'\ncat '{bin_dir}/err' >&2\nexit {code}\n")
        script.chmod(0o755)
    return set_output


def rows(*states, job="7", name=NAME, first_submit=0.0) -> str:
    return "".join(f"{job}|{name}|{state}|{at(first_submit + 30 * i)}\n" for i, state in enumerate(states))


def write_events(run_dir: Path, *events: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "metrics.jsonl").open("a") as f:
        for step, event in enumerate(events):
            f.write(json.dumps({"step": step, "event": event} if event != "log" else {"step": step, "loss": 1.0}) + "\n")


@pytest.mark.parametrize("states, requeues", [
    (["COMPLETED"], 0),
    (["REQUEUED", "REQUEUED", "COMPLETED"], 2),  # submitit's checkpoint() on USR2, then `scontrol requeue`
    (["PREEMPTED", "NODE_FAIL", "RUNNING"], 2),  # requeued by SLURM itself; the last start still running
    (["REQUEUED", "PENDING"], 1),
    (["REQUEUED", "REQUEUED"], 2),  # the last requeue's next row not recorded yet (seen with array tasks)
    (["CANCELLED by 0"], 0),
])
def test_requeues_are_the_rows_of_the_job_minus_one(fake_sacct, states, requeues):
    fake_sacct(rows(*states))
    assert sacct_requeues("7", NAME, time.time()) == requeues


def test_rows_of_another_job_with_the_same_id_are_not_counted(fake_sacct):
    """Job ids start again at 1 when a controller loses its state: older rows with the id are not ours."""
    old = rows("COMPLETED", "REQUEUED", "COMPLETED", first_submit=-3 * 86400)
    other_name = rows("REQUEUED", name="someone-else")
    array_task = rows("REQUEUED", job="7_1")
    fake_sacct(old + other_name + array_task + rows("REQUEUED", "COMPLETED"))
    assert sacct_requeues("7", NAME, time.time()) == 1


def test_without_sacct_the_run_dir_counts_resumes_since_submission(fake_sacct, tmp_path):
    fake_sacct(stderr="sacct: error: Slurm accounting storage is disabled", code=1)
    run_dir = tmp_path / "run"
    write_events(run_dir, "log", "resumed", "log")  # an earlier launch on this run dir resumed once
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "latest").write_text("step_00000002")
    snapshot = RunDirSnapshot.take(run_dir)
    # this launch: the first start resumes the earlier launch's checkpoint (no requeue), two requeues
    write_events(run_dir, "resumed", "log", "resumed", "log", "resumed", "checkpoint_saved")
    count = count_requeues("7", NAME, snapshot)
    assert (count.count, count.source) == (2, "run dir")
    assert "accounting storage is disabled" in count.note and "metrics.jsonl" in count.note


def test_a_fresh_run_dir_counts_every_resume(fake_sacct, tmp_path):
    fake_sacct("")  # sacct answers, but knows nothing of the job (e.g. slurmdbd lost it)
    run_dir = tmp_path / "run"
    snapshot = RunDirSnapshot.take(run_dir)
    write_events(run_dir, "log", "resumed", "log")
    count = count_requeues("7", NAME, snapshot)
    assert (count.count, count.source) == (1, "run dir") and "no record of job 7" in count.note


class FakeJob:
    def __init__(self, job_id, outcome=None, error=None):
        self.job_id, self.outcome, self.error = job_id, outcome, error

    def results(self):
        if self.error:
            raise self.error
        return [self.outcome]


def test_launch_wait_reports_slurm_requeues_not_only_submitits(fake_sacct, tmp_path, capsys):
    run_dir = tmp_path / "run"
    plan = SimpleNamespace(job_name=NAME, runs=[SimpleNamespace(name="run", run_dir=run_dir)])
    snapshot = RunDirSnapshot.take(run_dir)
    fake_sacct(rows("REQUEUED", "COMPLETED"))  # an `scontrol requeue`: submitit's own count stays 0
    outcome = SimpleNamespace(step=600, requeues=0)
    assert _wait_and_report([FakeJob("7", outcome)], plan, "slurm", [snapshot]) == 0
    assert capsys.readouterr().out == f"job 7 (run) finished at step 600 after 1 requeue(s): {run_dir}\n"

    write_events(run_dir, "log", "resumed")
    fake_sacct(stderr="sacct: error: Problem talking to the database: Connection refused", code=1)
    assert _wait_and_report([FakeJob("7", outcome)], plan, "slurm", [snapshot]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"job 7 (run) finished at step 600 after 1 requeue(s): {run_dir}"
    assert out[1].startswith("  requeue count of job 7: sacct failed: sacct: error: Problem talking to the database")
    assert "counted from the 'resumed' events in the run dir's metrics.jsonl" in out[1]


def test_a_failed_slurm_job_reports_its_requeues_too(fake_sacct, tmp_path, capsys):
    plan = SimpleNamespace(job_name=NAME, runs=[SimpleNamespace(name="run", run_dir=tmp_path / "run")])
    fake_sacct(rows("PREEMPTED", "PREEMPTED", "FAILED"))
    code = _wait_and_report([FakeJob("7", error=RuntimeError("boom"))], plan, "slurm",
                            [RunDirSnapshot.take(tmp_path / "run")])
    assert code == 1 and capsys.readouterr().err == "job 7 (run) failed after 2 requeue(s): boom\n"
