"""`hieratok train --config FILE [key=value ...] [--run-dir DIR]` (distributed under torchrun)."""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path


def add_arguments(p) -> None:
    import argparse

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = ("presets and their keys:\n"
                "  hieratok config list                         the presets, with descriptions\n"
                "  hieratok config show PRESET [key=value ...]  a preset resolved, with types")
    p.add_argument("--config", help="preset or run config YAML (default: RUN_DIR/config.yaml when resuming)")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. train.max_steps=1000")
    p.add_argument("--run-dir", default=None, help="run directory (default: runs/<config name>); "
                   "resumes automatically when it holds a checkpoint")


def run(args) -> int:
    from data_pipeline.errors import DataError
    from hieratok.train.entry import train
    from hieratok.train.loop import NonFiniteLossError
    from hieratok.train.run_dir import config_for_run

    if args.run_dir is None and args.config is None:
        print("hieratok train: give --config FILE, or --run-dir DIR of a run to resume", file=sys.stderr)
        return 2
    run_dir = Path(args.run_dir or Path("runs") / Path(args.config).stem)
    cfg = config_for_run(run_dir, args.config, args.overrides)
    try:
        result = train(cfg, run_dir)
    except NonFiniteLossError as e:
        print(f"hieratok train: {e}", file=sys.stderr)
        return 3
    except DataError as e:  # too little data, a stalled loader, a bad shard: the message names the data
        print(f"hieratok train: data error: {e}", file=sys.stderr)
        return 2
    finally:
        from hieratok.distributed.process_group import shutdown

        shutdown()
    if os.environ.get("RANK", "0") != "0":
        return 0
    if not result.finished:
        logging.getLogger(__name__).info(_stopped(result))
    print(json.dumps(_summary(run_dir, result)))
    return 0


def _stopped(result) -> str:
    import signal

    cause = f"by {signal.Signals(result.signal).name}" if result.signal else "as asked (train.stop_at_step)"
    if result.saved:
        return f"stopped {cause} at step {result.step} with a checkpoint; rerun the same command to resume"
    return (f"stopped {cause} at step {result.step} without a checkpoint of that step; rerun the same "
            f"command to resume from the run dir's latest checkpoint, or to start over if it has none")


def _summary(run_dir: Path, result) -> dict:
    """The last line of output: where the run stands (the full record is run_dir/metrics.jsonl)."""
    from hieratok.metrics_file import read_records

    last = {}
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        rows = read_records(metrics)
        last = next((r for r in reversed(rows) if "loss" in r), {})
    export = run_dir / "export"
    return {"run_dir": str(run_dir), "step": result.step, "preempted": result.preempted, "stopped": result.stopped,
            "loss": last.get("loss"), "images_per_s": last.get("images_per_s"),
            "export": str(export) if export.exists() and result.finished else None}
