"""`hieratok export --run-dir DIR [--weights ema|raw] [--out DIR]`: a run's latest checkpoint ->
`model.safetensors` + `config.json`, loadable with `from_pretrained`, from any backend and world size."""
from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("--run-dir", required=True, help="run directory holding checkpoints/")
    p.add_argument("--weights", choices=["ema", "raw"], default="ema", help="EMA weights (default) or raw weights")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/export)")


def run(args) -> int:
    from hieratok.train.export import export_from_checkpoint

    out = export_from_checkpoint(args.run_dir, args.weights, args.out)
    print(out)
    return 0
