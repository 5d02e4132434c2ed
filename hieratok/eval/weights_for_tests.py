"""Weights files MADE FOR TESTS and for the CPU demo: random init, never the published weights.

They exercise the real loading and metric code on machines that cannot download the real files.
Metrics computed with them are NOT comparable to published numbers; each file gets a sidecar
`<file>.test-made.json`, so `hieratok eval` / `hieratok fid` record `"test_made": true`.

- Inception: torch-fidelity's InceptionV3 with PyTorch's random init gives nearly constant pool
  features (FID ~1e-12 for any two sets), because BatchNorm running statistics (mean 0, var 1)
  do not match the activations. We calibrate them: one train-mode pass over the given images with
  cumulative averaging (momentum=None) sets every BatchNorm to the statistics it actually sees, so
  eval-mode features vary with the image content. The random classifier is rescaled so its logits
  vary too (ISC away from 1).
- VGG16 (`features.*` of torchvision's layout) and LPIPS v0.1 heads (non-negative, like trained ones).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torch.nn as nn

from hieratok.eval.inception import EXTRACTOR_NAME, FID_FEATURE
from hieratok.eval.provenance import mark_test_made
from hieratok.tokenizer.lpips import VGG_CHANNELS, vgg16_features

LOGIT_SPREAD = 3.0  # std of the test-made classifier's logits over the calibration images
NOTE = "random-init weights made for tests/demo; metrics are NOT comparable to published numbers"


def _random_inception(seed: int):
    """torch-fidelity's extractor class, left at PyTorch's random init instead of loading a file."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _RandomInitInception(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # the constructor's load: skip it
            return None

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as d:
        empty = Path(d) / "empty.pth"
        torch.save({}, empty)  # the constructor insists on reading a file (or downloading one)
        return _RandomInitInception(EXTRACTOR_NAME, [FID_FEATURE], feature_extractor_weights_path=str(empty))


@torch.no_grad()
def make_test_inception_weights(calibration_images: torch.Tensor, out_path: str | Path, seed: int = 0,
                                chunk: int = 64) -> Path:
    """A torch-fidelity-loadable Inception weights file: random init, BatchNorm calibrated on the images.

    calibration_images: uint8 [N, 3, H, W], N >= 2 (use images like those you will compare).
    """
    if calibration_images.dtype != torch.uint8 or calibration_images.dim() != 4 or len(calibration_images) < 2:
        raise ValueError("calibration_images must be uint8 [N>=2, 3, H, W], got "
                         f"{calibration_images.dtype} {tuple(calibration_images.shape)}")
    model = _random_inception(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    model.train().to(memory_format=torch.channels_last)  # as load_inception runs it: 1.5x on a CPU core
    feats = torch.cat([model(calibration_images[start:start + chunk])[0]
                       for start in range(0, len(calibration_images), chunk)])
    # scale the random classifier so logits differ between images (else ISC is exactly 1 for any set)
    spread = ((feats - feats.mean(0)) @ model.fc.weight.T).std()
    model.fc.weight.mul_(LOGIT_SPREAD / spread.clamp_min(1e-12))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, out_path)
    mark_test_made(out_path, NOTE, kind="inception", seed=seed, calibration_images=len(calibration_images))
    return out_path


def make_test_vgg16_weights(out_path: str | Path, seed: int = 0) -> Path:
    """torchvision VGG16 `features.*` tensors at random init (the classifier is left out: LPIPS never uses it)."""
    torch.manual_seed(seed)
    state = {f"features.{k}": v for k, v in vgg16_features().state_dict().items()}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out_path)
    mark_test_made(out_path, NOTE, kind="vgg16", seed=seed)
    return out_path


def make_test_lpips_heads(out_path: str | Path, seed: int = 0) -> Path:
    """LPIPS v0.1 VGG heads in the `lpips` package's layout, non-negative random weights."""
    g = torch.Generator().manual_seed(seed)
    state = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) / c * 8 for k, c in enumerate(VGG_CHANNELS)}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out_path)
    mark_test_made(out_path, NOTE, kind="lpips-heads", seed=seed)
    return out_path
