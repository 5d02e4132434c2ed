"""Saving and restoring a whole run: tensors through the backend (DCP or DeepSpeed), plus the
loop state, the data-loader state, per-rank RNG states and the W&B run id."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from hieratok.train.checkpoint_dirs import STATE_FILE, CheckpointDirs, read_trainer_state, write_json_atomic
from hieratok.distributed.process_group import barrier
from hieratok.train.loop import LoopState
from hieratok.distributed.randomness import rng_state, set_rng_state


class Checkpointer:
    def __init__(self, cfg, run_dir: Path, info, backend, wandb_run_id_getter):
        self.cfg, self.info, self.backend = cfg, info, backend
        self.dirs = CheckpointDirs(run_dir, cfg.checkpoint.keep_last)
        self._wandb_run_id = wandb_run_id_getter
        self.last_save_s: float | None = None

    def save(self, state: LoopState, loader, boundary: dict | None = None) -> Path:
        """Collective: every rank calls it at the same step. `boundary` ({"data_state", "rng"}): the
        loader and RNG states taken when `state.step` ended, for a save made after a later step was
        cut short (the loader and the RNGs have moved on since)."""
        t0 = time.perf_counter()
        info = self.info
        if info.is_main:
            staging = self.dirs.prepare_staging(state.step)
            (staging / "rng").mkdir()
        barrier()
        staging = self.dirs.staging(state.step)
        self.backend.save(staging)
        if boundary is not None:
            rng, data_state = boundary["rng"], boundary["data_state"]
        else:
            rng, data_state = rng_state(), loader.state_dict() if hasattr(loader, "state_dict") else None
        torch.save(rng, staging / "rng" / f"rank_{info.rank}.pt")
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
        self.backend.load(checkpoint, saved["world_size"])
        if saved.get("data_state") is not None and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(saved["data_state"])
        rng_file = checkpoint / "rng" / f"rank_{self.info.rank}.pt"
        if saved["world_size"] == self.info.world_size and rng_file.exists():
            set_rng_state(torch.load(rng_file, weights_only=False))
        fields = {f.name for f in dataclasses.fields(LoopState)}
        return LoopState(**{k: v for k, v in saved.items() if k in fields}), saved
