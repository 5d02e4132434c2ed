"""Run monitoring on rank 0: metrics.jsonl, Weights & Biases, TensorBoard, and a progress bar.

The W&B run id is created once and stored in every checkpoint, so a resumed run continues the
same W&B run (online mode; offline runs cannot be resumed by W&B, see wandb#2423, so each
offline resume writes a new offline run folder that `wandb sync` uploads separately).
Nothing from the environment is written to the run dir, so WANDB_API_KEY never lands there.

TensorBoard (`logging.tensorboard: true`) gets the same scalars and image grids in run_dir/tensorboard;
a resumed run purges the events after its checkpoint's step, as metrics.jsonl drops those records.
"""
from __future__ import annotations

import json
import math
import secrets
import string
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from hieratok.metrics_file import truncate_after


class Monitor:
    def __init__(self, cfg, run_dir: Path, is_main: bool, start_step: int, wandb_run_id: str | None):
        self.cfg, self.is_main = cfg, is_main
        self.path = run_dir / "metrics.jsonl"
        self.every = max(1, cfg.logging.every_steps)
        self.wandb = None
        self.tensorboard = None
        self.wandb_run_id = wandb_run_id
        # decided from the config, the same on every rank: making a grid is a collective under FSDP2
        self.wants_images = cfg.logging.wandb.mode != "disabled" or cfg.logging.tensorboard
        self.bar = None
        self._interval_start = time.perf_counter()
        self._interval_samples = 0
        self._interval_data_wait = 0.0
        if not is_main:
            return
        truncate_after(self.path, start_step)  # a resumed run rewrites the steps it lost
        if cfg.logging.wandb.mode != "disabled":
            self._init_wandb(run_dir)
        if cfg.logging.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"), purge_step=start_step + 1 if start_step else None)
        if cfg.logging.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=cfg.train.max_steps, initial=start_step, desc=f"train {cfg.task}",
                            dynamic_ncols=True, mininterval=1.0)

    def _init_wandb(self, run_dir: Path) -> None:
        import wandb

        w = self.cfg.logging.wandb
        if self.wandb_run_id is None:  # W&B's own id alphabet; created once, then kept in checkpoints
            self.wandb_run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
        self.wandb = wandb.init(project=w.project, entity=w.entity, name=w.name, id=self.wandb_run_id,
                                resume="allow", mode=w.mode, dir=str(run_dir),
                                config=OmegaConf.to_container(self.cfg, resolve=True))

    def add_interval(self, samples: int, data_wait_s: float) -> None:
        self._interval_samples += samples
        self._interval_data_wait += data_wait_s

    def should_log(self, step: int) -> bool:
        return step % self.every == 0 or step == self.cfg.train.max_steps

    def log(self, step: int, samples_seen: int, scalars: dict[str, float]) -> None:
        """Write one metrics row (rank 0), and reset the throughput interval on every rank."""
        now = time.perf_counter()
        elapsed = max(now - self._interval_start, 1e-9)
        row = {"step": step, "samples_seen": samples_seen, **scalars,
               "images_per_s": self._interval_samples / elapsed,
               "data_wait_fraction": min(1.0, self._interval_data_wait / elapsed)}
        self._interval_start, self._interval_samples, self._interval_data_wait = now, 0, 0.0
        if not self.is_main:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({k: _jsonable(v) for k, v in row.items()}) + "\n")
        self.log_scalars(step, row)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{scalars.get('loss', float('nan')):.4f}", refresh=False)

    def advance(self, step: int) -> None:
        if self.bar is not None:
            self.bar.update(step - self.bar.n)

    def log_scalars(self, step: int, scalars: dict) -> None:
        """(rank 0) W&B and TensorBoard; metrics.jsonl has its own rows."""
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)
        if self.tensorboard is not None:
            for k, v in scalars.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tensorboard.add_scalar(k, v, step)

    def log_images(self, step: int, name: str, grid: torch.Tensor) -> None:
        """(rank 0) an image grid [3, H, W] in [-1, 1]."""
        img = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        if self.wandb is not None:
            import wandb

            self.wandb.log({name: wandb.Image(img.permute(1, 2, 0).cpu().numpy())}, step=step)
        if self.tensorboard is not None:
            self.tensorboard.add_image(name, img.cpu(), step)

    def log_export(self, export_dir: Path, step: int) -> None:
        """(rank 0) the export folder as a W&B model artifact of this run."""
        if self.wandb is not None:
            import wandb

            artifact = wandb.Artifact(f"{self.cfg.task}-{self.wandb_run_id}", type="model",
                                      metadata={"step": step, "task": self.cfg.task})
            artifact.add_dir(str(export_dir), policy="immutable")  # referenced, not copied to a staging area
            self.wandb.log_artifact(artifact, aliases=["latest", f"step-{step}"])

    def log_event(self, step: int, event: dict) -> None:
        if self.is_main:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, **event}) + "\n")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)  # "nan" / "inf": strict JSON has no NaN
    return v
