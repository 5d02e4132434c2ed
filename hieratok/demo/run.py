"""The demo, step by step, through the same commands a user types (each one is printed and kept
for the report): prepare -> train single-scale and HieraTok -> eval -> latent analysis -> report."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


TOKENIZERS = {"single-scale (ViTok)": "tiny_single", "HieraTok": "tiny_hieratok"}


@dataclass(frozen=True)
class Budget:
    images: int | None  # embedded images to prepare (None: all)
    # steps of each tokenizer: the presets' own recipe, which beats patch-PCA on held-out images at 1500
    steps: int
    eval_images: int
    latent_images: int


FULL = Budget(images=None, steps=1500, eval_images=400, latent_images=400)
QUICK = Budget(images=640, steps=30, eval_images=48, latent_images=120)


class Demo:
    def __init__(self, out: Path, budget: Budget, nproc: int, inception: str | None, vgg: str | None):
        self.out, self.budget, self.nproc = out, budget, nproc
        self.inception, self.vgg = inception, vgg
        self.commands: list[str] = []
        self.timings: dict[str, float] = {}
        self.data = out / "data"

    # --- running commands ----------------------------------------------------------------------
    def _cli(self, args: list[str], nproc: int = 1) -> None:
        launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "-m", "hieratok"] \
            if nproc > 1 else [sys.executable, "-m", "hieratok"]
        shown = (["torchrun", f"--nproc_per_node={nproc}", "-m", "hieratok"] if nproc > 1 else ["hieratok"]) + args
        line = shlex.join(shown)
        self.commands.append(line)
        print(f"\n$ {line}", flush=True)
        # one thread a process when the processes share the cores, all of them for a single process
        threads = "1" if nproc > 1 else str(os.cpu_count() or 1)
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", threads))
        subprocess.run(launcher + args, env=env, check=True)

    def _timed(self, name: str, fn) -> None:
        t0 = time.perf_counter()
        fn()
        self.timings[name] = time.perf_counter() - t0

    # --- the steps -----------------------------------------------------------------------------
    def prepare(self) -> None:
        args = ["prepare", "--src", "embedded", "--out", str(self.data), "--format", "mds", "--resolution", "32",
                "--split-val", "0.1", "--workers", str(max(1, min(2, os.cpu_count() or 1)))]
        if self.budget.images:
            args += ["--limit", str(self.budget.images)]
        self._cli(args)

    def run_dir(self, preset: str) -> Path:
        return self.out / "runs" / preset

    def train(self) -> None:
        micro = 16 // self.nproc
        for preset in TOKENIZERS.values():
            self._cli(["train", "--config", f"tokenizer/{preset}", "--run-dir", str(self.run_dir(preset)),
                       f"data.path={self.data}", f"train.max_steps={self.budget.steps}",
                       "train.global_batch_size=16", f"train.micro_batch_size={micro}",
                       f"train.warmup_steps={max(1, min(50, self.budget.steps // 10))}",
                       f"checkpoint.every_steps={self.budget.steps}", "logging.every_steps=5"], nproc=self.nproc)

    def evaluate(self, weights, reference_stats: Path) -> dict[str, dict]:
        """Each tokenizer's metrics; rFID against the held-out images' Inception statistics, made once."""
        results = {}
        for name, preset in TOKENIZERS.items():
            out = self.out / f"eval_{preset}.json"
            self._cli(["eval", "--run-dir", str(self.run_dir(preset)), "--data", str(self.data),
                       "--metrics", "psnr,ssim,lpips,rfid", "--num", str(self.budget.eval_images),
                       "--inception-weights", str(weights.inception), "--vgg-weights", str(weights.vgg),
                       "--lpips-heads", str(weights.lpips_heads), "--reference-stats", str(reference_stats),
                       "--out", str(out)])
            results[name] = json.loads(out.read_text())
        return results
