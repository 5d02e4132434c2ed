"""Fault-injection soak (issue 15): a 2-process FSDP2 training stopped at random moments, SIGTERM and
SIGKILL mixed, `--cycles` times; each time resumed, sometimes at world size 1, then run to the end.
Prints one JSON line: cycles survived, sample keys lost and duplicated against an uninterrupted run
(per step: every step must see the samples it sees uninterrupted), and whether the final exported
weights equal that run's (with their max abs difference). The goal: every cycle, 0 lost, 0 duplicated.

    python bench/soak.py [--quick] [--cycles N] [--seed S]

A moment is random but tied to events, never to assumed step times: the signal goes when the run has
logged a step a random 1-3 steps past where the previous cycle stopped, after a random extra delay.
A cycle survives when `latest` then names a complete checkpoint (a SIGTERM's being of the last logged
step: nothing lost) and the next run resumes from it and trains on.
"""
from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
from hieratok.metrics_file import read_metrics, read_records  # noqa: E402
from hieratok.train.checkpoint import CheckpointDirs  # noqa: E402
from test_train_equivalence import WEIGHT_ATOL  # noqa: E402
from train_runs import HeldRun, exported, keys_by_step, losses, run_train, tiny_overrides  # noqa: E402

EVERY = 2          # periodic checkpoints: a SIGKILL loses at most this many steps
STEPS_A_CYCLE = 5  # room per cycle (1-3 steps to the target, the delay, the stop) so every cycle lands mid-run
OTHER_WORLD = 0.3  # the chance that a cycle runs at world size 1 instead of 2
MAX_DELAY_S = 0.5


def _last_step(run_dir: Path) -> int:
    rows = read_metrics(run_dir) if (run_dir / "metrics.jsonl").exists() else []
    return rows[-1]["step"] if rows else 0


def _resumed_from(run_dir: Path) -> str | None:
    """The checkpoint the newest run resumed from (None: it started afresh; a resume drops the rows
    after its checkpoint, so the last `resumed` event is its own)."""
    resumed = [r for r in read_records(run_dir / "metrics.jsonl") if r.get("event") == "resumed"]
    return Path(resumed[-1]["path"]).name if resumed else None


def _key_diff(reference: Path, run_dir: Path) -> tuple[int, int]:
    """(lost, duplicated): per step, the reference's keys the run never saw, and the keys it saw more
    often than the reference did (a step's record is the one of the run that kept it)."""
    ref, got = keys_by_step(reference), keys_by_step(run_dir)
    lost = sum(sum((Counter(ref[s]) - Counter(got.get(s, []))).values()) for s in ref)
    duplicated = sum(sum((Counter(got[s]) - Counter(ref.get(s, []))).values()) for s in got)
    return lost, duplicated


def _stop(run: HeldRun, sig: int) -> None:
    if sig == signal.SIGKILL:
        run.kill()
    else:  # to the top process only: torchrun forwards it, and a second TERM would mean "exit now"
        run.signal(sig)
        run.finish()


def run_soak(data: Path, root: Path, cycles: int = 20, seed: int = 0, backend: str = "fsdp") -> dict:
    t0 = time.monotonic()
    rng = random.Random(seed)
    steps = STEPS_A_CYCLE * cycles + 2 * EVERY + 4
    overrides = tiny_overrides(data, **{"train.max_steps": steps, "checkpoint.every_steps": EVERY,
                                        "checkpoint.keep_last": 2, "dist.backend": backend, "dist.zero_stage": 2})
    reference, run_dir = root / "reference", root / "run"
    run_train(reference, overrides, nproc=2)

    history = []  # one entry a cycle; "ok" once the next run has resumed from the cycle's `latest`
    for cycle in range(cycles):
        world = 1 if rng.random() < OTHER_WORLD else 2
        sig = rng.choice([signal.SIGTERM, signal.SIGKILL])
        target = _last_step(run_dir) + rng.randint(1, 3)  # earlier runs' rows end before it: it is this run's
        logs = root / f"cycle{cycle:02d}"
        logs.mkdir()
        run = HeldRun(logs, run_dir, overrides, nproc=world)
        run.wait_for(f"step {target}", lambda: _last_step(run_dir) >= target)
        if history:
            history[-1]["ok"] &= _resumed_from(run_dir) == history[-1]["latest"]
        time.sleep(rng.uniform(0, MAX_DELAY_S))  # the moment within a step (or a save)
        if run.proc.poll() is not None:
            raise AssertionError(f"cycle {cycle}: the run ended before the signal:\n{run.stderr[-3000:]}")
        _stop(run, sig)
        latest = CheckpointDirs(run_dir, 1).latest()  # raises if `latest` names an incomplete checkpoint
        at = _last_step(run_dir)
        history.append({"world": world, "signal": signal.Signals(sig).name, "at_step": at,
                        "latest": latest and latest.name,
                        # a SIGTERM checkpoints the last step it logged: nothing is lost
                        "ok": sig == signal.SIGKILL or (latest is not None and latest.name == f"step_{at:08d}")})

    run_train(run_dir, overrides, nproc=2)  # on to the end, at the reference's world size
    if history:
        history[-1]["ok"] &= _resumed_from(run_dir) == history[-1]["latest"]
    lost, duplicated = _key_diff(reference, run_dir)
    a, b = exported(reference), exported(run_dir)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a) if a.keys() == b.keys() else float("inf")
    worlds = [h["world"] for h in history] + [2]
    return {
        "cycles": cycles, "cycles_survived": sum(h["ok"] for h in history),
        "keys_lost": lost, "keys_duplicated": duplicated,
        "weights_equal": diff <= WEIGHT_ATOL, "weights_max_abs_diff": diff, "weights_atol": WEIGHT_ATOL,
        "losses_identical": losses(run_dir) == losses(reference),
        "sigterm": sum(h["signal"] == "SIGTERM" for h in history),
        "sigkill": sum(h["signal"] == "SIGKILL" for h in history),
        "resumes_at_another_world_size": sum(x != y for x, y in zip(worlds, worlds[1:])),
        "steps": steps, "backend": backend, "seed": seed, "wall_s": round(time.monotonic() - t0, 1),
        "history": [f"{h['signal']}@{h['at_step']}/w{h['world']}->{h['latest']}{'' if h['ok'] else ' FAILED'}"
                    for h in history],
    }


def _prepared_data(root: Path) -> Path:
    """The test suite's `embedded_mds`: 144 training crops of 32 px (18 steps an epoch at batch 8)."""
    from data_pipeline.prepare.options import PrepareOptions
    from data_pipeline.prepare.pipeline import run_prepare

    out = root / "data"
    run_prepare(PrepareOptions(src="embedded", out=str(out), format="mds", resolution=32, limit=192,
                               samples_per_shard=8, split_val=0.25, workers=2, progress=False))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 cycles (about a minute on 2 idle cores)")
    ap.add_argument("--cycles", type=int, default=None)
    ap.add_argument("--seed", type=int, default=1, help="1: its 3 quick cycles hold both signals and both world sizes")
    ap.add_argument("--backend", default="fsdp", choices=["fsdp", "deepspeed"])
    args = ap.parse_args()
    cycles = args.cycles if args.cycles is not None else (3 if args.quick else 20)
    with tempfile.TemporaryDirectory() as tmp:
        result = run_soak(_prepared_data(Path(tmp)), Path(tmp), cycles, args.seed, args.backend)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
