"""Reconstruction metrics of a tokenizer (rFID, PSNR, SSIM, LPIPS): the periodic-eval API and `hieratok eval`.

Every metric is kept as float64 sums (per-image sums; Inception sufficient statistics), merged over
torch.distributed ranks with one all_reduce each, so 2 ranks give the single-process numbers.

Protocol (recorded by `hieratok eval`): images and reconstructions are clamped to [-1, 1];
PSNR/SSIM on [0, 1] (data range 1), averaged per image; LPIPS-VGG v0.1 on [-1, 1]; rFID between
the reconstructions and the same real images (or given reference statistics), both quantised to
uint8 as a PNG would be and fed to torch-fidelity's Inception.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

from hieratok.config.errors import ConfigError
from hieratok.eval.feature_stats import FeatureStats, as_gaussian, load_stats
from hieratok.eval.frechet import frechet_distance
from hieratok.eval.image_metrics import psnr, ssim, to_unit_range
from hieratok.eval.inception import FID_FEATURE, inception_features, load_inception, to_uint8
from hieratok.progress import bar

RECON_METRICS = ("rfid", "psnr", "ssim", "lpips")


def check_metrics(metrics) -> tuple[str, ...]:
    metrics = tuple(metrics.split(",") if isinstance(metrics, str) else metrics)
    metrics = tuple(m.strip().lower() for m in metrics if m.strip())
    bad = [m for m in metrics if m not in RECON_METRICS]
    if bad or not metrics:
        raise ConfigError(f"unknown eval metric(s) {bad or list(metrics)}; valid: {', '.join(RECON_METRICS)}")
    return metrics


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def _reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """all_reduce a small CPU tensor (on CUDA for nccl); identity without torch.distributed."""
    dist = _dist()
    if dist is None:
        return t
    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else t.device
    out = t.to(dev)
    dist.all_reduce(out, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return out.cpu()


def _lockstep_batches(batches: Iterable[dict], quota: int) -> Iterable[tuple[torch.Tensor, bool]]:
    """(images, real?) for this rank's images, up to `quota`. Under torch.distributed every rank takes
    the same number of steps, a rank whose data or quota is spent running a zero padding batch
    (real? = False), so sharded models (FSDP) run their collectives in step."""
    it = iter(batches)
    taken = 0
    while True:
        images = None
        if taken < quota:
            batch = next(it, None)
            if batch is not None:
                images = batch["image"][: quota - taken]
                taken += len(images)
        shape = torch.tensor([1, *images.shape] if images is not None else [0] * 5, dtype=torch.int64)
        shape = _reduce(shape, "max")
        if shape[0] == 0:
            return
        if images is not None:
            yield images, True
        else:
            yield torch.zeros(1, *shape[2:].tolist()), False


@torch.no_grad()
def evaluate_reconstruction(model, batches: Iterable[dict], metrics, num_images: int, device, *,
                            inception_weights: str | Path | None = None, inception=None, lpips=None,
                            reference_stats: str | Path | None = None,
                            autocast_dtype: torch.dtype | None = None) -> dict:
    """Reconstruction metrics of `model` over at most `num_images` images of `batches`.

    model: a tokenizer, `model(x, sample=False) -> (recon, posterior)`, x float NCHW in [-1, 1]
        (DDP / FSDP wrapped is fine: under torch.distributed all ranks must call this together).
    batches: this rank's iterable of dicts with batch["image"]; under torch.distributed each rank's
        batches must be its part of the held-out set, and rank r takes its share of `num_images`.
    metrics: any of "rfid", "psnr", "ssim", "lpips" (a list or a comma string).
    inception_weights / inception: the Inception weights file (None: torch hub cache), or an extractor
        already built with `hieratok.eval.inception.load_inception` (reuse it across periodic evals).
    lpips: an `hieratok.tokenizer.lpips.LPIPS` (e.g. the training loss's); None builds one from the hub cache.
    reference_stats: a statistics `.npz` for rFID; None compares with the same real images.
    Returns {"rfid"?, "psnr"?, "ssim"?, "lpips"?, "num_images"}, identical on every rank.
    """
    metrics = check_metrics(metrics)
    device = torch.device(device)
    dist = _dist()
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist else (0, 1)
    quota = num_images // world + (1 if rank < num_images % world else 0)

    if "rfid" in metrics and inception is None:
        inception = load_inception(inception_weights, device)
    if "lpips" in metrics and lpips is None:
        from hieratok.tokenizer.lpips import LPIPS

        lpips = LPIPS.from_files()
    if lpips is not None:
        lpips = lpips.to(device)

    sums = torch.zeros(4, dtype=torch.float64)  # n, psnr, ssim, lpips
    real_stats, recon_stats = FeatureStats(2048), FeatureStats(2048)
    was_training = model.training
    model.eval()
    try:
        for images, real_batch in bar(_lockstep_batches(batches, quota), desc="eval"):
            x = images.to(device, torch.float32)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
                recon, _ = model(x, sample=False)
            if not real_batch:
                continue
            real, rec = x.clamp(-1, 1), recon.float().clamp(-1, 1)
            sums[0] += len(real)
            if "psnr" in metrics:
                sums[1] += psnr(to_unit_range(real), to_unit_range(rec)).sum().cpu()
            if "ssim" in metrics:
                sums[2] += ssim(to_unit_range(real), to_unit_range(rec)).sum().cpu()
            if "lpips" in metrics:
                sums[3] += lpips(real, rec).double().sum().cpu()
            if "rfid" in metrics:
                if reference_stats is None:  # given statistics replace the real images' features
                    real_stats.update(inception_features(inception, to_uint8(real))[FID_FEATURE])
                recon_stats.update(inception_features(inception, to_uint8(rec))[FID_FEATURE])
    finally:
        model.train(was_training)
    return _finish(metrics, sums, real_stats, recon_stats, reference_stats)


def _finish(metrics, sums: torch.Tensor, real_stats: FeatureStats, recon_stats: FeatureStats,
            reference_stats: str | Path | None) -> dict:
    """Merge the sums over ranks and turn them into metrics (the same dict on every rank)."""
    sums = _reduce(sums)
    n = int(sums[0])
    if n == 0:
        raise ValueError("evaluate_reconstruction read no images: the batches were empty")
    out: dict = {}
    if "rfid" in metrics:
        real_stats.all_reduce()
        recon_stats.all_reduce()
        reference = load_stats(reference_stats) if reference_stats is not None else real_stats
        ref, rec = as_gaussian(reference), recon_stats.gaussian()
        out["rfid"] = frechet_distance(ref.mu, ref.sigma, rec.mu, rec.sigma)
    for i, name in ((1, "psnr"), (2, "ssim"), (3, "lpips")):
        if name in metrics:
            out[name] = float(sums[i] / n)
    out["num_images"] = n
    return out
