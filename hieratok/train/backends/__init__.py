"""Training backends: one object per parallelism strategy with the same small interface."""
from __future__ import annotations


def build_backend(name: str, **kwargs):
    if name == "ddp":
        from hieratok.train.backends.ddp import DDPBackend

        return DDPBackend(**kwargs)
    if name == "fsdp":
        from hieratok.train.backends.fsdp import FSDPBackend

        return FSDPBackend(**kwargs)
    if name == "deepspeed":
        from hieratok.train.backends.deepspeed_engine import DeepSpeedBackend

        return DeepSpeedBackend(**kwargs)
    raise ValueError(f"unknown dist.backend '{name}'; valid: ddp, fsdp, deepspeed")
