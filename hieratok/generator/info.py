"""Parameter counts and shapes of a generator config, without allocating its weights."""
from __future__ import annotations

import torch


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def generator_info(model_cfg) -> dict:
    from hieratok.generator.model import Generator

    with torch.device("meta"):  # counts only: no memory, no init time, even for XL
        model = Generator(model_cfg)
    embed = _count(model.latent_embed) + _count(model.time_embed) + _count(model.class_embed)
    return {
        "params": {
            "total": _count(model),
            "blocks": _count(model.blocks),
            "embeddings": embed,
            "final": _count(model.final),
        },
        "width": model.config.width,
        "depth": model.config.depth,
        "heads": model.config.heads,
        "num_classes": model.config.num_classes,
        "sequence_length": model.latent_shape[0],
        "latent_shape": list(model.latent_shape),
    }
