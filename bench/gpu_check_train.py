"""The training runs of bench/gpu_check.py: launched by the functions below, measured from inside.

Inside: run as the CLI is run (`python bench/gpu_check_train.py train ...`, or under torchrun), this is
`hieratok` unchanged plus measurements set from the environment, so that neither the config schema nor
the training loop carries a bench hook:

    GPU_CHECK_OUT=DIR           write DIR/rank<R>.json with this rank's figures (no variable: no measurement)
    GPU_CHECK_WARMUP=3          optimizer steps before timing starts (allocator, kernel choice, compilation)
    GPU_CHECK_CALIB=3           timed steps whose mean sizes the timed window ...
    GPU_CHECK_WINDOW_S=3        ... to about this many seconds (all ranks agree on the step count)
    GPU_CHECK_SYNC_STEPS=3      then this many steps (non-logging) under torch.cuda.set_sync_debug_mode("warn"),
                                counting the host syncs (CUDA only)
    GPU_CHECK_PROFILE_STEPS=3   then this many steps under torch.profiler (bench/gpu_check_profile.py);
                                one more (logging) step ends the run
    GPU_CHECK_DETERMINISTIC=1   torch.use_deterministic_algorithms(True, warn_only=True) (the resume round trip)

Timing: the device is synchronised at the window's borders only; images/s = global batch x timed steps /
the window's wall time (data waits included; their share is reported). Peak memory is
torch.cuda.max_memory_allocated() over the window. The run then ends as any run does (checkpoint, export).
"""
from __future__ import annotations

import collections
import functools
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from hieratok.cli import main
from hieratok.process_exit import exit_without_teardown
from hieratok.train.loop import TrainLoop

SYNC_WARNING = "synchronizing CUDA operation"  # what set_sync_debug_mode("warn") says at each host sync
BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def progress(msg: str) -> None:
    print(f"[gpu_check] {msg}", file=sys.stderr, flush=True)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class Probe:
    def __init__(self):
        self.out = os.environ.get("GPU_CHECK_OUT")
        self.warmup = max(1, _env_int("GPU_CHECK_WARMUP", 3))
        self.calib = max(1, _env_int("GPU_CHECK_CALIB", 3))
        self.window_s = float(os.environ.get("GPU_CHECK_WINDOW_S", 3.0))
        self.sync_steps = _env_int("GPU_CHECK_SYNC_STEPS", 3)
        self.profile_steps = _env_int("GPU_CHECK_PROFILE_STEPS", 0)
        self.timed_end: int | None = None
        self.counted: range = range(0)
        self.profiled: range = range(0)
        self.profiler = None
        self.timing, self.t0, self.data_wait = False, 0.0, 0.0
        self.result: dict = {}
        self.syncs: list[int] = []
        self.sites: collections.Counter = collections.Counter()
        self.profile: dict | None = None

    @staticmethod
    def _sync(loop) -> None:
        if loop.info.device.type == "cuda":
            torch.cuda.synchronize(loop.info.device)

    def _agree_min(self, loop, value: int) -> int:
        """The smallest value over the ranks (one collective, outside the timed steps)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return value
        t = torch.full((1,), value, dtype=torch.int64, device=loop.info.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return int(t.item())

    def step(self, fn, loop, step: int):
        if self.profiled and step == self.profiled.start:
            from gpu_check_profile import StepProfile

            self.profiler = StepProfile(loop.info.device)
            self.profiler.start()
        count = step in self.counted and loop.info.device.type == "cuda" and not loop.monitor.should_log(step)
        out = self._counted(fn, loop, step) if count else fn(loop, step)
        if self.profiler is not None and step == self.profiled[-1]:
            self.profile = self.profiler.stop(len(self.profiled))
            self.profiler = None
        self._after(loop, step)
        return out

    def _counted(self, fn, loop, step: int):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                out = fn(loop, step)
            finally:
                torch.cuda.set_sync_debug_mode(0)
        hits = [w for w in caught if SYNC_WARNING in str(w.message)]
        self.syncs.append(len(hits))
        self.sites.update(f"{_short(w.filename)}:{w.lineno}" for w in hits)
        return out

    def _after(self, loop, step: int) -> None:
        if step == self.warmup:
            self._sync(loop)
            if loop.info.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(loop.info.device)
            self.timing, self.data_wait, self.t0 = True, 0.0, time.perf_counter()
        if step == self.warmup + self.calib:
            self._sync(loop)
            per_step = (time.perf_counter() - self.t0) / self.calib
            paused = time.perf_counter()
            more = max(0, math.ceil(self.window_s / max(per_step, 1e-9)) - self.calib)
            more = self._agree_min(loop, min(more, 100_000))
            self.t0 += time.perf_counter() - paused  # the agreement is not a training step
            self.timed_end = step + more
            self.counted = range(self.timed_end + 1, self.timed_end + 1 + self.sync_steps)
            self.profiled = range(self.counted.stop, self.counted.stop + self.profile_steps)
            loop.cfg.train.max_steps = self.profiled.stop  # the last step logs
        if step == self.timed_end:
            self._sync(loop)
            seconds = time.perf_counter() - self.t0
            steps = step - self.warmup
            images = steps * loop.cfg.train.global_batch_size
            cuda = loop.info.device.type == "cuda"
            self.timing = False
            self.result = {
                "world_size": loop.info.world_size, "device": str(loop.info.device),
                "precision": loop.cfg.dist.mixed_precision,  # as the run resolved it (`auto` -> bf16 / fp32)
                "global_batch": loop.cfg.train.global_batch_size, "micro_batch": loop.cfg.train.micro_batch_size,
                "warmup_steps": self.warmup, "timed_steps": steps, "timed_s": seconds,
                "images_per_s": images / seconds, "step_ms": 1000 * seconds / steps,
                "data_wait_fraction": min(1.0, self.data_wait / seconds),
                "peak_memory_bytes": torch.cuda.max_memory_allocated(loop.info.device) if cuda else None,
            }

    def next_batch(self, fn, loop):
        batch, wait = fn(loop)
        if self.timing:
            self.data_wait += wait
        return batch, wait

    def write(self) -> None:
        if not self.out or not self.result:
            return
        cuda = self.result["device"].startswith("cuda")
        self.result.update(host_syncs_per_step=self.syncs if cuda else None,
                           host_sync_sites=dict(self.sites.most_common()) if cuda else None, profile=self.profile)
        rank = int(os.environ.get("RANK", "0"))
        Path(self.out).mkdir(parents=True, exist_ok=True)
        (Path(self.out) / f"rank{rank}.json").write_text(json.dumps(self.result))


def _short(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("hieratok", "data_pipeline", "site-packages"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + (anchor == "site-packages"):])
    return filename


def install(probe: Probe) -> None:
    step, next_batch = TrainLoop._train_step, TrainLoop._next_batch
    TrainLoop._train_step = functools.wraps(step)(lambda loop, s: probe.step(step, loop, s))
    TrainLoop._next_batch = functools.wraps(next_batch)(lambda loop: probe.next_batch(next_batch, loop))


# --- the launcher side (bench/gpu_check.py) ---------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_timeout(m, args) -> float:
    """A run's time limit: the mode's, cut so that no run outlasts the check's deadline by more than a minute."""
    return max(30.0, min(m.run_timeout_s, args.end_by - time.perf_counter()))


