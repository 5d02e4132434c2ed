"""What each preset costs on a CPU: steady-state images/s of `hieratok train` with the overrides that
make a cluster preset runnable on a laptop (small batches, no LPIPS / GAN / eval, fp32, one loader
worker), side by side in one run, and each preset's time per image against the tiny single-scale
tokenizer's. Prints its figures last as one JSON line (the README's "On a laptop" table).

    python bench/preset_cost.py [--quick] [--steps N] [--presets tokenizer/tiny_single,...]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRESETS = ["tokenizer/tiny_single", "tokenizer/tiny_hieratok", "tokenizer/cpu64_single", "tokenizer/vitok_s_b16",
           "tokenizer/hieratok_s_b16", "generator/tiny", "generator/lightningdit_b"]
# what a cluster preset needs to run a few steps on a laptop (tokenizers / generators alike)
LAPTOP = ["data.num_workers=1", "train.warmup_steps=1", "eval.every_steps=0", "logging.every_steps=1",
          "logging.progress=false", "logging.wandb.mode=disabled", "checkpoint.every_steps=0", "dist.backend=ddp",
          "dist.mixed_precision=auto"]
TOKENIZER_ONLY = ["loss.lpips.weight=0", "loss.gan.weight=0"]


def train_speed(run_dir: Path, config: str, overrides: list[str]) -> float:
    """Median images/s of the log rows after the first (start-up and first-step costs excluded)."""
    from hieratok.metrics_file import read_records

    cmd = [sys.executable, "-m", "hieratok", "train", "--config", config, "--run-dir", str(run_dir), *overrides]
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONWARNINGS="ignore")
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, text=True)
    speeds = [r["images_per_s"] for r in read_records(run_dir / "metrics.jsonl") if "images_per_s" in r][1:]
    return statistics.median(speeds)


def _data(tmp: Path, resolution: int) -> Path:
    out = tmp / f"images{resolution}"
    if not out.exists():
        subprocess.run([sys.executable, "-m", "hieratok", "prepare", "--src", "embedded", "--out", str(out),
                        "--format", "mds", "--resolution", str(resolution), "--limit", "192", "--workers", "2",
                        "--no-progress"], cwd=REPO, check=True, capture_output=True)
    return out


def _latents(tmp: Path, generator_cfg) -> Path:
    """A latent cache of a random-init tokenizer whose latent the generator models (speed only)."""
    import torch

    from hieratok.config.loader import load_config
    from hieratok.generator.latent_cache import encode_dataset
    from hieratok.tokenizer.model import Tokenizer

    grid, channels = generator_cfg.model.latent_grid, generator_cfg.model.latent_channels
    preset = "tokenizer/tiny_hieratok" if grid == 8 else "tokenizer/hieratok_s_b16"
    tokenizer_cfg = load_config(preset).model
    assert (tokenizer_cfg.image_size // tokenizer_cfg.patch_size, tokenizer_cfg.latent_channels) == (grid, channels)
    out = tmp / f"latents_{grid}x{channels}"
    if not out.exists():
        torch.manual_seed(0)
        Tokenizer(tokenizer_cfg).save_pretrained(tmp / f"tokenizer_{grid}")
        encode_dataset(str(tmp / f"tokenizer_{grid}"), str(_data(tmp, tokenizer_cfg.image_size)), str(out),
                       batch_size=16, num_workers=0)
    return out


def measure(tmp: Path, preset: str, steps: int) -> dict:
    from hieratok.config.loader import load_config

    cfg = load_config(preset)
    batch = 16 if ("tiny" in preset or "cpu64" in preset) else 4  # cluster presets: what fits a laptop
    common = [*LAPTOP, f"train.max_steps={steps}", f"train.global_batch_size={batch}",
              f"train.micro_batch_size={batch}"]
    if cfg.task == "tokenizer":
        extra = [*TOKENIZER_ONLY, f"data.path={_data(tmp, cfg.model.image_size)}"]
    else:
        extra = [f"data.path={_latents(tmp, cfg)}", "data.format=latent"]
    overrides = [*common, *extra]
    speed = train_speed(tmp / "runs" / preset.replace("/", "_"), preset, overrides)
    shown = [o for o in overrides if not o.startswith(("data.path=", "train.max_steps="))]
    return {"images_per_s": speed, "batch": batch, "overrides": shown}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the tiny presets only, 4 steps each")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--presets", default=None, help="comma list (default: the table's)")
    args = ap.parse_args()
    presets = args.presets.split(",") if args.presets else (PRESETS[:2] + ["generator/tiny"] if args.quick else PRESETS)
    steps = args.steps or (4 if args.quick else 6)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets:
            results[preset] = measure(Path(tmp), preset, steps)
            print(f"{preset:>26}: {results[preset]['images_per_s']:9.2f} images/s", flush=True)
    base = results.get("tokenizer/tiny_single", {}).get("images_per_s")
    for r in results.values():
        r["time_per_image_vs_tiny_single"] = base / r["images_per_s"] if base else None
    print(json.dumps({"steps": steps, "threads": os.environ.get("OMP_NUM_THREADS", "default"), "presets": results}))


if __name__ == "__main__":
    main()
