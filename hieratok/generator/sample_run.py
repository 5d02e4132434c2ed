"""Generate images with a trained generator: guided ODE sampling -> un-normalise -> tokenizer decode ->
uint8 NHWC in an `.npz` that the ADM evaluation suite reads (`arr_0`), plus labels and metadata.

Sample i has label i mod num_classes and initial noise keyed by (seed, i). The samples are cut into
fixed batches of `batch_size` consecutive indices and batches are dealt round-robin to the ranks, so
every batch is computed with the same shapes whatever the world size: the file is the same at any
world size, and the same seed writes the same bytes.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from hieratok.generator.images import GeneratorBundle, bundle_for, generate, sample_batches
from hieratok.generator.model import Generator
from hieratok.generator.sampler import Guidance, balanced_labels
from hieratok.progress import bar


def load_bundle(run_dir: str | Path, device="cpu") -> GeneratorBundle:
    """The generator export of `run_dir` (a run or export dir) with its tokenizer on `device`."""
    from hieratok.nn.pretrained import resolve_export_dir

    try:
        export = resolve_export_dir(run_dir)
    except FileNotFoundError:
        raise FileNotFoundError(f"no generator export at {run_dir}: expected {run_dir}/export/config.json, which "
                                f"a finished `hieratok train` of a generator writes") from None
    return bundle_for(Generator.from_pretrained(export, map_location=device), export, device)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez, but byte-for-byte reproducible (fixed zip timestamps) and atomic (temp name, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())
    os.replace(tmp, path)


def _part_path(out: Path, rank: int, world: int) -> Path:
    return out.with_name(f".{out.name}.part-{rank:05d}-of-{world:05d}.npz")


def sample_to_npz(run_dir: str | Path, out: str | Path, *, num: int, cfg_scale: float,
                  cfg_interval: tuple[float, float] = (0.0, 1.0), steps: int = 50, sampler: str = "heun",
                  seed: int = 0, batch_size: int = 32, png_dir: str | Path | None = None) -> dict:
    """Collective under torchrun. Writes `out` (rank 0) and returns its metadata."""
    from hieratok.distributed.process_group import barrier, init_distributed

    if num < 1 or batch_size < 1:
        raise ValueError(f"--num ({num}) and --batch-size ({batch_size}) must be at least 1")
    guidance = Guidance(cfg_scale, tuple(cfg_interval))
    info = init_distributed()
    bundle = load_bundle(run_dir, info.device)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    labels = balanced_labels(num, bundle.model.config.num_classes)
    mine = sample_batches(num, batch_size)[info.rank::info.world_size]
    images = [generate(bundle, idx, labels[idx.start:idx.stop], seed=seed, steps=steps, sampler=sampler,
                       guidance=guidance, device=info.device) for idx in bar(mine, desc="sample")]
    h, w = bundle.tokenizer.config.image_size, bundle.tokenizer.config.image_size
    part = {"index": np.concatenate([np.arange(i.start, i.stop) for i in mine]) if mine else np.zeros(0, np.int64),
            "images": np.concatenate(images) if images else np.zeros((0, h, w, 3), np.uint8)}
    write_npz(_part_path(out, info.rank, info.world_size), part)
    metadata = {
        "generator": str(bundle.export_dir), "tokenizer": bundle.tokenizer_ref.to_dict(),
        "num": num, "num_classes": bundle.model.config.num_classes, "labels": "i mod num_classes",
        "cfg_scale": cfg_scale, "cfg_interval": list(guidance.interval), "steps": steps, "sampler": sampler,
        "seed": seed, "batch_size": batch_size,
        "precision": "bf16 autocast networks, fp32 ODE" if info.device.type == "cuda" else "fp32",
        "noise": "per sample: keyed by (seed, i)",
        "flow": "x_t = (1 - t) x0 + t noise, integrated from t = 1 to t = 0", "layout": "arr_0 uint8 NHWC",
    }
    barrier()
    if info.is_main:
        _merge_parts(out, info.world_size, num, labels.numpy(), metadata, png_dir)
    barrier()
    return metadata


def _merge_parts(out: Path, world: int, num: int, labels: np.ndarray, metadata: dict, png_dir) -> None:
    parts = [_part_path(out, r, world) for r in range(world)]
    loaded = [np.load(p) for p in parts]
    index = np.concatenate([p["index"] for p in loaded])
    images = np.concatenate([p["images"] for p in loaded])[np.argsort(index, kind="stable")]
    if not np.array_equal(np.sort(index), np.arange(num)):
        raise RuntimeError(f"sample parts {parts} do not cover samples 0..{num - 1} exactly once")
    write_npz(out, {"arr_0": images, "labels": labels.astype(np.int64), "metadata": np.array(json.dumps(metadata))})
    for p in parts:
        p.unlink()
    if png_dir is not None:
        from PIL import Image

        png_dir = Path(png_dir)
        png_dir.mkdir(parents=True, exist_ok=True)
        for i, (img, label) in enumerate(zip(images, labels)):
            Image.fromarray(img).save(png_dir / f"{i:06d}_class{int(label)}.png")
