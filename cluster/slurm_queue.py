"""Whether SLURM still holds a job, so that `hieratok launch --wait` waits for SLURM, not for the first
sign of an end.

submitit takes a job for finished when a task has written its result, or when sacct shows a final
state. A job that loses a node breaks both: the task left on the other node fails in its collective
and writes an error result, sacct shows NODE_FAIL for that start, and a moment later SLURM has
requeued the job (same id), which then resumes and finishes. The controller's queue (`squeue`) is
what knows: the job is done when it no longer holds it as pending, running or requeued.
"""
from __future__ import annotations

import subprocess
import time

# squeue's states of a job that will still run, or is still running or winding down
QUEUED_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "COMPLETING", "CONFIGURING",
                 "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "SPECIAL_EXIT"}


def in_queue(job_id: str, timeout_s: float = 30) -> bool | None:
    """True while SLURM holds the job; False once it has left (or was never known); None when squeue
    cannot say (not installed, no answer), and the caller goes by submitit alone."""
    try:
        proc = subprocess.run(["squeue", "--noheader", "--states", "all", "--jobs", str(job_id), "--format", "%T"],
                              capture_output=True, text=True, timeout=timeout_s)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        # a job the controller has forgotten (after MinJobAge) is an "Invalid job id"
        return False if "invalid job id" in proc.stderr.lower() else None
    return any(state in QUEUED_STATES for state in proc.stdout.split())


def wait_until_out_of_queue(job_id: str, poll_s: float = 2.0) -> None:
    """Return once SLURM no longer holds the job (or squeue cannot tell)."""
    while in_queue(job_id):
        time.sleep(poll_s)
