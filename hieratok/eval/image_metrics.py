"""Per-image PSNR and SSIM of reconstructions, on images in [-1, 1] mapped to [0, 1].

PSNR: 10 log10(1 / MSE) per image (data range 1), averaged over images by the caller.
SSIM: Wang et al. 2004 as scikit-image computes it with `gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1`: an 11-tap Gaussian window (truncated at 3.5 sigma),
K1 = 0.01, K2 = 0.03, the map averaged over the valid interior (5 px border dropped, as skimage
crops it) and over the three channels. Computed in float64 so it agrees with skimage to ~1e-7.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * 1.5 + 0.5): skimage's truncate=3.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped (a decoder can overshoot)."""
    return ((images.float().clamp(-1, 1) + 1) / 2)


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two [B, C, H, W] batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [0, 1]; [B] float64. Identical images give +inf."""
    _check_pair(x, y)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1.0 / mse)


def _gaussian_window(device) -> torch.Tensor:
    r = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64, device=device)
    w = torch.exp(-(r**2) / (2 * SSIM_SIGMA**2))
    return w / w.sum()


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of images in [0, 1]; [B] float64 (mean over the valid window positions and channels)."""
    _check_pair(x, y)
    b, c, h, w_ = x.shape
    if min(h, w_) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least {2 * SSIM_RADIUS + 1} px a side, got {h}x{w_}")
    x, y = x.double(), y.double()
    win = _gaussian_window(x.device)
    kh = win.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    kw = win.view(1, 1, 1, -1).expand(c, 1, 1, -1)

    def blur(t):  # separable, 'valid': the interior skimage keeps
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(dim=1)
