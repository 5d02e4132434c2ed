"""Run `hieratok train` the way users do (a process, or torchrun with 2 gloo processes), to the end
or live (HeldRun: to be signalled or killed at an event), and read back what the run directory
contract promises: metrics.jsonl, checkpoints/, export/, key logs."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from safetensors.torch import load_file

from hieratok.metrics_file import read_records

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tokenizer" / "tiny_hieratok.yaml")
# every wait ends on an event (a hold's mark file, a line on stderr, a step in metrics.jsonl, the exit);
# this deadline only turns a broken run into a failure instead of a hung test, so it is generous
DEADLINE_S = 300


def tiny_overrides(data_path, **extra) -> list[str]:
    """20 steps of the tiny HieraTok at global batch 8; updates large enough to tell runs apart."""
    base = {
        "data.path": str(data_path), "data.num_workers": 0,
        "train.max_steps": 20, "train.global_batch_size": 8, "train.micro_batch_size": 4,
        "train.lr": 2e-3, "train.lr_reference_batch": 8, "train.warmup_steps": 2, "train.ema_decay": 0.9,
        # the tests' own recipe (cosine to 0, KL 1e-3), not the demo's: its constant lr amplifies float
        # reassociation (FSDP's reduce-scatter against one process) past the 1e-5 comparisons by step 18
        "train.min_lr_ratio": 0.0, "loss.kl": 1e-3,
        "logging.every_steps": 1, "logging.progress": "false", "logging.record_keys": "true",
        "checkpoint.every_steps": 0, "dist.mixed_precision": "fp32",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_command(run_dir, overrides: list[str], nproc: int = 1, config: str = TINY, faults: bool = False) -> list[str]:
    """`hieratok train` as users run it; with `faults`, through tests/fault_cli.py (HIERATOK_FAULT_* set)."""
    args = ["train", "--config", config, "--run-dir", str(run_dir), *overrides]
    entry = [str(REPO / "tests" / "fault_cli.py")] if faults else ["-m", "hieratok"]
    if nproc == 1:
        return [sys.executable, *entry, *args]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            f"--master_port={_free_port()}", *entry, *args]


def env(**extra: str) -> dict:
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", WANDB_MODE=e.get("WANDB_MODE", "disabled"), PYTHONUNBUFFERED="1", **extra)
    return e


def run_train(run_dir, overrides: list[str], nproc: int = 1, check: bool = True, timeout: int = 600,
              faults: dict[str, str] | None = None, config: str = TINY):
    """`faults`: HIERATOK_FAULT_* variables for tests/fault_cli.py, e.g. {"HIERATOK_FAULT_NAN_LOSS": "5"}."""
    proc = subprocess.run(train_command(run_dir, overrides, nproc, config, faults=bool(faults)), cwd=REPO,
                          env=env(**(faults or {})), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"hieratok train failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


class HeldRun:
    """A live `hieratok train` process, to be signalled or killed at an event; with `hold`, held in one
    phase by tests/fault_cli.py (whose mark file says when it is there)."""

    def __init__(self, tmp_path: Path, run_dir: Path, overrides: list[str], hold: str | None = None,
                 nproc: int = 1, **faults: str):
        self.run_dir, self.mark = run_dir, tmp_path / "hold.mark"
        self.out_path, self.err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
        if hold:
            faults.update(HIERATOK_FAULT_HOLD=hold, HIERATOK_FAULT_MARK=str(self.mark))
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.proc = subprocess.Popen(train_command(run_dir, overrides, nproc, faults=bool(faults)), cwd=REPO,
                                         stdout=out, stderr=err, env=env(**faults))

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_for(self, what: str, ready) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"the run ended ({self.proc.returncode}) before {what}:\n{self.stderr[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"no {what} within {DEADLINE_S} s:\n{self.stderr[-3000:]}")
            time.sleep(0.02)

    def held(self, phase: str) -> None:
        self.wait_for(f"hold '{phase}'", lambda: self.mark.exists())
        assert self.mark.read_text() == phase

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def noticed(self, sig: int) -> None:
        """The process has counted `sig` (its first-signal notice is on stderr)."""
        self.wait_for(f"{signal.Signals(sig).name} noticed", lambda: f"{signal.Signals(sig).name} received" in self.stderr)

    def kill(self) -> None:
        """SIGKILL the run and every process it started, as a lost node would be. torchrun starts its
        workers in sessions of their own, so a process-group kill would miss them: they are found
        through /proc before anything dies."""
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()

    def finish(self) -> tuple[int, float]:
        """(exit status, seconds it took to exit)."""
        t0 = time.monotonic()
        try:
            rc = self.proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"still running {DEADLINE_S} s after the signal:\n{self.stderr[-3000:]}") from None
        return rc, time.monotonic() - t0

    def events(self) -> list[dict]:
        path = self.run_dir / "metrics.jsonl"
        return [r for r in read_records(path) if "event" in r] if path.exists() else []


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # the name in (...) may hold spaces
            children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def metrics(run_dir) -> list[dict]:
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if "loss" in r]


def losses(run_dir) -> list[float]:
    return [float(r["loss"]) for r in metrics(run_dir)]


def exported(run_dir) -> dict:
    return load_file(str(Path(run_dir) / "export" / "model.safetensors"))


def keys_by_step(run_dir) -> dict[int, list[str]]:
    """step -> every key consumed by any rank at that step (all runs of this run dir)."""
    out: dict[int, list[str]] = {}
    for f in Path(run_dir).glob("keys_rank*.jsonl"):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            out.setdefault(rec["step"], []).extend(rec["keys"])
    return out


EPOCH_STEPS = 144 // 8  # the train split of `embedded_mds` at global batch 8


def assert_epoch_seen_once(run_dir, epochs: int = 1) -> None:
    """Each of the first `epochs` epochs saw every one of its 144 samples exactly once, over all ranks
    and all restarts of the run dir."""
    by_step = keys_by_step(run_dir)
    for e in range(epochs):
        keys = [k for s in range(e * EPOCH_STEPS + 1, (e + 1) * EPOCH_STEPS + 1) for k in by_step[s]]
        counts = Counter(keys)
        assert len(keys) == 144 and set(counts.values()) == {1}, (e, counts.most_common(3))


def latest_step(run_dir) -> int:
    name = (Path(run_dir) / "checkpoints" / "latest").read_text().strip()
    return int(name.split("_")[1])
