"""The Fréchet distance between two Gaussians, computed so that it never turns complex or NaN.

FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2).

torch-fidelity takes tr((S1 S2)^1/2) as the sum of the square roots of the eigenvalues of the
non-symmetric product S1 S2; pytorch-fid uses scipy's `sqrtm`, which some OpenBLAS builds turn
complex or NaN on near-singular covariances. The eigenvalues of S1 S2 equal those of the symmetric
PSD matrix A = S1^1/2 S2 S1^1/2, so we take `eigvalsh` of A (real by construction), zero the
round-off ones (negative, or below the rank tolerance) and sum the square roots of the rest. Same
quantity, no complex arithmetic.
"""
from __future__ import annotations

import numpy as np


def _symmetric_sqrt(s: np.ndarray) -> np.ndarray:
    """The PSD square root of a symmetric matrix, its round-off negative eigenvalues clipped to 0."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S1 S2)^1/2) for covariance matrices S1, S2, via the symmetric form S1^1/2 S2 S1^1/2."""
    root1 = _symmetric_sqrt((sigma1 + sigma1.T) / 2)
    a = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((a + a.T) / 2)
    # eigenvalues below the rank tolerance (numpy.linalg.matrix_rank's) are round-off, not signal;
    # their square roots would add up to a visible bias over thousands of null directions
    tol = max(eig.max(initial=0.0), 0.0) * eig.shape[0] * np.finfo(np.float64).eps
    return float(np.sqrt(np.where(eig > tol, eig, 0.0)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64; always finite and real."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"means must be 1-d vectors of one size, got shapes {mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"covariances must be {d}x{d}, got {sigma1.shape} and {sigma2.shape}")
    for name, arr in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} holds NaN or Inf values: the features it came from are broken")
    diff = mu1 - mu2
    fid = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    # a distance: round-off can push identical sets a hair below zero
    return float(max(fid, 0.0))
