"""The HieraTok / ViTok KL tokenizer: patch embed -> encoder -> Gaussian latent -> decoder -> pixels.

`scales: [grid]` gives the single-scale ViTok baseline; more scales give HieraTok (multi-scale
pyramid plus scale-causal attention in the last encoder / first decoder blocks). Same code path.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
import torch.nn as nn

from hieratok.nn.layers import draw_init_seed, init_weights
from hieratok.nn.pretrained import export_config, model_fields
from hieratok.tokenizer.config import TokenizerModelConfig
from hieratok.tokenizer.posterior import DiagonalGaussian
from hieratok.tokenizer.stack import Stack

EXPORT_FORMAT = "hieratok-tokenizer/2"  # 2: a flat config.json (1: fields under "model")


def as_model_config(cfg) -> TokenizerModelConfig:
    """A TokenizerModelConfig from a dataclass, an OmegaConf node or a plain dict (validated)."""
    if isinstance(cfg, TokenizerModelConfig):
        return cfg
    from omegaconf import OmegaConf

    from hieratok.config.loader import load_config

    raw = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    return OmegaConf.to_object(load_config(raw={"task": "tokenizer", "model": raw}).model)


class Encoder(nn.Module):
    def __init__(self, cfg: TokenizerModelConfig):
        super().__init__()
        s = cfg.encoder
        self.patch_embed = nn.Conv2d(3, s.width, cfg.patch_size, stride=cfg.patch_size)
        self.hiera_start = s.depth - s.hiera_depth
        self.keep_all_scales = cfg.latent == "all"
        self.stack = Stack(s, cfg.scales, cfg.downsample, cfg.position, cfg.rope_theta, cfg.attention,
                           needs_pyramid=s.hiera_depth > 0 or self.keep_all_scales, scale_attention=cfg.scale_attention,
                           registers=cfg.registers)
        self.to_moments = nn.Linear(s.width, 2 * cfg.latent_channels)

    def forward(self, images: torch.Tensor) -> DiagonalGaussian:
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # [B, g*g, D]
        x = self.stack.add_positions(x)
        st = self.stack
        x = st.run(x, 0, self.hiera_start, multi=False)
        if st.multi_scale:
            trim = not self.keep_all_scales  # coarse outputs of the last block are not part of the latent
            x = st.run(st.to_multi_scale(x), self.hiera_start, len(st.blocks), multi=True, finest_only_last=trim)
        else:
            x = st.run(x, self.hiera_start, len(st.blocks), multi=False)
        return DiagonalGaussian(self.to_moments(st.norm(x)))


class Decoder(nn.Module):
    def __init__(self, cfg: TokenizerModelConfig):
        super().__init__()
        s = cfg.decoder
        self.patch_size = cfg.patch_size
        self.grid = cfg.image_size // cfg.patch_size
        self.hiera_stop = s.hiera_depth
        self.latent_all_scales = cfg.latent == "all" and len(cfg.scales) > 1
        self.from_latent = nn.Linear(cfg.latent_channels, s.width)
        self.stack = Stack(s, cfg.scales, cfg.downsample, cfg.position, cfg.rope_theta, cfg.attention,
                           needs_pyramid=s.hiera_depth > 0, scale_attention=cfg.scale_attention,
                           registers=cfg.registers)
        self.to_pixels = nn.Linear(s.width, 3 * cfg.patch_size**2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        st = self.stack
        x = self.from_latent(z.to(self.from_latent.weight.dtype))
        if self.latent_all_scales:
            x = st.embed_multi_scale(x)
        else:
            x = st.add_positions(x)
            if st.multi_scale:
                x = st.to_multi_scale(x)
        start = 0
        if st.multi_scale and self.hiera_stop > 0:  # coarse outputs of the last hiera block are not read
            x = st.run(x, 0, self.hiera_stop, multi=True, finest_only_last=True)
            start = self.hiera_stop
        x = st.run(x, start, len(st.blocks), multi=False)
        return self.unpatchify(self.to_pixels(st.norm(x)))

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        b, g, p = x.shape[0], self.grid, self.patch_size
        x = x.view(b, g, g, p, p, 3).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, 3, g * p, g * p)


class Tokenizer(nn.Module):
    """Images in [-1, 1], NCHW  <->  latents [B, tokens, latent_channels]."""

    config_class = TokenizerModelConfig

    def __init__(self, cfg):
        super().__init__()
        init_seed = draw_init_seed()  # first: equal for every arm built under one seed
        self.config = as_model_config(cfg)
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        init_weights(self, init_seed)
        for st in (self.encoder.stack, self.decoder.stack):
            if st.pyramid is not None:
                st.pyramid.reset_downsampling()
        self.set_grad_checkpointing(self.config.grad_checkpointing)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_config(cls, path_or_cfg) -> "Tokenizer":
        """From a preset or run-config YAML path, a full run config, or a `model:` config."""
        from hieratok.config.loader import model_section

        return cls(model_section(path_or_cfg))

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        self.encoder.stack.grad_checkpointing = enabled
        self.decoder.stack.grad_checkpointing = enabled

    # --- the API --------------------------------------------------------------------------------
    def posterior(self, images: torch.Tensor) -> DiagonalGaussian:
        return self.encoder(images)

    def encode(self, images: torch.Tensor, sample: bool = False,
               generator: torch.Generator | None = None) -> torch.Tensor:
        post = self.encoder(images)
        return post.sample(generator) if sample else post.mode()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, images: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None) -> tuple[torch.Tensor, DiagonalGaussian]:
        """(reconstruction, posterior). `noise` (standard normal, latent-shaped) fixes the posterior sample."""
        post = self.encoder(images)
        if noise is not None:
            z = post.mean + post.std * noise.to(post.mean.dtype)
        else:
            z = post.sample(generator) if sample else post.mode()
        return self.decoder(z), post

    @property
    def latent_stats(self) -> dict | None:
        """The export's measured latent statistics (mean, std, shift_factor, scaling_factor), when it
        was loaded from one that records them: a generator normalises with them without a cache."""
        return getattr(self, "export_config", {}).get("latent_stats")

    @property
    def tokens_per_scale(self) -> list[int]:
        return [s * s for s in self.config.scales]

    @property
    def latent_shape(self) -> tuple[int, int]:
        tokens = sum(self.tokens_per_scale) if self.encoder.keep_all_scales else self.tokens_per_scale[-1]
        return tokens, self.config.latent_channels

    # --- export ---------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, extra: dict | None = None) -> Path:
        from hieratok.nn.pretrained import save_pretrained

        return save_pretrained(self, directory, export_config(EXPORT_FORMAT, self.config, extra))

    @classmethod
    def from_pretrained(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "Tokenizer":
        from hieratok.nn.pretrained import load_pretrained

        return load_pretrained(cls, directory, EXPORT_FORMAT, map_location)


@contextlib.contextmanager
def coarse_keys_zeroed(model: Tokenizer):
    """Inside, every multi-scale block reads zeros from the coarse tokens' keys and values (or the
    registers'): how much a metric moves then is how much the model uses them."""
    stacks = (model.encoder.stack, model.decoder.stack)
    for st in stacks:
        st.zero_coarse_keys = True
    try:
        yield model
    finally:
        for st in stacks:
            st.zero_coarse_keys = False


def read_export_model_fields(directory: str | Path) -> dict:
    """The model fields of a tokenizer export's config.json, whichever format version wrote it."""
    return model_fields(json.loads((Path(directory) / "config.json").read_text()), TokenizerModelConfig)
