"""The GPU check: one command that runs every CUDA path of the project and measures what only a GPU can.
At most 8 minutes on one H200 (16 cores); `--cpu` runs the same code at tiny sizes on a CPU (the test suite
runs it). Progress goes to stderr; stdout is one JSON line. Exit code 1 when anything failed (each failure
is named on stderr and under "failed"; the other sections still run), when the resume round trip differs,
or when --deadline-s left sections unrun (named under "failed" too); 2 without CUDA and without --cpu.

    python bench/gpu_check.py [--cpu] [--peak-tflops 989] [--window-s S] [--deadline-s S]
                              [--backends ddp,fsdp,...] [--procs 1,2] [--only flops,tokenizer,...]
                              [--inception-weights PATH] [--work-dir DIR]

Sections, in the order they run (the long tokenizer sweep last, one process before two):
  data       embedded crops prepared at the tokenizer's resolution (MDS), a random HieraTok export and its
             latent cache (bench/generator_step.py's `_prepare`)
  flops      one training step's forward+backward FLOPs on one micro-batch (FlopCounterMode), with
             `attention: sdpa` and SDPA's math backend so that only the scale-causal work is counted
  attention  the scale-causal kernels (flex, sdpa = one SDPA per scale over its key prefix, split = the
             finest queries unmasked + the coarse ones masked, dense mask) on the multi-scale sequence,
             forward+backward, and which one `attention: auto` picks
  fid        torch-fidelity Inception feature extraction (test-made weights when no real ones are found)
  resume     a run stopped at step N (checkpoint) and resumed to 2N against an uninterrupted 2N-step run:
             every logged loss and every exported weight must be equal
  generator  `hieratok train` of the generator on the latent cache, measured as the tokenizer runs are;
             then Heun sampling + tokenizer decode of its export (sampling)
  variants   the same runs under DDP with `train.compile` (per-block; inductor on CUDA, aot_eager with --cpu)
             for HieraTok and ViTok; HieraTok with `train.activation_checkpointing`, and with its images made
             float on the host (`data.unit_range_on=loader`, what runs did before `auto` moved that to CUDA)
  tokenizer  `hieratok train` runs (bench/gpu_check_train.py: the CLI plus timing, peak memory and host-sync
             counts), HieraTok and ViTok alternately, for each backend and process count
Each training run ends with a few profiled steps (bench/gpu_check_profile.py): the device's busy fraction,
its top kernels and the host's top operators, under "profile".
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import torch

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(BENCH)]

import fid_scaling  # noqa: E402  (the other benchmarks' helpers)
import generator_step  # noqa: E402
import model_step  # noqa: E402
from gpu_check_train import (measured_train, mfu, progress, resume_round_trip, run_overrides,  # noqa: E402
                             tokenizer_runs, variant_runs)
from hieratok.config.loader import load_config  # noqa: E402

H200_BF16_DENSE_TFLOPS = 989.0
BACKENDS = ("ddp", "fsdp", "deepspeed_zero1", "deepspeed_zero2", "deepspeed_zero3")
# sizes: S-B/16 at 256 px on CUDA (sampling at `hieratok sample`'s defaults: batch 32, 50 Heun steps); tiny on a CPU
MODES = {
    "gpu": SimpleNamespace(hieratok="hieratok_s_b16", vitok="vitok_s_b16", generator="lightningdit_b", micro=32,
                           gen_micro=128, images=4096, window_s=3.0, warmup=3, calib=3, sync_steps=3,
                           profile_steps=3,
                           backends=BACKENDS, sample_batch=32, sample_steps=50, fid_images=1024, fid_batch=128,
                           fid_size=256, resume_steps=3, resume_micro=8, run_timeout_s=300,
                           compile_backend="inductor"),
    "cpu": SimpleNamespace(hieratok="tiny_hieratok", vitok="tiny_single", generator="tiny", micro=16, gen_micro=16,
                           images=128, window_s=1.0, warmup=2, calib=2, sync_steps=0, profile_steps=2,
                           backends=("ddp", "deepspeed_zero2"), sample_batch=4, sample_steps=4, fid_images=8,
                           fid_batch=4, fid_size=32, resume_steps=3, resume_micro=8, run_timeout_s=300,
                           compile_backend="aot_eager"),  # inductor's gcc costs ~50 s a cold run on 2 cores
}
SECTIONS = ("flops", "attention", "fid", "resume", "generator", "sampling", "variants", "tokenizer")  # data always runs
# two identical bf16 runs on an H200 differed by 2.7e-5 in a logged loss before any resume (deterministic algorithms
# on, warn_only: SDPA's backward and some reductions have no deterministic CUDA kernel); resuming must add nothing more
CUDA_RESUME_TOLERANCE = 1e-4
RUN_GRACE_S = 60.0  # a training run started before the deadline may run this long past it
CFG_SCALE = 1.5  # guidance on at every step: the batched call doubles the model's batch (the costly case)


class Report:
    """Runs named steps; a failure is recorded under its name and printed, and the others go on."""

    def __init__(self, deadline: float):
        self.failed: dict[str, str] = {}
        self.seconds: dict[str, float] = {}
        self.deadline = deadline  # time.perf_counter() after which nothing more starts

    def attempt(self, name: str, fn, *args):
        if time.perf_counter() > self.deadline:
            self.failed[name] = "skipped: the check ran past --deadline-s"
            progress(f"SKIPPED: {name}: past --deadline-s")
            return None
        t0 = time.perf_counter()
        progress(f"{name} ...")
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - every failure is reported, by name, and sets the exit code
            traceback.print_exc(file=sys.stderr)
            self.failed[name] = f"{type(e).__name__}: {e}"[-3000:]
            progress(f"FAILED: {name}: {type(e).__name__}: {str(e)[-500:]}")
            return None
        finally:
            self.seconds[name] = round(time.perf_counter() - t0, 1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_s(fn, device: torch.device, window_s: float, min_reps: int = 3) -> float:
    """Mean seconds per call of `fn`, repeated until `window_s` has passed (at least `min_reps` times)."""
    _sync(device)
    t0, reps = time.perf_counter(), 0
    while reps < min_reps or time.perf_counter() - t0 < window_s:
        fn()
        reps += 1
    _sync(device)
    return (time.perf_counter() - t0) / reps


# --- FLOPs -------------------------------------------------------------------------------------
def counted_flops(fn) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def count_flops(m, device: torch.device, bf16: bool) -> dict:
    out = {"counted_with": "FlopCounterMode over one micro-batch's forward+backward (loss included); attention: sdpa "
                           "under SDPA's math backend (the scale-causal work only, as with the per-scale key prefixes)"}
    for key in ("hieratok", "vitok"):
        model = model_step.build(getattr(m, key), "sdpa", device)
        size = model.config.image_size
        x = torch.rand(m.micro, 3, size, size, device=device) * 2 - 1
        out[f"{key}_per_image"] = counted_flops(functools.partial(model_step.step, model, x, bf16)) / m.micro
    from hieratok.generator.model import Generator

    gen = Generator(generator_config(m, []).model).to(device).train()
    x = torch.randn(m.gen_micro, *gen.latent_shape, device=device)
    t = torch.rand(m.gen_micro, device=device)
    labels = torch.randint(0, gen.config.num_classes, (m.gen_micro,), device=device)

    def gen_step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = (gen(x, t, labels).float() - x).square().mean()
        loss.backward()
        gen.zero_grad(set_to_none=True)

    out["generator_per_image"] = counted_flops(gen_step) / m.gen_micro
    return out


# --- attention kernels -------------------------------------------------------------------------
def attention_kernels(m, device: torch.device, bf16: bool, window_s: float) -> dict:
    from hieratok.nn.attention import build_layout, flex_attention_available

    cfg = load_config(f"configs/tokenizer/{m.hieratok}.yaml").model
    tokens = [s * s for s in cfg.scales]
    heads, dim, n = cfg.encoder.heads, cfg.encoder.width // cfg.encoder.heads, sum(tokens)
    dtype = torch.bfloat16 if bf16 else torch.float32
    q, k, v = (torch.randn(m.micro, heads, n, dim, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
    grad = torch.randn(m.micro, heads, n, dim, device=device, dtype=dtype)
    with torch.no_grad():
        reference = build_layout(tokens, device, "mask")(q, k, v).float()
    times, diffs, unavailable = {}, {}, {}
    for kernel in ("flex", "sdpa", "split", "mask"):
        if kernel == "flex" and not flex_attention_available(device):
            times[kernel] = diffs[kernel] = None
            unavailable[kernel] = f"FlexAttention runs on CUDA only (flex_attention_available({device.type}) is False)"
            continue
        layout = build_layout(tokens, device, kernel)

        def once():
            layout(q, k, v).backward(grad)
            q.grad = k.grad = v.grad = None

        once()  # warm-up: kernel choice, FlexAttention's compilation
        times[kernel] = 1000 * timed_s(once, device, window_s)
        with torch.no_grad():
            diffs[kernel] = (layout(q, k, v).float() - reference).abs().max().item()
        progress(f"attention {kernel}: {times[kernel]:.3f} ms forward+backward")
    picks = build_layout(tokens, device, "auto").kernel
    measured = {kk: t for kk, t in times.items() if t is not None}
    fastest = min(measured, key=measured.get)
    return {"preset": m.hieratok, "tokens_per_scale": tokens, "batch": m.micro, "heads": heads, "head_dim": dim,
            "dtype": str(dtype).removeprefix("torch."), "fwd_bwd_ms": times, "unavailable": unavailable,
            "max_abs_diff_vs_mask": diffs, "auto_picks": picks, "fastest": fastest, "auto_is_fastest": picks == fastest}


def generator_config(m, extra: list[str]):
    tok = load_config(f"configs/tokenizer/{m.hieratok}.yaml").model
    grid = tok.image_size // tok.patch_size
    return load_config(f"configs/generator/{m.generator}.yaml",
                       [f"model.latent_grid={grid}", f"model.latent_channels={tok.latent_channels}", *extra])


def generator_run(ctx, m, args) -> dict:
    gen_overrides = ["data.format=latent", "data.split=train", f"model.latent_grid={ctx.grid}",
                     f"model.latent_channels={ctx.channels}"]
    overrides = run_overrides(ctx.cache, m.gen_micro, 1, ctx.workers(1), ctx.precision) + gen_overrides
    r = measured_train("generator", f"configs/generator/{m.generator}.yaml", ctx.gen_run, overrides, 1, m, args)
    r["mfu"] = mfu((ctx.flops or {}).get("generator_per_image"), r["images_per_s"], 1, ctx.peak)
    return {"preset": m.generator, "backend": generator_config(m, []).dist.backend, "procs": 1, **r}


# --- sampling, FID features ------------------------------------------------------------------
def sampling(ctx, m, args) -> dict:
    from hieratok.generator.images import generate
    from hieratok.generator.sample_run import load_bundle
    from hieratok.generator.sampler import Guidance, balanced_labels

    bundle = load_bundle(ctx.gen_run, ctx.device)
    labels = balanced_labels(m.sample_batch, bundle.model.config.num_classes)
    guidance = Guidance(CFG_SCALE)
    batch = range(m.sample_batch)

    def once(steps: int = m.sample_steps):
        generate(bundle, batch, labels, seed=0, steps=steps, sampler="heun", guidance=guidance, device=ctx.device)

    once(2)  # warm-up
    seconds = timed_s(once, ctx.device, args.window_s or m.window_s, min_reps=1)
    return {"sampler": "heun", "steps": m.sample_steps, "model_calls_per_batch": 2 * m.sample_steps,
            "cfg_scale": CFG_SCALE, "batch": m.sample_batch, "images_per_s": m.sample_batch / seconds,
            "includes": "guided Heun ODE (cond + uncond in one batched call) + tokenizer decode + uint8 to host"}


def fid_features(ctx, m, args) -> dict:
    from hieratok.eval.extract import extract
    from hieratok.eval.inception import load_inception

    folder = ctx.work / "fid"
    folder.mkdir(exist_ok=True)
    weights, test_made = fid_scaling._weights(args.inception_weights, folder)
    source = fid_scaling._image_set(m.fid_images, m.fid_size, folder)
    model = load_inception(weights, ctx.device)
    extract(source, model, m.fid_batch, limit=m.fid_batch)  # warm-up
    rate = fid_scaling._rate(lambda: extract(source, model, m.fid_batch), m.fid_images)
    return {"images_per_s": rate, "images": m.fid_images, "image_size": m.fid_size, "batch": m.fid_batch,
            "weights_test_made": test_made,
            "weights": ("test-made: random init, BatchNorm calibrated (hieratok/eval/weights_for_tests.py); the "
                        "speed does not depend on the values" if test_made else str(weights))}


# --- the run -----------------------------------------------------------------------------------
def prepare(ctx, m) -> None:
    tok = load_config(f"configs/tokenizer/{m.hieratok}.yaml").model
    ctx.grid, ctx.channels = tok.image_size // tok.patch_size, tok.latent_channels
    ctx.data, _, ctx.cache = generator_step._prepare(ctx.work, tok, m.images, ctx.workers(1))


def _rounded(x):
    if isinstance(x, float):
        return float(f"{x:.4g}") if math.isfinite(x) else str(x)
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", help="tiny presets at 32 px on the CPU, fp32 (the test suite's run)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help=f"peak FLOP/s the MFU assumes, in TFLOP/s (default on CUDA: {H200_BF16_DENSE_TFLOPS:g}, "
                        "H200 bf16 dense; on a CPU none: MFU is null unless given)")
    p.add_argument("--window-s", type=float, default=None, help="seconds each timed measurement aims at, "
                   "a third of it per attention kernel (default 3 on CUDA, 1 with --cpu)")
    p.add_argument("--backends", default=None, help=f"comma list of {', '.join(BACKENDS)} (default: all on "
                   "CUDA; ddp, deepspeed_zero2 with --cpu)")
    p.add_argument("--procs", default=None, help="comma list of process counts (default: 1, and 2 when 2 GPUs "
                   "are visible; 1 with --cpu)")
    p.add_argument("--resume-backend", default="fsdp", choices=["ddp", "fsdp", "deepspeed"],
                   help="backend of the resume round trip (default fsdp, the tokenizer recipe's)")
    p.add_argument("--resume-tolerance", type=float, default=None, help="largest |difference| the resume round "
                   f"trip accepts in losses and weights (default 0, bit for bit, on a CPU; {CUDA_RESUME_TOLERANCE:g} "
                   "on CUDA, whose bf16 kernels differ run to run)")
    p.add_argument("--inception-weights", default=None, help="torch-fidelity Inception weights (default: the "
                   "torch hub cache, else a test-made file)")
    p.add_argument("--deadline-s", type=float, default=None, help="start nothing after this many seconds; what "
                   "is left is named under 'failed' (default 450 on CUDA, 600 with --cpu)")
    p.add_argument("--only", default=None, help=f"comma list of the sections to run, of {', '.join(SECTIONS)} "
                   "(default: all; data always runs, sampling needs generator)")
    p.add_argument("--work-dir", default=None, help="keep runs, logs and data here (default: a temporary folder)")
    args = p.parse_args(argv)

    def names(flag: str, value: str | None, valid) -> list[str] | None:
        chosen = value.split(",") if value else None
        if chosen and not set(chosen) <= set(valid):
            p.error(f"{flag}: unknown {sorted(set(chosen) - set(valid))}; valid: {', '.join(valid)}")
        return chosen

    args.backends = names("--backends", args.backends, BACKENDS)
    args.only = names("--only", args.only, SECTIONS) or list(SECTIONS)
    args.procs = [int(x) for x in args.procs.split(",")] if args.procs else None
    if args.resume_tolerance is None:
        args.resume_tolerance = 0.0 if args.cpu else CUDA_RESUME_TOLERANCE
    args.deadline_s = args.deadline_s or (600.0 if args.cpu else 450.0)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible; `--cpu` runs the same check at tiny sizes on a CPU", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    os.chdir(REPO)
    m = MODES["cpu" if args.cpu else "gpu"]
    gpus = torch.cuda.device_count() if not args.cpu else 0
    device = torch.device("cpu") if args.cpu else torch.device("cuda", 0)
    if args.cpu:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # spinning OpenMP threads on a shared CPU cost 20x
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    args.backends = args.backends or list(m.backends)
    args.procs = args.procs or ([1, 2] if gpus >= 2 else [1])
    if not args.cpu and max(args.procs) > gpus:
        print(f"gpu_check: --procs {max(args.procs)} needs as many GPUs; {gpus} visible", file=sys.stderr)
        return 2
    cores = os.cpu_count() or 1
    # on CUDA the runs ask for the presets' `auto`, and each run's resolved precision must be bf16 (measured_train)
    ctx = SimpleNamespace(device=device, precision="fp32" if args.cpu else "auto", flops=None, data=None,
                          peak=args.peak_tflops if args.peak_tflops or args.cpu else H200_BF16_DENSE_TFLOPS,
                          workers=lambda procs: 0 if args.cpu else max(1, min(8, cores // procs - 1)))
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="hieratok-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx.work, ctx.gen_run = work, work / "generator"
    report, bf16, window = Report(t_start + args.deadline_s), not args.cpu, args.window_s or m.window_s
    args.end_by = t_start + args.deadline_s + RUN_GRACE_S
    tokenizer = variants = generator = samples = resume = attention = fid = None
    only = set(args.only)
    try:  # cheap sections and the correctness check first, the long tokenizer sweep last (a deadline cuts it)
        report.attempt("data", prepare, ctx, m)
        if only & {"flops", "tokenizer", "variants", "generator"}:  # MFU needs the FLOP counts
            ctx.flops = report.attempt("flops", count_flops, m, device, bf16)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if "attention" in only:
            attention = report.attempt("attention", attention_kernels, m, device, bf16, window / 3)
        if "fid" in only:
            fid = report.attempt("fid", fid_features, ctx, m, args)
        if ctx.data is None:
            report.failed["skipped"] = "resume, generator, sampling and tokenizer need the data section"
        else:
            if "resume" in only:
                resume = report.attempt("resume", resume_round_trip, ctx, m, args)
            if "generator" in only or "sampling" in only:
                generator = report.attempt("generator", generator_run, ctx, m, args)
            if "sampling" in only and generator:
                samples = report.attempt("sampling", sampling, ctx, m, args)
            if "variants" in only:
                variants = variant_runs(ctx, m, args, report)
            if "tokenizer" in only:
                tokenizer = tokenizer_runs(ctx, m, args, report)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    cpu_basis = ("null: no nominal CPU peak assumed (pass --peak-tflops to compute one)" if ctx.peak is None else
                 f"against a stated nominal peak of {ctx.peak:g} TFLOP/s (--peak-tflops)")
    result = {
        "device": torch.cuda.get_device_name(0) if not args.cpu else "cpu", "mode": "cpu" if args.cpu else "cuda",
        "gpus_visible": gpus, "torch": torch.__version__, "precision": ctx.precision, "procs": args.procs,
        "peak_tflops": ctx.peak,
        "mfu_basis": ("flops.*_per_image x images/s / (processes x peak_tflops x 1e12); " +
                      ("H200 bf16 dense peak" if not args.cpu and not args.peak_tflops else cpu_basis)),
        "host_syncs_basis": ("torch.cuda.set_sync_debug_mode('warn') warnings over non-logging steps after the timed "
                             "window" if not args.cpu else "null: not measurable on a CPU (the sync debug mode only "
                             "sees CUDA synchronisations)"),
        "flops": ctx.flops, "attention": attention,
        "tokenizer": {"presets": {"hieratok": m.hieratok, "vitok": m.vitok}, "micro_batch_per_process": m.micro,
                      "losses": "l1 + mse + kl (lpips and gan off)", "runs": tokenizer, "variants": variants},
        "generator": generator, "sampling": samples, "fid_features": fid, "resume": resume,
        "sections": args.only, "section_seconds": report.seconds, "wall_s": time.perf_counter() - t_start,
        "failed": report.failed,
    }
    print(json.dumps(_rounded(result)))
    if resume is not None and not resume["equal"]:
        progress(f"FAILED: the resumed run differs from the uninterrupted one: {resume}")
        return 1
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
