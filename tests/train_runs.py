"""Run `hieratok train` the way users do (a process, or torchrun with 2 gloo processes) and read
back what the run directory contract promises: metrics.jsonl, checkpoints/, export/, key logs."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tokenizer" / "tiny_hieratok.yaml")


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


def latest_step(run_dir) -> int:
    name = (Path(run_dir) / "checkpoints" / "latest").read_text().strip()
    return int(name.split("_")[1])
