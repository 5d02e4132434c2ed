"""Images/s of `hieratok train` (tiny tokenizer, 1 process) against a bare hand-written loop with
the same model, loss, optimizer and data loader, measured side by side; plus seconds to save a
checkpoint and seconds to resume from one. Prints its figures last as one JSON line.

    python bench/trainer_overhead.py [--quick] [--steps N] [--rounds R]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hieratok import Tokenizer  # noqa: E402
from hieratok.config.loader import load_config  # noqa: E402
from hieratok.metrics_file import read_records  # noqa: E402

WARMUP = 5


def prepared_data(root: Path, n: int) -> Path:
    from data_pipeline.prepare.pipeline import run_prepare
    from data_pipeline.prepare.options import PrepareOptions

    out = root / "data"
    run_prepare(PrepareOptions(src="embedded", out=str(out), format="mds", resolution=32, limit=n,
                               samples_per_shard=64, workers=2, progress=False))
    return out


def config(data: Path, steps: int, run_dir: Path | None = None):
    return load_config("configs/tokenizer/tiny_hieratok.yaml", [
        f"data.path={data}", "data.num_workers=0", f"train.max_steps={steps}", "train.global_batch_size=16",
        "train.micro_batch_size=16", "logging.every_steps=1", "logging.progress=false",
        f"checkpoint.every_steps={steps}", "dist.mixed_precision=fp32", "train.ema_decay=0.999",
    ])


def bare_loop(cfg, steps: int) -> float:
    """The loop a user would write by hand: same model, loss, AdamW, EMA and loader. Images/s."""
    from data_pipeline import build_loader

    torch.manual_seed(cfg.train.seed)
    model = Tokenizer(cfg.model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=1e-4)
    ema = [p.detach().clone() for p in model.parameters()]
    loader = build_loader(cfg.data, 0, 1, cfg.train.seed, batch_size=cfg.train.micro_batch_size, train=True)
    it, done, t0 = iter(loader), 0, None
    while done < steps:
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        x = batch["image"]
        recon, post = model(x)
        loss = (recon - x).abs().mean() + (recon - x).square().mean() + 1e-3 * post.kl()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1e-3)
        done += 1
        if done == WARMUP:
            t0 = time.perf_counter()
    return (steps - WARMUP) * x.shape[0] / (time.perf_counter() - t0)


def hieratok_train(cfg, run_dir: Path, steps: int) -> tuple[float, float]:
    """Images/s of the engine over the same steps (after warm-up) and the checkpoint save time."""
    from hieratok.train.entry import train

    train(cfg, run_dir)
    rows = read_records(run_dir / "metrics.jsonl")
    steps_rows = [r for r in rows if "images_per_s" in r and r["step"] > WARMUP]
    # per-step throughput is measured between log rows; the harmonic mean is total images / total time
    ips = len(steps_rows) / sum(1.0 / r["images_per_s"] for r in steps_rows)
    save = [r["seconds"] for r in rows if r.get("event") == "checkpoint_saved"][-1]
    return ips, save


def resume_seconds(cfg, run_dir: Path, steps: int) -> float:
    from omegaconf import OmegaConf

    from hieratok.train.entry import train

    cfg = OmegaConf.merge(cfg, {"train": {"max_steps": steps + 1}})
    train(cfg, run_dir)
    rows = read_records(run_dir / "metrics.jsonl")
    return [r["seconds"] for r in rows if r.get("event") == "resumed"][-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="30 steps, 1 round (< 1 minute on 2 idle cores)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    steps = args.steps or (30 if args.quick else 100)
    rounds = args.rounds or (1 if args.quick else 3)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = prepared_data(root, 256 if args.quick else 1024)
        bare, engine, saves, resumes = [], [], [], []
        for r in range(rounds):  # alternate, so machine load drifts hit both alike
            cfg = config(data, steps)
            bare.append(bare_loop(cfg, steps))
            ips, save = hieratok_train(cfg, root / f"run{r}", steps)
            engine.append(ips)
            saves.append(save)
            resumes.append(resume_seconds(cfg, root / f"run{r}", steps))
    result = {
        "steps": steps, "rounds": rounds, "batch": 16,
        "bare_images_per_s": statistics.median(bare), "hieratok_images_per_s": statistics.median(engine),
        "trainer_over_bare_throughput": statistics.median(engine) / statistics.median(bare),
        "checkpoint_save_s": statistics.median(saves), "checkpoint_resume_s": statistics.median(resumes),
    }
    print(f"bare loop {result['bare_images_per_s']:.1f} img/s, hieratok train {result['hieratok_images_per_s']:.1f} "
          f"img/s; save {result['checkpoint_save_s']:.3f} s, resume {result['checkpoint_resume_s']:.3f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
