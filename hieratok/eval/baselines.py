"""The sanity floor of every tokenizer we train: patch-wise PCA and bicubic down/up-sampling at the
same number of latent values, scored on the same held-out images.

A ViT with a linear patch embedding and a linear pixel head contains patch-PCA as a special case, so
a trained tokenizer below these floors has not learned yet, and comparing two such models says
nothing about the method.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hieratok.eval.image_metrics import psnr, ssim, to_unit_range


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, C, H, W] -> [B * (H/p) * (W/p), C * p * p] rows, one a patch."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, c * patch * patch)


def unpatchify(rows: torch.Tensor, shape: tuple[int, int, int, int], patch: int) -> torch.Tensor:
    b, c, h, w = shape
    x = rows.reshape(b, h // patch, w // patch, c, patch, patch).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, h, w)


def fit_patch_pca(train_images: torch.Tensor, patch: int, components: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [D], basis [D, k]) of the patches of `train_images`, by SVD in float64."""
    rows = patchify(train_images.double(), patch)
    if components > rows.shape[1]:
        raise ValueError(f"patch PCA: {components} components but a {patch}x{patch} patch has {rows.shape[1]} values")
    mean = rows.mean(0)
    _, _, vh = torch.linalg.svd(rows - mean, full_matrices=False)
    return mean, vh[:components].T


def patch_pca_reconstruct(images: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor, patch: int) -> torch.Tensor:
    rows = patchify(images.double(), patch) - mean
    return unpatchify((rows @ basis) @ basis.T + mean, tuple(images.shape), patch).to(images.dtype)


def bicubic_reconstruct(images: torch.Tensor, side: int) -> torch.Tensor:
    """Down to side x side and back up, both bicubic (antialiased on the way down)."""
    size = images.shape[-2:]
    small = F.interpolate(images, size=(side, side), mode="bicubic", align_corners=False, antialias=True)
    return F.interpolate(small, size=size, mode="bicubic", align_corners=False)


def floor_psnr(baselines: dict) -> float:
    """The PSNR a tokenizer must beat: the better of the floors that `floors` returned."""
    return max(b["psnr"] for b in baselines.values())


def floors(train_images: torch.Tensor, test_images: torch.Tensor, *, patch: int, latent_values: int) -> dict:
    """PSNR / SSIM of both baselines on `test_images` (in [-1, 1]), each given at most `latent_values`
    numbers per image: PCA keeps latent_values / patches components a patch, bicubic the largest
    square side with 3 * side^2 <= latent_values."""
    _, c, h, w = test_images.shape
    patches = (h // patch) * (w // patch)
    k = latent_values // patches
    mean, basis = fit_patch_pca(train_images, patch, k)
    side = math.isqrt(latent_values // c)
    recon = {"patch_pca": patch_pca_reconstruct(test_images, mean, basis, patch),
             "bicubic": bicubic_reconstruct(test_images, side)}
    settings = {"patch_pca": {"patch": patch, "components": k, "values": k * patches,
                              "fit_images": len(train_images)},
                "bicubic": {"side": side, "values": c * side * side}}
    real = to_unit_range(test_images)
    out = {}
    for name, rec in recon.items():
        rec = to_unit_range(rec)
        out[name] = {"psnr": float(psnr(real, rec).mean()), "ssim": float(ssim(real, rec).mean()),
                     **settings[name], "num_images": len(test_images)}
    return out
