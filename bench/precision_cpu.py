"""What `dist.mixed_precision=bf16` costs a `hieratok train` on a CPU, against fp32, per backend, side
by side in one run. This is why `dist.mixed_precision: auto` (the presets' default) means fp32 on a
CPU and bf16 on CUDA, and why an explicit bf16 on a CPU warns. Prints its figures last as one JSON
line: steady-state images/s (the log rows after the first) and the fp32 / bf16 throughput ratio.

    python bench/precision_cpu.py [--quick] [--preset cpu64_single] [--steps N] [--batch B]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from preset_cost import train_speed  # noqa: E402  (one way to time a `hieratok train`)


def train(run_dir: Path, data: Path, preset: str, steps: int, batch: int, backend: str, precision: str) -> float:
    """Median images/s of the log rows after the first (start-up and first-step costs excluded)."""
    return train_speed(run_dir, f"configs/tokenizer/{preset}.yaml", [
        f"data.path={data}", f"train.max_steps={steps}", f"train.global_batch_size={batch}",
        f"train.micro_batch_size={batch}", "logging.every_steps=1", "logging.progress=false",
        "checkpoint.every_steps=0",
        "loss.lpips.weight=0", "loss.gan.weight=0", f"dist.backend={backend}", f"dist.mixed_precision={precision}",
        "train.ema_decay=0"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 steps a run (about a minute on 2 cores)")
    ap.add_argument("--preset", default="cpu64_single", help="tokenizer preset (e.g. hieratok_s_b16: slow)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    steps = args.steps or (4 if args.quick else 12)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        from hieratok.config.loader import load_config

        resolution = load_config(f"configs/tokenizer/{args.preset}.yaml").model.image_size
        subprocess.run([sys.executable, "-m", "hieratok", "prepare", "--src", "embedded", "--out", str(tmp / "data"),
                        "--format", "mds", "--resolution", str(resolution), "--limit", "256", "--workers", "2",
                        "--no-progress"], cwd=REPO, check=True, capture_output=True)
        speed = {}
        for backend in ("ddp", "fsdp"):
            for precision in ("fp32", "bf16"):
                speed[f"{backend}_{precision}"] = train(tmp / f"{backend}_{precision}", tmp / "data", args.preset,
                                                        steps, args.batch, backend, precision)
                print(f"{backend:>5} {precision}: {speed[f'{backend}_{precision}']:8.2f} images/s", flush=True)
    result = {"preset": args.preset, "steps": steps, "batch": args.batch,
              **{f"{k}_images_per_s": v for k, v in speed.items()},
              "ddp_fp32_over_bf16": speed["ddp_fp32"] / speed["ddp_bf16"],
              "fsdp_fp32_over_bf16": speed["fsdp_fp32"] / speed["fsdp_bf16"]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
