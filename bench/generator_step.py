"""Generator training images/s from the latent cache against encoding every batch on the fly with the
frozen tokenizer, side by side in one run.

    python bench/generator_step.py [--quick] [--tokenizer-config FILE] [--generator-config FILE]
                                   [--images N] [--batch-size B] [--steps S] [--rounds R] [--workers W]
                                   [--threads T]

Both paths run the generator Task exactly as the training engine calls it (loader batch ->
prepare_batch -> compute_loss -> backward -> AdamW step), on the same images: embedded crops
prepared at the tokenizer's resolution, and the latent cache `hieratok encode` makes of them. The
tokenizer is randomly initialised (speed does not depend on its weights). Rounds alternate between
the two paths and each keeps its best round, so a burst of load from other processes hurts both
alike; CPU ms per image (this process) is reported too, as a busy machine disturbs it less.
Prints its figures last, as one JSON line.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_pipeline import build_loader  # noqa: E402
from hieratok.config.loader import load_config  # noqa: E402
from hieratok.generator.latent_cache import encode_dataset  # noqa: E402
from hieratok.generator.task import GeneratorTask  # noqa: E402
from hieratok.tokenizer.model import Tokenizer  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Trainer:
    """One path: a task, its model and optimizer, and an endless stream of its loader's batches."""

    def __init__(self, cfg, batch_size: int):
        self.task = GeneratorTask(cfg)
        torch.manual_seed(0)
        self.model = self.task.build_model().to(DEVICE)
        self.task.to(DEVICE)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.loader = build_loader(cfg.data, 0, 1, 0, batch_size=batch_size, train=True)
        self._it = iter(self.loader)
        self.step_no = 0

    def _batch(self) -> dict:
        try:
            return next(self._it)
        except StopIteration:
            self._it = iter(self.loader)
            return next(self._it)

    def step(self) -> int:
        self.step_no += 1
        batch = self.task.prepare_batch(self._batch(), DEVICE)
        loss, _ = self.task.compute_loss(self.model, batch, self.step_no)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return len(batch["key"])

    def timed(self, steps: int) -> tuple[float, float]:
        """(images/s wall clock, DEVICE ms per image) over `steps` steps."""
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu, images = time.perf_counter(), time.process_time(), 0
        for _ in range(steps):
            images += self.step()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return images / wall, 1000 * cpu / images


def _prepare(work: Path, tokenizer_cfg, images: int, workers: int) -> tuple[Path, Path, Path]:
    from data_pipeline.prepare.pipeline import run_prepare
    from data_pipeline.prepare.options import PrepareOptions

    data, export, cache = work / "images", work / "tokenizer", work / "latents"
    run_prepare(PrepareOptions(src="embedded", out=str(data), format="mds", resolution=tokenizer_cfg.image_size,
                               limit=images, samples_per_shard=64, workers=max(1, workers), progress=False))
    torch.manual_seed(0)
    Tokenizer(tokenizer_cfg).save_pretrained(export)
    encode_dataset(str(export), str(data), str(cache), split="train", batch_size=32, num_workers=workers)
    return data, export, cache


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny configs, a small run (< 1 minute on 2 DEVICE cores)")
    p.add_argument("--tokenizer-config", default=None, help="default: tiny_hieratok (--quick) / hieratok_s_b16")
    p.add_argument("--generator-config", default=None, help="default: tiny (--quick) / lightningdit_b")
    p.add_argument("--images", type=int, default=None, help="embedded images prepared (default 64; --quick 32)")
    p.add_argument("--batch-size", type=int, default=None, help="micro batch (default 32; --quick 16)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per round (default 10; --quick 3)")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3; --quick 2)")
    p.add_argument("--workers", type=int, default=0,
                   help="loader workers (default 0: decoding runs in this process, so DEVICE ms counts all the work)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a shared machine, spinning OpenMP threads distort the figures)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    q = args.quick
    tok_path = args.tokenizer_config or ("configs/tokenizer/tiny_hieratok.yaml" if q else "configs/tokenizer/hieratok_s_b16.yaml")
    gen_path = args.generator_config or ("configs/generator/tiny.yaml" if q else "configs/generator/lightningdit_b.yaml")
    images, batch = args.images or (32 if q else 64), args.batch_size or (16 if q else 32)
    steps, rounds, workers = args.steps or (3 if q else 10), args.rounds or (2 if q else 3), args.workers
    tok_cfg = load_config(tok_path).model

    with tempfile.TemporaryDirectory(prefix="hieratok-bench-gen-") as tmp:
        data, export, cache = _prepare(Path(tmp), tok_cfg, images, workers)
        common = [f"data.num_workers={workers}", f"data.resolution={tok_cfg.image_size}", "data.split=train",
                  f"model.latent_grid={tok_cfg.image_size // tok_cfg.patch_size}",
                  f"model.latent_channels={tok_cfg.latent_channels}", "dist.mixed_precision=fp32"]
        paths = {
            "cache": Trainer(load_config(gen_path, [*common, f"data.path={cache}", "data.format=latent"]), batch),
            "on_the_fly": Trainer(load_config(gen_path, [*common, f"data.path={data}", "data.format=mds",
                                                         f"model.tokenizer={export}", f"model.stats_images={images}"]),
                                  batch),
        }
        for trainer in paths.values():
            trainer.timed(1)  # warm-up: first batches, allocator, kernel choice
        best = {name: (0.0, float("inf")) for name in paths}
        for _ in range(rounds):
            for name, trainer in paths.items():
                ips, cpu_ms = trainer.timed(steps)
                best[name] = (max(best[name][0], ips), min(best[name][1], cpu_ms))
    sig = lambda x: float(f"{x:.4g}")  # noqa: E731
    result = {
        "tokenizer_config": tok_path, "generator_config": gen_path, "device": DEVICE.type, "batch_size": batch, "threads": args.threads,
        "cache_images_per_s": sig(best["cache"][0]),
        "on_the_fly_images_per_s": sig(best["on_the_fly"][0]),
        "cache_cpu_ms_per_image": sig(best["cache"][1]),
        "on_the_fly_cpu_ms_per_image": sig(best["on_the_fly"][1]),
        "cache_over_on_the_fly": sig(best["cache"][0] / best["on_the_fly"][0]),
        "cache_over_on_the_fly_cpu": sig(best["on_the_fly"][1] / best["cache"][1]),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
