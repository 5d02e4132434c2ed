"""Everything an ablation reports about one trained tokenizer, on the same held-out images as every
other run: reconstruction metrics, latent uniformity and isotropy, training FLOPs per image, and a
mechanism check (the metric change when the coarse tokens' keys and values are zeroed at inference).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from hieratok.eval.latent_space import analyse, encode_images
from hieratok.eval.reconstruction import evaluate_reconstruction
from hieratok.eval.scoring_weights import ScoringWeights


def _batches(images: torch.Tensor, size: int = 64) -> list[dict]:
    return [{"image": images[i:i + size]} for i in range(0, len(images), size)]


def training_flops_per_image(model, image_size: int) -> int:
    """FLOPs of one image's forward and backward through the tokenizer (torch.utils.flop_counter:
    matmuls, convolutions and attention; elementwise ops are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, image_size, image_size)
    was_training = model.training
    model.train()
    try:
        with FlopCounterMode(display=False) as counter:
            recon, post = model(x, sample=False)
            ((recon - x).abs().mean() + post.kl()).backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return int(counter.get_total_flops())


@torch.no_grad()
def score_tokenizer(export_dir: str | Path, images: torch.Tensor, metrics: list[str],
                    weights: ScoringWeights, reference_stats: str | Path | None = None) -> dict:
    """Scores of the tokenizer exported at `export_dir` on `images` (float NCHW in [-1, 1]).
    `reference_stats`: the Inception statistics of `images` (reference_stats below), computed once
    for every run instead of once a run."""
    from hieratok import Tokenizer
    from hieratok.eval.inception import load_inception
    from hieratok.tokenizer.lpips import LPIPS
    from hieratok.tokenizer.model import coarse_keys_zeroed

    model = Tokenizer.from_pretrained(export_dir).eval()
    inception = load_inception(weights.inception) if "rfid" in metrics else None
    lpips = LPIPS.from_files(weights.vgg, weights.lpips_heads) if "lpips" in metrics else None
    n = len(images)
    out = evaluate_reconstruction(model, _batches(images), metrics, n, "cpu", inception=inception, lpips=lpips,
                                  reference_stats=reference_stats)
    with coarse_keys_zeroed(model):
        probe = evaluate_reconstruction(model, _batches(images), ["psnr"], n, "cpu")
    out["mechanism"] = {"psnr_coarse_keys_zeroed": probe["psnr"], "psnr_drop": out["psnr"] - probe["psnr"]}
    latent = analyse(encode_images(model, images))
    out.update(uniformity=latent["uniformity"], isotropy=latent["isotropy"], latent_shape=latent["latent_shape"])
    with torch.enable_grad():
        out["train_flops_per_image"] = training_flops_per_image(model, model.config.image_size)
    return out


def _fingerprint(images_uint8: torch.Tensor, inception_weights: Path) -> str:
    """What the reference statistics depend on: the images as scored and the Inception weights file."""
    h = hashlib.sha256(images_uint8.contiguous().numpy().tobytes())
    # the tensors, not the file's bytes: torch.save writes a random serialization id into every file
    state = torch.load(inception_weights, map_location="cpu", weights_only=True)
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def reference_stats(images: torch.Tensor, weights: ScoringWeights, path: Path) -> Path:
    """The Inception statistics of the real images (uint8 as a PNG would hold them), saved once. A
    rerun on the same out dir reuses the file when the images and weights are the same (a fingerprint
    in its metadata): it is about as costly as scoring one run."""
    from hieratok.eval.feature_stats import FeatureStats, load_stats
    from hieratok.eval.inception import FID_FEATURE, inception_features, load_inception, to_uint8

    key = _fingerprint(to_uint8(images), weights.inception)
    if path.is_file() and getattr(load_stats(path), "meta", {}).get("fingerprint") == key:
        return path
    inception = load_inception(weights.inception)
    stats = FeatureStats(2048, meta={"fingerprint": key})
    for batch in _batches(images):
        stats.update(inception_features(inception, to_uint8(batch["image"]))[FID_FEATURE])
    return stats.save(path)
