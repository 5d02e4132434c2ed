"""`hieratok sweep`: a Ray Tune sweep with ASHA over any config keys; each trial a real training run."""
from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, help="sweep file (YAML): base config, search space, metric, ASHA "
                   "(see configs/sweeps/)")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster (e.g. 10.0.0.1:6379 or 'auto'); default: a local Ray on this machine")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep of the same name "
                   "(Tuner.restore); unfinished trials resume from their training checkpoints")


def run(args) -> int:
    from cluster.sweep import SweepInterrupted, run_sweep
    from cluster.sweep_spec import load_sweep

    spec = load_sweep(args.config)
    try:
        outcome = run_sweep(spec, address=args.address, resume=args.resume)
    except SweepInterrupted as e:
        print(f"hieratok sweep: {e}", file=sys.stderr)
        return 130
    print(outcome.markdown.read_text(), end="")
    print(f"results: {outcome.csv} and {outcome.markdown}")
    if outcome.best_config is not None:
        print(f"best config: {outcome.best_config}  (train it: hieratok train --config {outcome.best_config})")
    failed = [r["trial"] for r in outcome.rows if r["status"] == "error"]
    if failed:
        print(f"failed trials: {', '.join(failed)} (their errors are in {outcome.sweep_dir})")
    return 1 if failed or not outcome.rows else 0
