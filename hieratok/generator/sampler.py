"""ODE samplers for the flow in `flow.py`: Euler and Heun from t = 1 (noise) to t = 0 (data), with
classifier-free guidance restricted to a guidance interval of t.

Everything here is deterministic given the initial noise, and `per_sample_noise` makes the noise
of sample i depend only on (seed, i): the same seed gives the same samples at any batch size or
world size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from hieratok.distributed.randomness import keyed_seed

SAMPLERS = ("euler", "heun")

# velocity(x [B, ...], t (a float, the same for the whole batch), labels [B]) -> [B, ...]
VelocityFn = Callable[[torch.Tensor, float, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Guidance:
    """v = v_uncond + scale (v_cond - v_uncond) for lo <= t <= hi; the plain conditional v elsewhere.
    scale 1 is no guidance (and costs no extra model call)."""

    scale: float = 1.0
    interval: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        lo, hi = self.interval
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"guidance interval must satisfy 0 <= lo <= hi <= 1 (t: 0 data, 1 noise); got {self.interval}")

    def active(self, t: float) -> bool:
        lo, hi = self.interval
        return self.scale != 1.0 and lo <= t <= hi


def guided_velocity(model: torch.nn.Module, null_class: int, guidance: Guidance) -> VelocityFn:
    """Turn a Generator (x, t [B], labels) into the guided velocity field the integrators follow."""

    def velocity(x: torch.Tensor, t: float, labels: torch.Tensor) -> torch.Tensor:
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.float32)
        if not guidance.active(t):
            return model(x, tt, labels)
        # one batched call for both branches: half the latency of two calls
        both = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([labels, torch.full_like(labels, null_class)]))
        cond, uncond = both.chunk(2)
        return uncond + guidance.scale * (cond - uncond)

    return velocity


def time_grid(steps: int) -> list[float]:
    """steps + 1 times, uniform from 1 (noise) down to 0 (data)."""
    if steps < 1:
        raise ValueError(f"the number of sampling steps must be at least 1; got {steps}")
    return [1.0 - i / steps for i in range(steps + 1)]


def euler(velocity: VelocityFn, x: torch.Tensor, labels: torch.Tensor, steps: int) -> torch.Tensor:
    """First order: `steps` velocity evaluations."""
    ts = time_grid(steps)
    for t, t_next in zip(ts, ts[1:]):
        x = x + (t_next - t) * velocity(x, t, labels)
    return x


def heun(velocity: VelocityFn, x: torch.Tensor, labels: torch.Tensor, steps: int) -> torch.Tensor:
    """Second order (explicit trapezoid): 2 x `steps` velocity evaluations. The flow's velocity is
    finite at t = 0, so the last step is corrected too (EDM skips it only because sigma = 0 is singular there)."""
    ts = time_grid(steps)
    for t, t_next in zip(ts, ts[1:]):
        h = t_next - t
        d = velocity(x, t, labels)
        x_pred = x + h * d
        x = x + 0.5 * h * (d + velocity(x_pred, t_next, labels))
    return x


INTEGRATORS = {"euler": euler, "heun": heun}


@torch.no_grad()
def sample(velocity: VelocityFn, noise: torch.Tensor, labels: torch.Tensor, steps: int,
           sampler: str = "heun") -> torch.Tensor:
    """Integrate from noise at t = 1 to t = 0: normalised latents shaped like `noise`."""
    if sampler not in INTEGRATORS:
        raise ValueError(f"unknown sampler {sampler!r}; valid samplers: {', '.join(SAMPLERS)}")
    return INTEGRATORS[sampler](velocity, noise, labels, steps)


def _noise_seed(seed: int, index: int) -> int:
    if seed < 0 or index < 0:
        raise ValueError(f"seed and sample index must be non-negative; got seed {seed}, index {index}")
    return keyed_seed(seed, index, "sample-noise")


def per_sample_noise(seed: int, indices, shape: tuple[int, ...], device=None) -> torch.Tensor:
    """Standard normal noise [len(indices), *shape]; row k depends only on (seed, indices[k]).

    Drawn on the host on purpose, once per batch: the same seed gives the same samples on any device."""
    rows = [torch.randn(shape, generator=torch.Generator().manual_seed(_noise_seed(seed, int(i))), device="cpu")
            for i in indices]
    out = torch.stack(rows) if rows else torch.empty((0, *shape), device="cpu")
    return out.to(device)


def balanced_labels(num: int, num_classes: int) -> torch.Tensor:
    """Label of sample i is i mod num_classes: every class appears num // num_classes or one more times."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1; got {num_classes}")
    return torch.arange(num) % num_classes
