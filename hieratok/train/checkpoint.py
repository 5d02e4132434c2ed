"""Checkpoints: the one module that owns their layout on disk, and saving / restoring a whole run.

    RUN_DIR/checkpoints/
      step_XXXXXXXX/            one complete checkpoint
        trainer_state.json      loop state, data-loader state, W&B run id, world size, backend
        rng/rank_R.pt           each rank's RNG states (restored when the world size is the same)
        dcp/ | ds/ + extra.pt   the tensors, written by the backend (DCP for DDP/FSDP2, DeepSpeed)
      latest                    the name of the newest complete checkpoint
      .tmp-step_XXXXXXXX/       a checkpoint being written (removed at the next start)

A checkpoint is written into `.tmp-step_XXXXXXXX/` by every rank, then rank 0 renames it to
`step_XXXXXXXX/` and only then rewrites `latest` (via a temp file and os.replace). A run killed at
any point therefore leaves `latest` naming a complete checkpoint, or no checkpoint.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import torch
from torch.distributed.checkpoint import CheckpointException

from hieratok.config.errors import UserError
from hieratok.distributed.process_group import barrier
from hieratok.distributed.randomness import rng_state, set_rng_state
from hieratok.train.loop import LoopState

LATEST = "latest"
TMP_PREFIX = ".tmp-"
STATE_FILE = "trainer_state.json"
RNG_DIR = "rng"          # rng/rank_R.pt
DCP_DIR = "dcp"          # DDP / FSDP2 tensors (torch.distributed.checkpoint)
DS_DIR = "ds"            # DeepSpeed's own checkpoint folder, one tag:
DS_TAG = "state"         #   ds/state/ (and ds/state_universal/ once converted for another world size)
DS_EXTRA = "extra.pt"    # DeepSpeed runs: EMA and auxiliary models (rank 0)


def rng_file(checkpoint: Path, rank: int) -> Path:
    return checkpoint / RNG_DIR / f"rank_{rank}.pt"


def step_name(step: int) -> str:
    return f"step_{step:08d}"


class CheckpointUnreadable(Exception):
    """One checkpoint's tensors cannot be loaded (a file gone or truncated); the run may try an older one."""


