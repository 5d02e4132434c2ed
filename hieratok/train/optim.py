"""AdamW with the ViTok recipe: lr scaled by global batch / reference batch, warm-up, then a decay
(cosine from the end of warm-up by default, or warmup-stable-decay with `train.decay_ratio`)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def scaled_lr(train_cfg) -> float:
    return train_cfg.lr * train_cfg.global_batch_size / train_cfg.lr_reference_batch


def lr_at(step: int, train_cfg) -> float:
    """Learning rate for optimizer step `step` (1-based): linear warm-up, then the peak until the decay
    starts, then cosine or linear down to peak * min_lr_ratio at max_steps."""
    peak = scaled_lr(train_cfg)
    warmup, total = train_cfg.warmup_steps, max(train_cfg.max_steps, 1)
    if warmup > 0 and step <= warmup:
        return peak * step / warmup
    ratio = train_cfg.decay_ratio
    decay_start = warmup if ratio is None else max(warmup, total - round(ratio * total))
    progress = min(1.0, max(0, step - decay_start) / max(1, total - decay_start))
    floor = peak * train_cfg.min_lr_ratio
    if train_cfg.decay_type == "linear":
        return peak - (peak - floor) * progress
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
