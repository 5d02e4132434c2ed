"""Forward+backward time per 256-px image, HieraTok S-B/16 against ViTok S-B/16, same batch, same run.

Also the activation memory each saves for backward (exact, from autograd's saved-tensor hooks),
and on CUDA the true peak allocated memory. HieraTok with activation checkpointing (every block
recomputed in backward: `train.activation_checkpointing`) runs beside them, for what it costs in time
and saves in memory. Prints its figures last as one JSON line.

    python bench/model_step.py [--quick] [--batch B] [--reps R] [--attention sdpa|flex|auto]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hieratok import Tokenizer  # noqa: E402
from hieratok.config.loader import load_config  # noqa: E402


CHECKPOINTED = "hieratok_s_b16+ckpt"  # the name its figures print under


def build(preset: str, attention: str, device, checkpointed: bool = False) -> Tokenizer:
    cfg = load_config(f"configs/tokenizer/{preset}.yaml", [f"model.attention={attention}"])
    torch.manual_seed(0)
    model = Tokenizer(cfg.model).to(device).train()
    if checkpointed:
        model.set_grad_checkpointing(True)
    return model


def step(model, x, bf16: bool) -> None:
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        recon, post = model(x)
        loss = (recon.float() - x).abs().mean() + 1e-3 * post.kl()
    loss.backward()
    model.zero_grad(set_to_none=True)


def saved_activation_bytes(model, x, bf16: bool) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(model, x, bf16)
    return total


def timed(model, x, bf16: bool) -> float:
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    step(model, x, bf16)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def peak_cuda_bytes(model, x, bf16: bool) -> int | None:
    if x.device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats()
    step(model, x, bf16)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batch 1, 3 timed repetitions (< 1 minute on 2 cores)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--attention", default="auto", choices=["auto", "sdpa", "split", "flex", "mask"])
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = device.type == "cuda"
    batch = args.batch or (1 if args.quick else (32 if device.type == "cuda" else 4))
    reps = args.reps or (3 if args.quick else 10)
    models = {name: build(name, args.attention, device) for name in ("vitok_s_b16", "hieratok_s_b16")}
    models[CHECKPOINTED] = build("hieratok_s_b16", args.attention, device, checkpointed=True)
    x = torch.rand(batch, 3, 256, 256, device=device) * 2 - 1
    for m in models.values():  # warm-up (allocator, kernels, flex compilation)
        step(m, x, bf16)
    times = {name: [] for name in models}
    for _ in range(reps):  # interleaved, so drift in machine load hits both alike
        for name, m in models.items():
            times[name].append(timed(m, x, bf16))
    med = {name: statistics.median(t) for name, t in times.items()}
    acts = {name: saved_activation_bytes(m, x, bf16) for name, m in models.items()}
    peaks = {name: peak_cuda_bytes(m, x, bf16) for name, m in models.items()}
    for name in models:
        print(f"{name:>19}: {1000 * med[name] / batch:8.1f} ms/image (fwd+bwd), "
              f"saved activations {acts[name] / 2**20:8.1f} MiB" +
              (f", peak {peaks[name] / 2**30:.2f} GiB" if peaks[name] else ""))
    result = {
        "device": str(device), "batch": batch, "reps": reps, "bf16": bf16,
        "single_ms_per_image": 1000 * med["vitok_s_b16"] / batch,
        "multi_ms_per_image": 1000 * med["hieratok_s_b16"] / batch,
        "multi_over_single_step_time": med["hieratok_s_b16"] / med["vitok_s_b16"],
        "multi_over_single_activation_memory": acts["hieratok_s_b16"] / acts["vitok_s_b16"],
        "checkpointed_over_plain_step_time": med[CHECKPOINTED] / med["hieratok_s_b16"],
        "checkpointed_over_plain_activation_memory": acts[CHECKPOINTED] / acts["hieratok_s_b16"],
    }
    if peaks["vitok_s_b16"]:
        result["multi_over_single_peak_memory"] = peaks["hieratok_s_b16"] / peaks["vitok_s_b16"]
        result["checkpointed_over_plain_peak_memory"] = peaks[CHECKPOINTED] / peaks["hieratok_s_b16"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
