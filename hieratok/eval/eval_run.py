"""`hieratok eval` as a function: a tokenizer export on a validation split -> metrics plus their protocol.

The protocol block is what makes a number comparable (or shows that it is not): which images
(split, count, order), which pixels (resolution, crop), which reference for rFID, and which
weights (with `test_made: true` when they are random weights made for tests / the CPU demo).
"""
from __future__ import annotations

from pathlib import Path

import torch

from hieratok.eval.reconstruction import RECON_METRICS, check_metrics, evaluate_reconstruction

METRIC_DEFINITIONS = {
    "rfid": "FID (torch-fidelity InceptionV3 pool features, float64 sums) of the reconstructions against the "
            "reference, both quantised to uint8 like PNGs",
    "psnr": "mean over images of 10 log10(1/MSE) on [0,1] pixels, reconstructions clamped",
    "ssim": "mean over images of SSIM (Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03, data range 1; as "
            "scikit-image with gaussian_weights=True, use_sample_covariance=False), averaged over RGB",
    "lpips": "mean over images of LPIPS-VGG v0.1 on [-1,1] images",
}


def _provenance(path) -> dict:
    from hieratok.eval.provenance import weights_provenance

    return weights_provenance(path)


def evaluate_export(model_dir: str | Path, data: str | Path, *, metrics=("rfid", "psnr", "ssim", "lpips"),
                    num_images: int = 1000, split: str = "val", batch_size: int = 32, device: str | None = None,
                    inception_weights: str | Path | None = None, vgg_weights: str | Path | None = None,
                    lpips_heads: str | Path | None = None, reference_stats: str | Path | None = None) -> dict:
    """Evaluate the tokenizer at `model_dir` (a run dir with export/, or an export dir) on `data`'s split."""
    from hieratok.eval.inception import load_inception, resolve_inception_weights
    from hieratok.eval.shard_data import build_eval_loader, shard_protocol
    from hieratok.nn.pretrained import resolve_export_dir
    from hieratok.tokenizer.model import Tokenizer

    metrics = check_metrics(metrics)
    if num_images < 1 or ("rfid" in metrics and num_images < 2 and reference_stats is None):
        raise ValueError(f"--num must be at least 2 for rfid (a covariance needs 2 images), got {num_images}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    export = resolve_export_dir(model_dir).resolve()
    model = Tokenizer.from_pretrained(export, map_location=device)
    resolution = model.config.image_size

    weights: dict = {}
    inception = lpips = None
    if "rfid" in metrics:
        path = resolve_inception_weights(inception_weights)
        inception = load_inception(path, device)
        weights["inception"] = _provenance(path)
    if "lpips" in metrics:
        from hieratok.tokenizer.lpips import LPIPS

        lpips = LPIPS.from_files(vgg_weights, lpips_heads)
        weights["lpips_vgg16"] = _provenance(lpips.weight_files["vgg"])
        weights["lpips_heads"] = _provenance(lpips.weight_files["lin"])

    loader = build_eval_loader(data, resolution, batch_size, split=split)
    result = evaluate_reconstruction(model, loader, metrics, num_images, device, inception=inception, lpips=lpips,
                                     reference_stats=reference_stats)
    reference = "the same validation images (real, uint8)" if reference_stats is None else {
        "stats": str(Path(reference_stats).resolve())}
    test_made = any(w["test_made"] for w in weights.values())
    result["protocol"] = {
        "model": str(export),
        **shard_protocol(data, resolution, split),
        "num_images_requested": num_images,
        "num_images": result["num_images"],
        "rfid_reference": reference if "rfid" in metrics else None,
        "definitions": {m: METRIC_DEFINITIONS[m] for m in RECON_METRICS if m in metrics},
        "weights": weights,
        "test_made_weights": test_made,
    }
    if test_made:
        result["protocol"]["warning"] = ("computed with weights made for tests (random init): NOT comparable "
                                         "to published numbers")
    return result
