"""How uniformly a tokenizer's latents fill their space: the analysis the HieraTok paper makes with
t-SNE, plus two numbers so that "more uniform" is a measurement, not an impression.

- uniformity (Wang & Isola, 2020): log E exp(-2 ||u_i - u_j||^2) over pairs of L2-normalised,
  per-channel standardised latent tokens. Lower is more uniform on the sphere.
- isotropy: the effective rank of the tokens' covariance (exp of the entropy of its normalised
  eigenvalues) over the number of channels, in (0, 1]. 1 means every direction carries variance.
"""
from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def encode_images(tokenizer, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Posterior means [N, T, C] of images in [-1, 1]."""
    tokenizer.eval()
    return torch.cat([tokenizer.encode(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def standardised_tokens(latents: torch.Tensor) -> torch.Tensor:
    """Token vectors [N*T, C], each channel standardised over the set (scale-free comparison)."""
    tokens = latents.reshape(-1, latents.shape[-1]).double()
    return (tokens - tokens.mean(0)) / tokens.std(0).clamp_min(1e-12)


def uniformity(tokens: torch.Tensor, max_points: int = 2000, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(tokens), generator=g)[:max_points]
    u = torch.nn.functional.normalize(tokens[idx], dim=1)
    d2 = torch.cdist(u, u).square()
    off = ~torch.eye(len(u), dtype=torch.bool)
    return float(torch.logsumexp(-2 * d2[off], 0) - np.log(off.sum().item()))


def isotropy(tokens: torch.Tensor) -> float:
    eig = torch.linalg.eigvalsh(torch.cov(tokens.T)).clamp_min(0)
    p = eig / eig.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    return float(entropy.exp() / tokens.shape[1])


def embed_2d(latents: torch.Tensor, seed: int = 0) -> np.ndarray:
    """t-SNE of the per-image latents (flattened), as in the paper's figure."""
    from sklearn.manifold import TSNE

    flat = latents.reshape(len(latents), -1).double()
    flat = ((flat - flat.mean(0)) / flat.std(0).clamp_min(1e-12)).numpy()
    perplexity = max(5.0, min(30.0, (len(flat) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(flat)


def analyse(latents: torch.Tensor) -> dict:
    tokens = standardised_tokens(latents)
    return {"uniformity": uniformity(tokens), "isotropy": isotropy(tokens), "num_images": len(latents),
            "latent_shape": list(latents.shape[1:])}
