"""Typed configs of the training engine: `train:`, `dist:`, `checkpoint:` and `logging:` sections.

They live with the schema, not in hieratok/train/, so that reading a config never imports the engine."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    max_steps: int = 100_000
    global_batch_size: int = 256
    micro_batch_size: int = 32
    lr: float = 1.0e-4  # at a global batch of `lr_reference_batch`; scaled linearly with the global batch
    lr_reference_batch: int = 256
    min_lr_ratio: float = 0.0
    warmup_steps: int = 3000
    # as torchtitan's lr_scheduler: null decays from the end of warm-up to the end of the run; a fraction
    # d holds the peak, then decays over the last d of the steps (warmup-stable-decay)
    decay_ratio: float | None = None
    decay_type: str = "cosine"  # cosine | linear
    weight_decay: float = 1.0e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    grad_clip: float = 1.0
    ema_decay: float = 0.9999  # 0 disables EMA
    seed: int = 0
    max_nonfinite_steps: int = 5  # abort after this many NaN/Inf steps in a row
    stage: int = 1  # 2: freeze the encoder and fine-tune the decoder (tokenizer runs)
    init_from: str | None = None  # run dir or export whose weights start this run (stage 2)
    # end this invocation after this step, with a checkpoint, as a preemption would (time-boxed jobs)
    stop_at_step: int | None = None
    compile: bool = False
    # torch.compile's backend for `compile`: inductor (kernels), or aot_eager / eager to find a tracing
    # problem without the kernel compiler (as torchtitan's compile.backend)
    compile_backend: str = "inductor"
    activation_checkpointing: bool = False


@dataclass
class DistConfig:
    backend: str = "ddp"  # ddp | fsdp | deepspeed
    zero_stage: int = 2  # deepspeed only: 1, 2 or 3
    mixed_precision: str = "auto"  # auto (bf16 on CUDA, fp32 on a CPU) | bf16 | fp32
    timeout_s: int = 1800


@dataclass
class CheckpointConfig:
    every_steps: int = 1000
    keep_last: int = 3
    on_signal: bool = True  # save on SIGTERM / SIGUSR1 / SIGUSR2, then exit
    # tokenizer exports: measure the latent mean / std / scaling factor on this many training images and
    # record them in config.json ("latent_stats"), for generators without a latent cache (0: none)
    export_stats_images: int = 256


@dataclass
class WandbConfig:
    mode: str = "disabled"  # online | offline | disabled
    project: str = "hieratok"
    entity: str | None = None
    name: str | None = None
    image_every_steps: int = 1000  # the task's image grid, to W&B and TensorBoard (0: none)


@dataclass
class LoggingConfig:
    every_steps: int = 50
    progress: bool = True
    # write the sample keys of every micro-batch to keys_rank<R>.jsonl (data-accounting audits and tests)
    record_keys: bool = False
    tensorboard: bool = False  # scalars and image grids in run_dir/tensorboard as well
    wandb: WandbConfig = field(default_factory=WandbConfig)
