"""Randomness keyed by sample, so training does not depend on world size, rank or worker.

Every random draw of a training step that touches a sample (posterior noise, flow time and noise,
label dropout) comes from a generator seeded by (run seed, step, sample key). A sample therefore
sees the same noise whichever rank processes it, which makes a 2-process run equal a 1-process
run with the same global batch, and makes resume exact at any world size without RNG state.
"""
from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def keyed_seed(*parts) -> int:
    """A 63-bit seed from any parts (run seed, step, sample key, stream, epoch, rank, ...): the one
    keyed-seed function of the project; the same parts give the same seed on every machine."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def sample_seed(seed: int, step: int, key: str, stream: str = "") -> int:
    """The seed of one sample's draws at one step (posterior noise, flow time, label dropout, init)."""
    return keyed_seed(seed, step, key, stream)


def keyed_randn(seed: int, step: int, keys: list[str], shape: tuple[int, ...], stream: str = "",
                device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normal noise [len(keys), *shape], one independent stream per sample key, drawn on `device`.

    One generator per sample on the device itself: no host-made noise to copy (and no sync) per step.
    A given key gives the same noise on any rank; CPU and CUDA generators differ from each other.
    """
    out = torch.empty((len(keys), *shape), device=device)
    for i, key in enumerate(keys):
        out[i].normal_(generator=_keyed_generator(seed, step, key, stream, out.device))
    return out


def keyed_rand(seed: int, step: int, keys: list[str], stream: str = "", device="cpu") -> torch.Tensor:
    """One uniform [0, 1) number per sample key: [len(keys)], drawn on `device`."""
    out = torch.empty(len(keys), device=device)
    for i, key in enumerate(keys):
        out[i].uniform_(generator=_keyed_generator(seed, step, key, stream, out.device))
    return out


def _keyed_generator(seed: int, step: int, key: str, stream: str, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(sample_seed(seed, step, key, stream))


def rng_state() -> dict:
    """The process-global RNG states (checkpointed per rank, restored at the same world size)."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)
