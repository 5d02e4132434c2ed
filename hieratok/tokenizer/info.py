"""Parameter counts and shapes of a tokenizer config, without allocating its weights."""
from __future__ import annotations

import torch

from hieratok.tokenizer.layout import describe


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tokenizer_info(model_cfg) -> dict:
    from hieratok.tokenizer.model import Tokenizer

    with torch.device("meta"):  # counts only: no memory, no init time, even for L-sized stacks
        model = Tokenizer(model_cfg)
    enc, dec = _count(model.encoder), _count(model.decoder)
    return {
        "params": {
            "encoder": enc,
            "decoder": dec,
            "total": enc + dec,
            "encoder_blocks": _count(model.encoder.stack.blocks),
            "decoder_blocks": _count(model.decoder.stack.blocks),
        },
        "scales": list(model.config.scales),
        "tokens_per_scale": model.tokens_per_scale,
        "sequence_length": sum(model.tokens_per_scale),
        "latent_shape": list(model.latent_shape),
        "blocks": describe(model.config),
    }