def train_process(name: str, config: str, run_dir: Path, overrides: list[str], procs: int, env: dict,
                  timeout_s: float) -> None:
    """`hieratok train` through bench/gpu_check_train.py, as users run it (torchrun for several processes)."""
    entry = [str(BENCH / "gpu_check_train.py"), "train", "--config", config, "--run-dir", str(run_dir), *overrides]
    launch = [] if procs == 1 else ["-m", "torch.distributed.run", f"--nproc_per_node={procs}",
                                    f"--master_port={_free_port()}"]
    log = run_dir.parent / f"{run_dir.name}.log"
    full_env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", **env}
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, *launch, *entry], cwd=REPO, env=full_env, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its workers: this run's own session
            proc.wait()
            raise RuntimeError(f"{name}: `hieratok train` ran past {timeout_s:.0f} s; its log: {log}") from None
    if code != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
        raise RuntimeError(f"{name}: `hieratok train` exited with {code}; the end of {log}:\n{tail}")


def run_overrides(data: Path, micro: int, procs: int, workers: int, precision: str) -> list[str]:
    return [f"data.path={data}", f"data.num_workers={workers}", f"train.micro_batch_size={micro}",
            f"train.global_batch_size={micro * procs}", "train.max_steps=1000000", "logging.every_steps=1000000",
            "logging.progress=false", "logging.wandb.mode=disabled", "checkpoint.every_steps=0", "eval.every_steps=0",
            f"dist.mixed_precision={precision}"]


def backend_overrides(label: str) -> list[str]:
    if label.startswith("deepspeed_zero"):
        return ["dist.backend=deepspeed", f"dist.zero_stage={label.removeprefix('deepspeed_zero')}"]
    return [f"dist.backend={label}"]


