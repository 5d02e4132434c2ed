"""How many times a launched job was requeued, whoever requeued it, for `hieratok launch --wait`.

The count the job itself carries (`TaskOutcome.requeues`) only sees the requeues that went through
submitit's `checkpoint()` (the time-limit signal). A job that SLURM requeues by itself (`scontrol
requeue`, a preemption, a node failure) resumes through the same run dir but never passes there,
so that count says 0 for a job that SLURM did requeue. Two records see every requeue:

- SLURM's accounting. `sacct --duplicates` keeps one row per start of the job (the same job id):
  a requeue ends a row (state REQUEUED, PREEMPTED, NODE_FAIL, ...) and opens the next. That is
  the source we trust: it is SLURM's own record, it counts requeues that happened before the
  first checkpoint, and it cannot mistake an earlier launch on the same run dir for a requeue.
- The run dir's metrics.jsonl: every start that finds a checkpoint writes a `resumed` event. It is
  the fallback when sacct cannot answer (no sacct, accounting disabled, slurmdbd down), and only a
  lower bound: a requeue before the first checkpoint resumes nothing and writes no event. Events
  of earlier launches on the same run dir are there too, so the count is taken relative to a
  snapshot made before submission.
"""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# sacct prints times in this machine's time zone; a controller whose clock is this far behind ours
# still has its rows counted. Only guards against job ids reused after the controller lost its state.
CLOCK_SKEW_S = 300


@dataclass
class RequeueCount:
    count: int
    source: str  # "sacct" or "run dir"
    note: str = ""  # why the count is not from sacct, when it is not


@dataclass
class RunDirSnapshot:
    """What the run dir holds before submission: `resumed` events so far, and whether a checkpoint
    exists (then the job's first start resumes too, and that is no requeue)."""
    run_dir: Path
    resumed_events: int
    had_checkpoint: bool
    submitted_at: float  # time.time() just before submission

    @classmethod
    def take(cls, run_dir: str | Path) -> RunDirSnapshot:
        run_dir = Path(run_dir)
        return cls(run_dir, count_resumed_events(run_dir), (run_dir / "checkpoints" / "latest").exists(),
                   time.time())

    def requeues_since(self) -> int:
        new = count_resumed_events(self.run_dir) - self.resumed_events
        return max(0, new - (1 if self.had_checkpoint else 0))


def count_resumed_events(run_dir: str | Path) -> int:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return 0
    n = 0
    for line in path.read_bytes().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line torn by a killed writer
        n += isinstance(record, dict) and record.get("event") == "resumed"
    return n


class SacctUnavailable(RuntimeError):
    pass


SACCT_FIELDS = ("JobID", "JobName", "State", "Submit")


def sacct_requeues(job_id: str, job_name: str, submitted_at: float, timeout_s: float = 30) -> int:
    """Requeues of SLURM job `job_id` (array tasks as '123_4') from `sacct --duplicates`: its rows,
    one per start, minus one; plus one when the last row is itself a requeue whose next row is not
    recorded yet. Raises SacctUnavailable with the reason when sacct cannot say."""
    cmd = ["sacct", "--duplicates", "--allocations", "--noheader", "--parsable2", "--jobs", str(job_id),
           "--format", ",".join(SACCT_FIELDS)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        raise SacctUnavailable("sacct is not installed here") from None
    except subprocess.TimeoutExpired:
        raise SacctUnavailable(f"sacct did not answer in {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        raise SacctUnavailable(f"sacct failed: {(proc.stderr or proc.stdout).strip() or f'exit {proc.returncode}'}")
    not_before = submitted_at - CLOCK_SKEW_S
    rows = parse_sacct_rows(proc.stdout, job_id, job_name, not_before)
    if not rows:
        since = datetime.fromtimestamp(not_before).isoformat(timespec="seconds")
        raise SacctUnavailable(f"sacct has no record of job {job_id} named {job_name} submitted since {since}")
    last_state = (rows[-1]["State"].split() or [""])[0]  # "CANCELLED by 0" -> "CANCELLED"
    return len(rows) - 1 + (1 if last_state.startswith("REQUEUE") else 0)


def parse_sacct_rows(text: str, job_id: str, job_name: str, not_before: float) -> list[dict]:
    """This launch's rows of `sacct --parsable2` output in SACCT_FIELDS order, oldest first: the job
    id and name match and it was submitted (or requeued) after `not_before`."""
    rows = []
    for line in text.splitlines():
        values = line.split("|")
        if len(values) != len(SACCT_FIELDS):
            continue
        row = dict(zip(SACCT_FIELDS, values))
        if row["JobID"] != str(job_id) or row["JobName"] != job_name:
            continue
        try:
            submitted = datetime.fromisoformat(row["Submit"]).timestamp()
        except ValueError:
            continue
        if submitted >= not_before:
            rows.append(row)
    return sorted(rows, key=lambda r: r["Submit"])  # ISO times; stable, so sacct's own order breaks ties


def count_requeues(job_id: str, job_name: str, snapshot: RunDirSnapshot) -> RequeueCount:
    """SLURM's count when sacct answers; else the run dir's, saying why."""
    try:
        return RequeueCount(sacct_requeues(job_id, job_name, snapshot.submitted_at), "sacct")
    except SacctUnavailable as e:
        return RequeueCount(snapshot.requeues_since(), "run dir",
                            f"{e}; counted from the 'resumed' events in the run dir's metrics.jsonl instead "
                            "(a requeue before the first checkpoint is not seen there)")
