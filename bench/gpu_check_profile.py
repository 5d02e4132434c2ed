"""A few profiled steps at the end of each measured `hieratok train` run of bench/gpu_check.py (its probe,
bench/gpu_check_train.py, starts and stops this): how busy the device was and with what, and where the
host's time went. It answers what low MFU comes from: an idle device (launch overhead, host syncs, data
waits: compile, CUDA graphs, more workers) or busy slow kernels (attention, fp32 work, small matmuls).

    device_busy_fraction  the union of the CUDA kernels' intervals over the profiled wall time (null on a CPU)
    top_kernels           CUDA kernels by device time: ms per step and launches per step
    top_cpu_ops           operators by self host time: ms per step and calls per step
A failure here never fails the run: the summary then holds {"error": ...}.
"""
from __future__ import annotations

import collections
import time

import torch

TOP_KERNELS, TOP_CPU_OPS, NAME_CHARS = 10, 8, 90


class StepProfile:
    def __init__(self, device: torch.device):
        self.device, self.prof, self.t0, self.error = device, None, 0.0, None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
        self._sync()
        try:  # e.g. CUPTI refused on a locked-down node: the run goes on unprofiled
            prof = profile(activities=activities)
            prof.__enter__()
            self.prof = prof
        except Exception as e:  # noqa: BLE001 - the profile is a diagnosis; the run's figures stand without it
            self.error = _error(e)
        self.t0 = time.perf_counter()

    def stop(self, steps: int) -> dict:
        self._sync()
        wall_s = time.perf_counter() - self.t0
        if self.prof is None:
            return {"error": self.error}
        try:
            self.prof.__exit__(None, None, None)
            return summarize(self.prof, wall_s, steps, self.device.type == "cuda")
        except Exception as e:  # noqa: BLE001
            return {"error": _error(e)}


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"[:500]


def _busy_us(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals: kernels on several streams overlap."""
    total, end = 0.0, float("-inf")
    for s, e in sorted(intervals):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


def summarize(prof, wall_s: float, steps: int, cuda: bool) -> dict:
    from torch.autograd import DeviceType

    per_step = 1000.0 * steps  # microseconds summed over the steps -> milliseconds per step
    out = {"steps": steps, "wall_ms_per_step": 1000 * wall_s / steps, "device_busy_fraction": None,
           "device_busy_ms_per_step": None, "top_kernels": None}
    if cuda:
        kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
        spans = [(e.time_range.start, e.time_range.end) for e in kernels]
        busy_us = _busy_us(spans)
        by_name: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0])
        for e in kernels:
            by_name[e.name][0] += e.time_range.elapsed_us()
            by_name[e.name][1] += 1
        top = sorted(by_name.items(), key=lambda kv: -kv[1][0])[:TOP_KERNELS]
        out.update(device_busy_fraction=min(1.0, busy_us / (1e6 * wall_s)), device_busy_ms_per_step=busy_us / per_step,
                   kernel_launches_per_step=len(kernels) / steps,
                   top_kernels=[{"name": n[:NAME_CHARS], "ms_per_step": us / per_step, "per_step": c / steps}
                                for n, (us, c) in top])
    ops = sorted((a for a in prof.key_averages() if a.device_type == DeviceType.CPU),
                 key=lambda a: -a.self_cpu_time_total)[:TOP_CPU_OPS]
    out["top_cpu_ops"] = [{"name": a.key[:NAME_CHARS], "self_ms_per_step": a.self_cpu_time_total / per_step,
                           "per_step": a.count / steps} for a in ops]
    return out
