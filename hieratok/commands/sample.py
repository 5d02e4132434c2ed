"""`hieratok sample --run-dir DIR --num N --cfg-scale S [...] --out samples.npz [--png-dir DIR]`.

Samples the generator exported in DIR/export with classifier-free guidance, decodes with the
tokenizer the export records (its weights hash is checked), and writes `arr_0` (uint8 NHWC, the ADM
evaluator's layout), `labels` and `metadata` (JSON: guidance scale and interval, steps, sampler,
seed, ...). Labels are balanced over the classes. Under torchrun the ranks share the work; the file
does not depend on the world size, and the same seed writes the same file.
"""
from __future__ import annotations

import json
import sys


def _interval(text: str) -> tuple[float, float]:
    import argparse

    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cfg-interval must be LO,HI (two numbers in [0, 1]); got {text!r}") from None
    return lo, hi


def add_arguments(p) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar (none is drawn when stderr is not a terminal)")
    p.add_argument("--run-dir", required=True, help="generator run dir (or its export dir)")
    p.add_argument("--num", type=int, required=True, help="number of images")
    p.add_argument("--cfg-scale", type=float, required=True, help="classifier-free guidance scale (1: none)")
    p.add_argument("--cfg-interval", type=_interval, default=(0.0, 1.0), metavar="LO,HI",
                   help="apply guidance only for LO <= t <= HI (t = 1 noise, 0 data; default 0,1)")
    p.add_argument("--steps", type=int, default=50, help="ODE steps (default 50)")
    p.add_argument("--sampler", choices=["euler", "heun"], default="heun", help="ODE integrator (default heun)")
    p.add_argument("--seed", type=int, default=0, help="sample i's noise depends on (seed, i) only (default 0)")
    p.add_argument("--batch-size", type=int, default=32, help="samples per batch (default 32)")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--png-dir", default=None, help="also write every image as a PNG here")


def run(args) -> int:
    from hieratok import progress

    progress.set_enabled(not args.no_progress)
    from hieratok.distributed.process_group import init_distributed
    from hieratok.generator.sample_run import sample_to_npz
    from hieratok.generator.tokenizer_ref import TokenizerMismatchError

    try:
        meta = sample_to_npz(args.run_dir, args.out, num=args.num, cfg_scale=args.cfg_scale,
                             cfg_interval=args.cfg_interval, steps=args.steps, sampler=args.sampler,
                             seed=args.seed, batch_size=args.batch_size, png_dir=args.png_dir)
    except (FileNotFoundError, TokenizerMismatchError, ValueError) as e:
        print(f"hieratok sample: {e}", file=sys.stderr)
        return 2
    if init_distributed().is_main:
        print(json.dumps({"out": args.out, **{k: meta[k] for k in ("num", "cfg_scale", "cfg_interval", "steps",
                                                                    "sampler", "seed")}}))
    return 0