def _first_line(e: BaseException) -> str:
    """The message that names the problem: DCP wraps a rank's error in a traceback, so its last line."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    named = [x for x in lines if "Error:" in x or "error:" in x]
    return (named[-1] if named else lines[-1] if lines else type(e).__name__)[:300]


class CheckpointError(UserError):
    """No checkpoint of a run dir can be read; the message lists each one and why."""


class CheckpointDirs:
    def __init__(self, run_dir: str | Path, keep_last: int):
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = max(1, keep_last)

    def latest(self) -> Path | None:
        """The checkpoint named by `latest`, if it is complete."""
        pointer = self.root / LATEST
        if not pointer.exists():
            return None
        path = self.root / pointer.read_text().strip()
        if not (path / STATE_FILE).exists():
            raise RuntimeError(f"{pointer} names {path}, which is not a complete checkpoint (no {STATE_FILE})")
        return path

    def candidates(self) -> list[Path]:
        """Where a resume may start, best first: `latest`, then the older complete checkpoints, newest first."""
        latest = self.latest()
        if latest is None:
            return []
        older = sorted((p for p in self.root.glob("step_*") if (p / STATE_FILE).exists() and p != latest), reverse=True)
        return [latest, *older]

    def staging(self, step: int) -> Path:
        return self.root / f"{TMP_PREFIX}{step_name(step)}"

    def prepare_staging(self, step: int) -> Path:
        """(rank 0) an empty staging folder for `step`."""
        tmp = self.staging(step)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def publish(self, step: int) -> Path:
        """(rank 0) rename the staged checkpoint into place, then point `latest` at it, then prune."""
        final = self.root / step_name(step)
        if final.exists():  # a re-save of the same step (e.g. preempted right after a periodic save)
            shutil.rmtree(final)
        os.replace(self.staging(step), final)
        tmp_pointer = self.root / f"{TMP_PREFIX}{LATEST}"
        tmp_pointer.write_text(final.name)
        os.replace(tmp_pointer, self.root / LATEST)
        self._prune(keep=final)
        return final

    def _prune(self, keep: Path) -> None:
        steps = sorted(p for p in self.root.glob("step_*") if p.is_dir())
        for old in steps[: max(0, len(steps) - self.keep_last)]:
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)

    def remove_stale_staging(self) -> list[Path]:
        """(rank 0, at start-up) delete half-written checkpoints left by a killed run."""
        stale = [p for p in self.root.glob(f"{TMP_PREFIX}*")] if self.root.exists() else []
        for p in stale:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        return stale


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_trainer_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / STATE_FILE).read_text())


class Checkpointer:
    def __init__(self, cfg, run_dir: Path, info, backend, wandb_run_id_getter):
        self.cfg, self.info, self.backend = cfg, info, backend
        self.dirs = CheckpointDirs(run_dir, cfg.checkpoint.keep_last)
        self._wandb_run_id = wandb_run_id_getter
        self.last_save_s: float | None = None
        self.last_load: str | None = None  # how the backend restored the last checkpoint ("dcp", "universal", ...)

    def save(self, state: LoopState, loader, boundary: dict | None = None) -> Path:
        """Collective: every rank calls it at the same step. `boundary` ({"data_state", "rng"}): the
        loader and RNG states taken when `state.step` ended, for a save made after a later step was
        cut short (the loader and the RNGs have moved on since)."""
        t0 = time.perf_counter()
        info = self.info
        if info.is_main:
            staging = self.dirs.prepare_staging(state.step)
            (staging / RNG_DIR).mkdir()
        barrier()
        staging = self.dirs.staging(state.step)
        self.backend.save(staging)
        if boundary is not None:
            rng, data_state = boundary["rng"], boundary["data_state"]
        else:
            rng, data_state = rng_state(), loader.state_dict() if hasattr(loader, "state_dict") else None
        torch.save(rng, rng_file(staging, info.rank))
        barrier()
        final = self.dirs.root / staging.name.removeprefix(".tmp-")
        if info.is_main:
            write_json_atomic(staging / STATE_FILE, {
                **dataclasses.asdict(state),
                "world_size": info.world_size,
                "backend": self.cfg.dist.backend,
                "zero_stage": self.cfg.dist.zero_stage,
                "data_state": data_state,
                "wandb_run_id": self._wandb_run_id(),
                "saved_at": time.time(),
            })
            final = self.dirs.publish(state.step)
        barrier()
        self.last_save_s = time.perf_counter() - t0
        return final

    def restore(self, checkpoint: Path, loader) -> tuple[LoopState, dict]:
        """Collective. Returns the loop state and the raw trainer state (for the W&B id)."""
        saved = read_trainer_state(checkpoint)
        if saved["backend"] != self.cfg.dist.backend:
            raise ValueError(
                f"{checkpoint} was written by dist.backend={saved['backend']}; resume it with the same backend "
                f"(this run has dist.backend={self.cfg.dist.backend})"
            )
        try:
            self.last_load = self.backend.load(checkpoint, saved["world_size"])
        # a damaged checkpoint fails in the backend's own ways; DCP's CheckpointException is a BaseException
        except (Exception, CheckpointException) as e:  # noqa: BLE001
            raise CheckpointUnreadable(_first_line(e)) from e
        if saved.get("data_state") is not None and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(saved["data_state"])
        rng = rng_file(checkpoint, self.info.rank)
        if saved["world_size"] == self.info.world_size and rng.exists():
            set_rng_state(torch.load(rng, weights_only=False))
        fields = {f.name for f in dataclasses.fields(LoopState)}
        return LoopState(**{k: v for k, v in saved.items() if k in fields}), saved
