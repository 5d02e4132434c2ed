"""AdamW with the ViTok recipe: lr scaled by global batch / reference batch, cosine with warm-up."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def scaled_lr(train_cfg) -> float:
    return train_cfg.lr * train_cfg.global_batch_size / train_cfg.lr_reference_batch


def lr_at(step: int, train_cfg) -> float:
    """Learning rate for optimizer step `step` (1-based): linear warm-up, then cosine to min_lr_ratio."""
    peak = scaled_lr(train_cfg)
    warmup, total = train_cfg.warmup_steps, max(train_cfg.max_steps, 1)
    if warmup > 0 and step <= warmup:
        return peak * step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = peak * train_cfg.min_lr_ratio
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: norms, biases and embeddings-as-vectors are not decayed."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_adamw(model: nn.Module, train_cfg, lr: float | None = None) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, train_cfg.weight_decay), lr=lr if lr is not None else scaled_lr(train_cfg),
                             betas=tuple(train_cfg.betas), eps=1e-8)


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
