"""Scale-causal attention: the mask, and the kernels that apply it.

Queries of scale k may attend to every token of the scales <= k, which in the coarse-to-fine
sequence is a PREFIX of the keys. So "sdpa" runs one unmasked `scaled_dot_product_attention` per
scale over its key prefix: exact, no mask materialised, every call flash-eligible. "split" runs two:
the finest scale's queries (most of the sequence: 256 of 341 tokens at S-B/16) over every key,
unmasked and flash-eligible, and the coarse queries over the coarse keys with their small dense mask.
"mask" is the dense boolean mask (the reference) through one SDPA call, "flex" a FlexAttention block
mask (CUDA).

"auto" picks by measurement (bench/gpu_check.py's attention section, forward+backward, S-B/16 at
256 px: 341 tokens, batch 32, bf16): on an H200 mask 0.36 ms, flex 0.52 ms, sdpa 1.58 ms (its five
small calls cost more than the masked work they save); on a CPU mask beat sdpa too. "split" has no
H200 figure yet; on 2 CPU cores (fp32, forward+backward) it beat the mask by ~10% at S-B/16's shapes
and lost by ~10% at the tiny presets'. So "auto" is the dense mask up to DENSE_MASK_MAX_TOKENS, where
the mask is still at most 16 MiB, and flex (CUDA) or sdpa (CPU) beyond, where nobody has measured yet.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def scale_ids(tokens_per_scale: list[int] | tuple[int, ...], device=None) -> torch.Tensor:
    """The scale index of every token of the concatenated coarse-to-fine sequence: [N] long."""
    ids = [scale for scale, count in enumerate(tokens_per_scale) for _ in range(count)]
    return torch.tensor(ids, dtype=torch.long, device=device)


def scale_causal_mask(tokens_per_scale: list[int] | tuple[int, ...]) -> torch.BoolTensor:
    """[N, N] mask, True where query token i may attend to key token j: scale(j) <= scale(i).

    A token of scale k sees every token of the scales <= k, its own scale included.
    """
    ids = scale_ids(tokens_per_scale, device="cpu")
    return ids[None, :] <= ids[:, None]


def flex_attention_available(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


DENSE_MASK_MAX_TOKENS = 4096


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


@dataclass
class AttentionLayout:
    """How the queries of one sequence layout attend. Exactly one of the fields is set, or none
    (full attention)."""

    mask: torch.Tensor | None = None  # dense bool mask
    block_mask: object | None = None  # FlexAttention BlockMask
    prefix_ends: tuple[int, ...] | None = None  # per scale: the end of its queries = the end of its key prefix
    coarse_mask: torch.Tensor | None = None  # "split": the coarse scales' own mask; the finest queries see all

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.block_mask is not None:
            return _compiled_flex()(q, k, v, block_mask=self.block_mask)
        if self.prefix_ends is not None:
            outs, start = [], 0
            for end in self.prefix_ends:
                outs.append(F.scaled_dot_product_attention(q[:, :, start:end], k[:, :, :end], v[:, :, :end]))
                start = end
            return torch.cat(outs, dim=2)
        if self.coarse_mask is not None:
            c = self.coarse_mask.shape[0]
            coarse = F.scaled_dot_product_attention(q[:, :, :c], k[:, :, :c], v[:, :, :c], attn_mask=self.coarse_mask)
            return torch.cat([coarse, F.scaled_dot_product_attention(q[:, :, c:], k, v)], dim=2)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)

    @property
    def kernel(self) -> str:
        """The `model.attention` name of this layout ("none": a single scale, full attention)."""
        if self.block_mask is not None:
            return "flex"
        if self.prefix_ends is not None:
            return "sdpa"
        if self.coarse_mask is not None:
            return "split"
        return "mask" if self.mask is not None else "none"


def build_layout(tokens_per_scale: list[int], device: torch.device, kernel: str = "auto") -> AttentionLayout:
    """The attention layout of a coarse-to-fine sequence; a single scale needs no mask at all."""
    if len(tokens_per_scale) <= 1:
        return AttentionLayout()
    if kernel == "auto":
        dense = sum(tokens_per_scale) <= DENSE_MASK_MAX_TOKENS
        kernel = "mask" if dense else "flex" if flex_attention_available(device) else "sdpa"
    if kernel == "flex":
        from torch.nn.attention.flex_attention import create_block_mask

        ids = scale_ids(tokens_per_scale, device=device)

        def scale_causal(b, h, q_idx, kv_idx):
            return ids[kv_idx] <= ids[q_idx]

        n = int(ids.numel())
        return AttentionLayout(block_mask=create_block_mask(scale_causal, None, None, n, n, device=str(device)))
    if kernel == "mask":
        return AttentionLayout(mask=scale_causal_mask(tokens_per_scale).to(device))
    if kernel == "split":
        return AttentionLayout(coarse_mask=scale_causal_mask(tokens_per_scale[:-1]).to(device))
    return AttentionLayout(prefix_ends=tuple(itertools.accumulate(tokens_per_scale)))


@dataclass
class CoarseKeysZeroed:
    """An inference probe (the ablation's mechanism check): the first `coarse` keys and values of
    the sequence are zeroed, so the queries read nothing from the coarse tokens (or registers)."""

    inner: AttentionLayout
    coarse: int

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        keep = torch.ones(k.shape[2], 1, device=k.device, dtype=k.dtype)
        keep[: self.coarse] = 0
        return self.inner(q, k * keep, v * keep)
