"""Training backends: one object per parallelism strategy with the same small interface."""
from __future__ import annotations


def build_backend(name: str, *, saved_world_size: int | None = None, **kwargs):
    """`saved_world_size`: the world size of the checkpoint this run resumes from (None: a fresh run)."""
    if name == "ddp":
        from hieratok.train.backends.ddp import DDPBackend

        return DDPBackend(**kwargs)
    if name == "fsdp":
        from hieratok.train.backends.fsdp import FSDPBackend

        return FSDPBackend(**kwargs)
    if name == "deepspeed":
        from hieratok.train.backends.deepspeed_engine import DeepSpeedBackend

        # a checkpoint of another world size loads through DeepSpeed's universal format
        universal = saved_world_size is not None and saved_world_size != kwargs["info"].world_size
        return DeepSpeedBackend(**kwargs, universal_resume=universal)
    raise ValueError(f"unknown dist.backend '{name}'; valid: ddp, fsdp, deepspeed")