def measured_train(name: str, config: str, run_dir: Path, overrides: list[str], procs: int, m, args) -> dict:
    probe = run_dir.parent / f"{run_dir.name}.probe"
    for stale in (run_dir, probe):  # a fresh run: a checkpoint left there would be resumed
        shutil.rmtree(stale, ignore_errors=True)
    env = {"GPU_CHECK_OUT": str(probe), "GPU_CHECK_WARMUP": str(m.warmup), "GPU_CHECK_CALIB": str(m.calib),
           "GPU_CHECK_WINDOW_S": str(args.window_s or m.window_s), "GPU_CHECK_SYNC_STEPS": str(m.sync_steps),
           "GPU_CHECK_PROFILE_STEPS": str(m.profile_steps)}
    train_process(name, config, run_dir, overrides, procs, env, run_timeout(m, args))
    ranks = [json.loads(p.read_text()) for p in sorted(probe.glob("rank*.json"))]
    if len(ranks) != procs:
        raise RuntimeError(f"{name}: {len(ranks)} of {procs} ranks wrote their figures to {probe}")
    seconds, steps, batch = max(r["timed_s"] for r in ranks), ranks[0]["timed_steps"], ranks[0]["global_batch"]
    syncs = ranks[0]["host_syncs_per_step"]
    if syncs is not None:  # per counted step, the most any rank made
        syncs = [max(per_rank) for per_rank in zip(*(r["host_syncs_per_step"] for r in ranks))]
    peaks = [r["peak_memory_bytes"] for r in ranks if r["peak_memory_bytes"] is not None]
    out = {"images_per_s": batch * steps / seconds, "step_ms": 1000 * seconds / steps, "timed_steps": steps,
           "global_batch": batch, "precision": ranks[0]["precision"],
           "data_wait_fraction": max(r["data_wait_fraction"] for r in ranks),
           "peak_memory_bytes": max(peaks) if peaks else None,
           "host_syncs_per_step": max(syncs) if syncs else None, "host_syncs_by_step": syncs,
           "host_sync_sites": ranks[0]["host_sync_sites"], "profile": ranks[0]["profile"]}
    if not args.cpu and out["precision"] != "bf16":  # the runs ask for `auto`: on CUDA it must keep bf16
        raise RuntimeError(f"{name}: dist.mixed_precision=auto ran as {out['precision']} on CUDA, not bf16")
    progress(f"{name}: {out['images_per_s']:.1f} images/s, {out['step_ms']:.1f} ms/step over {steps} steps, "
             f"data wait {out['data_wait_fraction']:.2f}, host syncs/step {out['host_syncs_per_step']}")
    return out


def mfu(flops_per_image: float | None, images_per_s: float, procs: int, peak_tflops: float | None):
    if flops_per_image is None or peak_tflops is None:
        return None
    return flops_per_image * images_per_s / (procs * peak_tflops * 1e12)


def _measured_runs(ctx, m, args, report, label: str, procs: int, extra: list[str], keys=("hieratok", "vitok")) -> dict:
    """The tokenizer presets in turn (alternately: drift in machine load hits both alike), L1 + MSE + KL."""
    out = {}
    for key in keys:
        name = f"tokenizer {key} {label} {procs}proc"
        run_dir = ctx.work / f"tok_{key}_{label}_{procs}p"
        overrides = run_overrides(ctx.data, m.micro, procs, ctx.workers(procs), ctx.precision)
        overrides += [*extra, "loss.lpips.weight=0", "loss.gan.weight=0"]
        r = report.attempt(name, measured_train, name, f"configs/tokenizer/{getattr(m, key)}.yaml", run_dir,
                           overrides, procs, m, args)
        if r is not None:
            r["mfu"] = mfu((ctx.flops or {}).get(f"{key}_per_image"), r["images_per_s"], procs, ctx.peak)
        out[key] = r
        shutil.rmtree(run_dir, ignore_errors=True)  # S-B/16 checkpoints take gigabytes
    if len(keys) == 2:
        both = out["hieratok"] and out["vitok"]
        out["hieratok_over_vitok_step_time"] = out["hieratok"]["step_ms"] / out["vitok"]["step_ms"] if both else None
    return out


def tokenizer_runs(ctx, m, args, report) -> dict:
    """HieraTok and ViTok under each backend and process count (one process first: a deadline cuts the
    2-process runs first)."""
    out = {}
    for procs in args.procs:
        for label in args.backends:
            out.setdefault(label, {})[f"{procs}proc"] = _measured_runs(ctx, m, args, report, label, procs,
                                                                       backend_overrides(label))
    return out


