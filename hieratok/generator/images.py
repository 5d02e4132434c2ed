"""From a generator export to images: the generator with its tokenizer and latent statistics, and the
batches in which `hieratok sample` and `Generator.sample` make the same bytes."""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hieratok.generator.normalization import LatentStats
from hieratok.generator.sampler import Guidance, guided_velocity, per_sample_noise, sample
from hieratok.generator.tokenizer_ref import TokenizerRef, load_frozen_tokenizer, resolve_tokenizer


@dataclass
class GeneratorBundle:
    """A generator export with what it takes to make images: its latent stats and its tokenizer."""

    export_dir: Path
    model: torch.nn.Module  # a hieratok.generator.model.Generator
    stats: LatentStats
    tokenizer_ref: TokenizerRef
    tokenizer: torch.nn.Module


def to_uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1] NCHW -> uint8 NHWC (round to nearest, clip)."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def generate(bundle: GeneratorBundle, indices: range, labels: torch.Tensor, *, seed: int, steps: int,
             sampler: str, guidance: Guidance, device) -> np.ndarray:
    """uint8 NHWC images of samples `indices` with their `labels`."""
    noise = per_sample_noise(seed, indices, bundle.model.latent_shape, device)
    guided = guided_velocity(bundle.model, bundle.model.null_class, guidance)

    def velocity(x, t, y):  # the networks in bf16 on CUDA; the ODE state stays fp32
        with network_precision(x.device):
            return guided(x, t, y).float()

    x = sample(velocity, noise, labels.to(device), steps, sampler)
    with network_precision(x.device):
        images = bundle.tokenizer.decode(bundle.stats.denormalize(x)).float()
    return to_uint8_nhwc(images)


def network_precision(device: torch.device):
    """bf16 autocast for sampling and encoding on CUDA (the integration and the statistics stay fp32);
    fp32 on a CPU, where bf16 is slower (bench/precision_cpu.py)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def sample_batches(num: int, batch_size: int) -> list[range]:
    """Samples 0..num-1 in fixed batches of consecutive indices: the same shapes whoever computes them."""
    return [range(s, min(num, s + batch_size)) for s in range(0, num, batch_size)]


def generate_all(bundle: GeneratorBundle, labels: torch.Tensor, *, seed: int, steps: int, sampler: str,
                 guidance: Guidance, batch_size: int, device) -> np.ndarray:
    """uint8 NHWC images of samples 0..len(labels)-1, batch by batch as `hieratok sample` makes them."""
    return np.concatenate([generate(bundle, idx, labels[idx.start:idx.stop], seed=seed, steps=steps, sampler=sampler,
                                    guidance=guidance, device=device)
                           for idx in sample_batches(len(labels), batch_size)])


def bundle_for(model: torch.nn.Module, export: Path, device) -> GeneratorBundle:
    """`model` (loaded from `export`) with the tokenizer and latent stats its config.json records."""
    config = json.loads((export / "config.json").read_text())
    where = f"the generator export {export}"
    ref_key = "tokenizer" if "model" in config else "tokenizer_ref"  # format 1 nested the model and kept "tokenizer"
    for key in (ref_key, "latent_stats"):
        if key not in config:
            raise ValueError(f"{where} records no '{key}' in its config.json: was it written by the generator task?")
    ref = resolve_tokenizer(None, TokenizerRef.from_dict(config[ref_key], where), where)
    tokenizer = load_frozen_tokenizer(ref, device)
    if tuple(tokenizer.latent_shape) != model.latent_shape:
        raise ValueError(f"the tokenizer {ref.path} makes latents {list(tokenizer.latent_shape)} but the generator "
                         f"models {list(model.latent_shape)}")
    return GeneratorBundle(export, model, LatentStats.from_dict(config["latent_stats"]), ref, tokenizer)
