"""torch-fidelity's InceptionV3 (the TF-FID port), loaded only from a local weights file.

`resolve_inception_weights` finds the file (explicit path, else the torch hub cache) and fails with
instructions instead of downloading; `load_inception` builds torch-fidelity's extractor from it.
Images go in as uint8 NCHW, as torch-fidelity reads PNGs; the extractor resizes them to 299 px.
"""
from __future__ import annotations

from pathlib import Path

import torch

from hieratok.nn.weights_files import WeightsError, WeightsFile, resolve_weights

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
EXTRACTOR_NAME = "inception-v3-compat"  # torch-fidelity's registry name
FID_FEATURE = "2048"  # pool features, as torch-fidelity / TTUR use for FID and KID
ISC_FEATURE = "logits_unbiased"  # as torch-fidelity uses for the Inception Score


INCEPTION_WEIGHTS = WeightsFile("Inception weights", INCEPTION_FILE, f"torch-fidelity's, from {INCEPTION_URL}",
                                "--inception-weights / eval.inception_weights")


def resolve_inception_weights(path: str | Path | None = None) -> Path:
    """The Inception weights file: `path` if given, else the torch hub cache. Never downloads."""
    return resolve_weights(INCEPTION_WEIGHTS, path)


def load_inception(weights: str | Path | None = None, device: str | torch.device = "cpu",
                   features: tuple[str, ...] = (FID_FEATURE,)):
    """torch-fidelity's FeatureExtractorInceptionV3 on `device`, frozen, from a local weights file."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = resolve_inception_weights(weights)
    try:
        model = FeatureExtractorInceptionV3(EXTRACTOR_NAME, list(features), feature_extractor_weights_path=str(path))
    except RuntimeError as e:  # load_state_dict mismatch: not an Inception weights file
        raise WeightsError(f"{path} is not a torch-fidelity Inception weights file ({INCEPTION_FILE}): {e}") from e
    # channels_last: oneDNN's (and cuDNN's) faster convolution layout; 1.5x on one CPU core, features
    # equal to the NCHW model's within fp32 summation order (bench/scoring_speed.py)
    return model.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (float, NCHW) to uint8 as writing them to PNG would: clamp, scale, round."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def inception_features(model, images_uint8: torch.Tensor) -> dict[str, torch.Tensor]:
    """{feature name: float32 [B, d] on CPU} for a uint8 NCHW batch."""
    if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4 or images_uint8.shape[1] != 3:
        raise ValueError(f"Inception input must be uint8 [B, 3, H, W], got {images_uint8.dtype} {tuple(images_uint8.shape)}")
    device = next(model.parameters()).device
    out = model(images_uint8.to(device))
    return {name: f.float().cpu() for name, f in zip(model.features_list, out)}