def variant_runs(ctx, m, args, report) -> dict:
    """The options that trade compile time or recomputation for speed or memory, one process under DDP:
    `train.compile` (per-block, before wrapping) for both presets, `train.activation_checkpointing` for
    HieraTok, and HieraTok with its images made float on the host (`data.unit_range_on=loader`, the path
    before `auto` moved the conversion to CUDA devices); compare with the tokenizer section's DDP runs."""
    compiled = _measured_runs(ctx, m, args, report, "ddp_compiled", 1, [
        "dist.backend=ddp", "train.compile=true", f"train.compile_backend={m.compile_backend}"])
    checkpointed = _measured_runs(ctx, m, args, report, "ddp_activation_checkpointing", 1, [
        "dist.backend=ddp", "train.activation_checkpointing=true"], keys=("hieratok",))
    host_float = _measured_runs(ctx, m, args, report, "ddp_unit_range_on_loader", 1, [
        "dist.backend=ddp", "data.unit_range_on=loader"], keys=("hieratok",))
    return {"compile": {"backend": m.compile_backend, "warmup_steps_include_compilation": True, **compiled},
            "activation_checkpointing": checkpointed, "unit_range_on_loader": host_float}


def resume_round_trip(ctx, m, args) -> dict:
    from safetensors.torch import load_file

    n, config = m.resume_steps, f"configs/tokenizer/{m.hieratok}.yaml"
    overrides = run_overrides(ctx.data, m.resume_micro, 1, ctx.workers(1), ctx.precision)
    overrides += [f"train.max_steps={2 * n}", "logging.every_steps=1", f"dist.backend={args.resume_backend}",
                  "loss.lpips.weight=0", "loss.gan.weight=0"]
    env = {"GPU_CHECK_DETERMINISTIC": "1", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    whole, split = ctx.work / "resume_whole", ctx.work / "resume_split"
    for stale in (whole, split):
        shutil.rmtree(stale, ignore_errors=True)
    train_process("resume: uninterrupted run", config, whole, overrides, 1, env, run_timeout(m, args))
    split_args = overrides + [f"train.stop_at_step={n}"]  # the same schedule, stopped (with a checkpoint) at n
    train_process("resume: run stopped at step N", config, split, split_args, 1, env, run_timeout(m, args))
    train_process("resume: the same command again", config, split, split_args, 1, env, run_timeout(m, args))

    def rows(run):
        from hieratok.metrics_file import read_records

        return read_records(run / "metrics.jsonl")

    resumed = [r for r in rows(split) if r.get("event") == "resumed"]
    if [r["step"] for r in resumed] != [n]:
        raise RuntimeError(f"resume: expected one 'resumed' event at step {n} in {split}/metrics.jsonl, got {resumed}")
    la, lb = ({r["step"]: float(r["loss"]) for r in rows(run) if "loss" in r} for run in (whole, split))
    if sorted(la) != list(range(1, 2 * n + 1)) or sorted(lb) != sorted(la):
        raise RuntimeError(f"resume: logged steps differ: uninterrupted {sorted(la)}, resumed {sorted(lb)}")
    wa, wb = (load_file(str(run / "export" / "model.safetensors")) for run in (whole, split))
    if wa.keys() != wb.keys():
        raise RuntimeError("resume: the exports hold different tensors")
    loss_diff = max(abs(la[s] - lb[s]) for s in la)
    before = max(abs(la[s] - lb[s]) for s in la if s <= n)
    weight_diff = max((wa[k].float() - wb[k].float()).abs().max().item() for k in wa)
    for run in (whole, split):
        shutil.rmtree(run / "checkpoints", ignore_errors=True)  # gigabytes at S-B/16
    tol = args.resume_tolerance
    return {"equal": loss_diff <= tol and weight_diff <= tol, "preset": m.hieratok, "backend": args.resume_backend,
            "precision": ctx.precision, "steps": 2 * n, "resumed_at": n, "max_abs_loss_diff": loss_diff,
            "max_abs_weight_diff": weight_diff, "tolerance": tol, "differs_before_resume": before > tol,
            "compared": "every logged loss (steps 1..2N) and every exported (EMA) weight",
            "deterministic_algorithms": "torch.use_deterministic_algorithms(True, warn_only=True)"}


if __name__ == "__main__":
    if os.environ.get("GPU_CHECK_DETERMINISTIC") == "1":
        torch.use_deterministic_algorithms(True, warn_only=True)
    probe = Probe()
    if probe.out:
        install(probe)
    code = main(sys.argv[1:])
    probe.write()
    exit_without_teardown(code)  # as the `hieratok` console script ends
