"""The run config: one typed section per component, composed here. Section names are a contract."""
from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig

from data_pipeline.config import DataConfig
from hieratok.config.engine import CheckpointConfig, DistConfig, LoggingConfig, TrainConfig
from hieratok.config.errors import ConfigError
from hieratok.eval.config import EvalConfig
from hieratok.generator.config import FlowLossConfig, GeneratorModelConfig
from hieratok.tokenizer.config import TokenizerModelConfig
from hieratok.tokenizer.loss_config import LossConfig


@dataclass
class TokenizerRunConfig:
    task: str = "tokenizer"
    model: TokenizerModelConfig = field(default_factory=TokenizerModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class GeneratorRunConfig:
    task: str = "generator"
    model: GeneratorModelConfig = field(default_factory=GeneratorModelConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(format="latent"))
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: FlowLossConfig = field(default_factory=FlowLossConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(every_steps=0))


TASKS = {"tokenizer": TokenizerRunConfig, "generator": GeneratorRunConfig}


def schema_for_task(task: str) -> type:
    if task not in TASKS:
        raise ConfigError(f"unknown task '{task}'; valid tasks: {', '.join(TASKS)}")
    return TASKS[task]


def validate(cfg: DictConfig) -> None:
    """Cross-field checks the types alone cannot express; each error names the key."""
    _one_of("dist.backend", cfg.dist.backend, ("ddp", "fsdp", "deepspeed"))
    _one_of("dist.zero_stage", cfg.dist.zero_stage, (1, 2, 3))
    _one_of("dist.mixed_precision", cfg.dist.mixed_precision, ("auto", "bf16", "fp32"))
    _one_of("logging.wandb.mode", cfg.logging.wandb.mode, ("online", "offline", "disabled"))
    _one_of("data.format", cfg.data.format, ("mds", "wds", "latent"))
    _one_of("data.unit_range_on", cfg.data.unit_range_on, ("auto", "loader", "device"))
    t = cfg.train
    _one_of("train.decay_type", t.decay_type, ("cosine", "linear"))
    _one_of("train.compile_backend", t.compile_backend, ("inductor", "aot_eager", "eager"))
    if t.decay_ratio is not None and not 0 < t.decay_ratio <= 1:
        raise ConfigError(f"train.decay_ratio ({t.decay_ratio}) must lie in (0, 1], or be null to decay after warm-up")
    if t.global_batch_size % t.micro_batch_size:
        raise ConfigError(
            f"train.global_batch_size ({t.global_batch_size}) must be a multiple of "
            f"train.micro_batch_size ({t.micro_batch_size})"
        )
    if cfg.task == "tokenizer":
        _validate_tokenizer_model(cfg.model)


def _validate_tokenizer_model(m) -> None:
    _one_of("model.downsample", m.downsample, ("area", "conv"))
    _one_of("model.latent", m.latent, ("finest", "all"))
    _one_of("model.position", m.position, ("rope", "learned"))
    _one_of("model.attention", m.attention, ("auto", "sdpa", "split", "flex", "mask"))
    _one_of("model.scale_attention", m.scale_attention, ("causal", "full"))
    if m.image_size % m.patch_size:
        raise ConfigError(f"model.image_size ({m.image_size}) must be a multiple of model.patch_size ({m.patch_size})")
    grid = m.image_size // m.patch_size
    scales = list(m.scales)
    if not scales or scales[-1] != grid or any(a >= b for a, b in zip(scales, scales[1:])):
        raise ConfigError(
            f"model.scales {scales} must be increasing and end at the token grid side {grid} "
            f"(image_size {m.image_size} / patch_size {m.patch_size})"
        )
    if m.downsample == "conv" and any(grid % s for s in scales):
        raise ConfigError(f"model.downsample=conv needs every scale in {scales} to divide the grid side {grid}")
    for name in ("encoder", "decoder"):
        s = m[name]
        if s.width % s.heads or (s.width // s.heads) % 4:
            raise ConfigError(f"model.{name}.width ({s.width}) / heads ({s.heads}) must be a multiple of 4 (2D RoPE)")
        if not 0 <= s.hiera_depth <= s.depth:
            raise ConfigError(f"model.{name}.hiera_depth ({s.hiera_depth}) must lie in [0, depth={s.depth}]")
    if m.latent == "all" and len(scales) > 1 and m.decoder.hiera_depth == 0:
        raise ConfigError("model.latent=all needs model.decoder.hiera_depth > 0 to read the coarse scales")
    if m.registers < 0 or (m.registers and (len(scales) > 1 or m.latent != "finest")):
        raise ConfigError(f"model.registers={m.registers}: registers are the control of a single-scale model "
                          f"(model.scales [{grid}], model.latent finest) and must be >= 0; got scales {scales}, "
                          f"latent {m.latent}")
    if len(scales) > 1 and m.scale_attention == "causal":
        from hieratok.tokenizer.layout import masked_blocks

        for name, count in masked_blocks(m).items():
            if m[name].hiera_depth > 0 and count == 0:
                raise ConfigError(
                    f"model.{name}.hiera_depth={m[name].hiera_depth} with scales {scales}: the scale-causal mask would "
                    f"act in no {name} block, because the last multi-scale block computes only the finest queries, "
                    f"which see every key; use hiera_depth >= 2 (or 0 for no multi-scale {name} blocks)")


def _one_of(key: str, value, valid: tuple) -> None:
    if value not in valid:
        raise ConfigError(f"config key '{key}' is {value!r}; valid values: {', '.join(map(str, valid))}")
