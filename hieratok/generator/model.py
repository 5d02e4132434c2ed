"""LightningDiT / SiT-style class-conditional transformer over the tokenizer's latent grid.

    latents [B, g*g, C] --linear (patch 1)--> tokens [B, g*g, D]
      --depth x ModulatedBlock(c)--> FinalLayer(c) --> velocity [B, g*g, C]
    c = TimestepEmbedding(t) + ClassEmbedding(label)

adaLN-zero conditioning, RMSNorm, SwiGLU and 2D RoPE over the g x g grid, as in LightningDiT;
the attention, SwiGLU and RoPE are the tokenizer's (`hieratok.models`). The model only predicts
velocity; what t means and how it is sampled lives in `flow.py` and `sampler.py`.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from hieratok.config.errors import ConfigError
from hieratok.generator.blocks import ClassEmbedding, FinalLayer, ModulatedBlock, TimestepEmbedding
from hieratok.generator.config import GeneratorModelConfig
from hieratok.models.layers import init_weights
from hieratok.models.rope import grid_positions, rope_rotations

EXPORT_FORMAT = "hieratok-generator/1"


def validate_generator_config(m: GeneratorModelConfig) -> None:
    """Checks the types alone cannot express; each error names the key."""
    for key in ("width", "depth", "heads", "num_classes", "latent_channels", "latent_grid"):
        if getattr(m, key) < 1:
            raise ConfigError(f"model.{key} must be at least 1; got {getattr(m, key)}")
    if m.width % m.heads or (m.width // m.heads) % 4:
        raise ConfigError(f"model.width ({m.width}) / heads ({m.heads}) must be a multiple of 4 (2D RoPE)")


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

    def __init__(self, cfg):
        super().__init__()
        self.config = as_generator_config(cfg)
        c = self.config
        self.latent_embed = nn.Linear(c.latent_channels, c.width)
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
        return self.config.latent_grid ** 2, self.config.latent_channels

    def rope(self, device: torch.device) -> torch.Tensor:
        """2D RoPE tables of the latent grid, cached per device."""
        if device not in self._rope:
            g, head_dim = self.config.latent_grid, self.config.width // self.config.heads
            self._rope[device] = rope_rotations(grid_positions(g, g, device), head_dim, self.config.rope_theta)
        return self._rope[device]

    def condition(self, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.time_embed(t) + self.class_embed(labels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or tuple(x.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"generator input must be [B, {self.latent_shape[0]}, {self.latent_shape[1]}] "
                f"(latent_grid^2 tokens x latent_channels); got {list(x.shape)}"
            )
        c = self.condition(t, labels)
        rope = self.rope(x.device)
        h = self.latent_embed(x)
        for block in self.blocks:
            if self.grad_checkpointing and self.training:
                h = checkpoint(block, h, c, rope, use_reentrant=False)
            else:
                h = block(h, c, rope)
        return self.final(h, c)

    # --- export ---------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, extra: dict | None = None) -> Path:
        from hieratok.models.pretrained import save_pretrained

        return save_pretrained(self, directory, export_config(self.config, extra))

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "Generator":
        from hieratok.models.pretrained import load_pretrained

        return load_pretrained(cls, directory, EXPORT_FORMAT, map_location)


def export_config(cfg: GeneratorModelConfig, extra: dict | None = None) -> dict:
    """config.json of a generator export: the format tag, the model config and `extra` (tokenizer, stats)."""
    return {"format": EXPORT_FORMAT, "model": asdict(cfg), **(extra or {})}
