"""`hieratok ablate --config configs/ablations/NAME.yaml [--arms A,B] [--seeds 0,1,2] [--out DIR] [--quick]
[--address ADDR] [--no-progress]`."""
from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, help="ablation file (YAML): base config, arms, seeds, data; "
                   "or, with `task: generator`, a generator trained on a tokenizer ablation's arms (see configs/ablations/)")
    p.add_argument("--arms", default=None, help="comma list of arm names, a subset of the file's (default: all)")
    p.add_argument("--seeds", default=None, help="comma list of seeds, replacing the file's (e.g. 0,1,2)")
    p.add_argument("--out", default=None, help="output folder (default runs/ablations/NAME); run again to "
                   "finish what a killed ablation left unfinished")
    p.add_argument("--quick", action="store_true", help="the file's quick subset (2 arms x 1 seed, a few "
                   "steps): exercises the whole path in minutes")
    p.add_argument("--address", default=None,
                   help="join this Ray cluster (e.g. 10.0.0.1:6379 or 'auto'); default: a local Ray on this machine")
    p.add_argument("--no-progress", action="store_true", help="no progress bar of the runs (none when stderr "
                   "is not a terminal either)")


def run(args) -> int:
    from pathlib import Path

    from cluster.ablation import run_ablation
    from cluster.ablation_spec import load_ablation
    from cluster.generator_ablation import is_generator_ablation, load_generator_ablation, run_generator_ablation
    from hieratok import progress
    from hieratok.config.errors import ConfigError
    from hieratok.config.loader import resolve_preset_path

    progress.set_enabled(not args.no_progress)
    path = Path(args.config) if Path(args.config).exists() else resolve_preset_path(args.config)
    generator = is_generator_ablation(path)
    spec = load_generator_ablation(path) if generator else load_ablation(path)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()] if args.seeds else None
    except ValueError:
        raise ConfigError(f"--seeds must be a comma list of integers, got {args.seeds!r}") from None
    arms = [a.strip() for a in args.arms.split(",") if a.strip()] if args.arms else None
    out = args.out or f"runs/ablations/{spec.name}{'_quick' if args.quick else ''}"
    runner = run_generator_ablation if generator else run_ablation
    outcome = runner(spec, out, quick=args.quick, seeds=seeds, arms=arms, address=args.address)
    print(outcome.report.read_text())
    print(f"results: {outcome.results}\nreport: {outcome.report}")
    if outcome.failed:
        print("failed runs (run the same command again to retry them):\n  " + "\n  ".join(outcome.failed),
              file=sys.stderr)
        return 1
    return 0
