"""Which precision a run trains in: `dist.mixed_precision: auto` resolved for the device."""
from __future__ import annotations


def resolve_precision(requested: str, device) -> tuple[str, str | None]:
    """(precision to run, warning or None). `auto` is bf16 on CUDA and fp32 on a CPU, where FSDP2's
    bf16 parameters are several times slower than fp32 (bench/precision_cpu.py); an explicit bf16 on
    a CPU runs as asked, with one line saying what it costs."""
    if requested == "auto":
        return ("bf16" if device.type == "cuda" else "fp32"), None
    if requested == "bf16" and device.type == "cpu":
        return requested, ("dist.mixed_precision=bf16 on a CPU runs as asked, but costs: 4.8x fewer images/s "
                           "under FSDP (no change under DDP) at cpu64_single, measured by bench/precision_cpu.py; "
                           "dist.mixed_precision=auto picks fp32 here and bf16 on CUDA")
    return requested, None
