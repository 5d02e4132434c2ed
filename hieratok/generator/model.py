"""LightningDiT / SiT-style class-conditional transformer over the tokenizer's latent grid.

    latents [B, g*g, C] --linear (patch 1)--> tokens [B, g*g, D]
      --depth x ModulatedBlock(c)--> FinalLayer(c) --> velocity [B, g*g, C]
    c = TimestepEmbedding(t) + ClassEmbedding(label)

adaLN-zero conditioning, RMSNorm, SwiGLU and 2D RoPE over the g x g grid, as in LightningDiT;
with `latent_scales` (a `latent: all` tokenizer) the sequence is every scale's tokens, coarse to
fine, each at its cell's centre for RoPE and tagged with a learned scale embedding (full attention:
the generator denoises all scales together);
the attention, SwiGLU and RoPE are the tokenizer's (`hieratok.nn`). The model only predicts
velocity; what t means and how it is sampled lives in `flow.py` and `sampler.py`.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from hieratok.config.errors import ConfigError
from hieratok.generator.blocks import ClassEmbedding, FinalLayer, ModulatedBlock, TimestepEmbedding
from hieratok.generator.config import GeneratorModelConfig
from hieratok.nn.attention import scale_ids
from hieratok.nn.layers import init_weights
from hieratok.nn.rope import rope_rotations, sequence_positions

EXPORT_FORMAT = "hieratok-generator/2"  # 2: a flat config.json (1: fields under "model")


def validate_generator_config(m: GeneratorModelConfig) -> None:
    """Checks the types alone cannot express; each error names the key."""
    for key in ("width", "depth", "heads", "num_classes", "latent_channels", "latent_grid"):
        if getattr(m, key) < 1:
            raise ConfigError(f"model.{key} must be at least 1; got {getattr(m, key)}")
    if m.width % m.heads or (m.width // m.heads) % 4:
        raise ConfigError(f"model.width ({m.width}) / heads ({m.heads}) must be a multiple of 4 (2D RoPE)")
    s = m.latent_scales
    if s is not None and (not s or any(a >= b for a, b in zip(s, s[1:])) or s[0] < 1 or s[-1] != m.latent_grid):
        raise ConfigError(f"model.latent_scales must increase from at least 1 to model.latent_grid ({m.latent_grid}), "
                          f"as the tokenizer's model.scales do; got {s}")


def latent_scales(m: GeneratorModelConfig) -> list[int]:
    return list(m.latent_scales) if m.latent_scales else [m.latent_grid]


def latent_shape(m: GeneratorModelConfig) -> tuple[int, int]:
    """(tokens, channels) of the latent a generator config models."""
    return sum(s * s for s in latent_scales(m)), m.latent_channels


def as_generator_config(cfg) -> GeneratorModelConfig:
    """A validated GeneratorModelConfig from a dataclass, an OmegaConf node or a plain dict."""
    if not isinstance(cfg, GeneratorModelConfig):
        from omegaconf import OmegaConf

        from hieratok.config.loader import load_config

        raw = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
        cfg = OmegaConf.to_object(load_config(raw={"task": "generator", "model": raw}).model)
    validate_generator_config(cfg)
    return cfg


class Generator(nn.Module):
    """velocity = model(x_t [B, T, C], t [B] in [0, 1], labels [B]); label `num_classes` is the null class."""

    config_class = GeneratorModelConfig

    def __init__(self, cfg):
        super().__init__()
        self.config = as_generator_config(cfg)
        c = self.config
        self.latent_embed = nn.Linear(c.latent_channels, c.width)
        self.scales = latent_scales(c)
        self.scale_embed = None
        if len(self.scales) > 1:
            self.scale_embed = nn.Parameter(torch.zeros(len(self.scales), c.width))
            self.register_buffer("scale_index", scale_ids([s * s for s in self.scales]), persistent=False)
        self.time_embed = TimestepEmbedding(c.width)
        self.class_embed = ClassEmbedding(c.num_classes, c.width)
        self.blocks = nn.ModuleList(ModulatedBlock(c.width, c.heads, c.mlp_ratio) for _ in range(c.depth))
        self.final = FinalLayer(c.width, c.latent_channels)
        self.grad_checkpointing = c.grad_checkpointing
        self._rope: dict = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_weights(self)
        nn.init.normal_(self.class_embed.table.weight, std=0.02)
        for block in self.blocks:
            block.zero_init()
        self.final.zero_init()

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, path_or_cfg) -> "Generator":
        """From a preset or run-config YAML path, a full run config, or a `model:` config."""
        from hieratok.config.loader import model_section

        return cls(model_section(path_or_cfg))

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.grad_checkpointing = enabled

    # --- the model ------------------------------------------------------------------------------
    @property
    def null_class(self) -> int:
        return self.class_embed.null_class

    @property
    def latent_shape(self) -> tuple[int, int]:
        return latent_shape(self.config)

    def rope(self, device: torch.device) -> torch.Tensor:
        """2D RoPE tables of the latent's tokens (cell centres of every scale), cached per device."""
        if device not in self._rope:
            head_dim = self.config.width // self.config.heads
            self._rope[device] = rope_rotations(sequence_positions(self.scales, device), head_dim, self.config.rope_theta)
        return self._rope[device]

    def condition(self, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.time_embed(t) + self.class_embed(labels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or tuple(x.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"generator input must be [B, {self.latent_shape[0]}, {self.latent_shape[1]}] "
                f"(tokens of model.latent_scales / latent_grid x latent_channels); got {list(x.shape)}"
            )
        c = self.condition(t, labels)
        rope = self.rope(x.device)
        h = self.latent_embed(x)
        if self.scale_embed is not None:
            h = h + self.scale_embed[self.scale_index].to(h.dtype)
        for block in self.blocks:
            if self.grad_checkpointing and self.training:
                h = checkpoint(block, h, c, rope, use_reentrant=False)
            else:
                h = block(h, c, rope)
        return self.final(h, c)

    # --- export ---------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, extra: dict | None = None) -> Path:
        from hieratok.nn.pretrained import save_pretrained

        return save_pretrained(self, directory, export_config(self.config, extra))

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "Generator":
        """From an export folder or a run dir (its export/); `sample()` then decodes with the tokenizer
        that export records."""
        from hieratok.nn.pretrained import load_pretrained, resolve_export_dir

        export = resolve_export_dir(directory)
        model = load_pretrained(cls, export, EXPORT_FORMAT, map_location)
        model.export_dir = export
        return model

    @torch.no_grad()
    def sample(self, labels, *, cfg_scale: float = 1.0, cfg_interval: tuple[float, float] = (0.0, 1.0),
               steps: int = 50, sampler: str = "heun", seed: int = 0, batch_size: int = 32):
        """Images of class `labels` (a sequence of ints) as uint8 NHWC numpy, decoded by the export's
        tokenizer on this model's device. Sample i uses noise keyed by (seed, i) and the batches of
        `hieratok sample`, so with its labels (i mod num_classes) and batch size the bytes equal its file's."""
        from hieratok.generator.images import bundle_for, generate_all
        from hieratok.generator.sampler import Guidance

        if getattr(self, "export_dir", None) is None:
            raise ValueError("Generator.sample decodes with the tokenizer an export records: load the model "
                             "with Generator.from_pretrained(EXPORT_OR_RUN_DIR)")
        device = next(self.parameters()).device
        bundle = bundle_for(self, self.export_dir, device)
        labels = torch.as_tensor(list(labels), dtype=torch.long)
        return generate_all(bundle, labels, seed=seed, steps=steps, sampler=sampler,
                            guidance=Guidance(cfg_scale, tuple(cfg_interval)), batch_size=batch_size, device=device)


def export_config(cfg: GeneratorModelConfig, extra: dict | None = None) -> dict:
    """config.json of a generator export: flat model fields plus `extra` (tokenizer_ref, latent stats)."""
    from hieratok.nn.pretrained import export_config as flat_config

    return flat_config(EXPORT_FORMAT, cfg, extra)
