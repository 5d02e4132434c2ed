"""Typed config of periodic evaluation during training (`eval:` section)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    every_steps: int = 5000  # 0 disables periodic evaluation
    num_images: int = 1000
    split: str = "val"  # the held-out split of data.path
    metrics: list[str] = field(default_factory=lambda: ["psnr", "ssim"])  # any of rfid, psnr, ssim, lpips
    inception_weights: str | None = None  # torch-fidelity Inception file; null: the torch hub cache
    # rFID reference statistics .npz (`hieratok fid --save-stats`); null: the same held-out real images
    reference_stats: str | None = None
    batch_size: int = 32  # images per eval batch on each rank
