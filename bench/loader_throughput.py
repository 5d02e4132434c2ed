"""Loader throughput: 256-px training batches from prepared MDS and WDS shards against torchvision
ImageFolder + DataLoader on the ORIGINAL full-size JPEGs (what a user's ImageFolder reads), with the
same transforms (resize short side to 256, random 256 crop, random flip, to [-1, 1]) and the same
number of workers, side by side in one run. The transforms are paired with how the shards were
prepared, so that both sides produce the same distribution of crops:
  --resize short-side (default): shards keep the aspect ratio; both sides take a random 256 crop
      (ImageFolder: Resize(256) + RandomCrop(256) + RandomHorizontalFlip()).
  --resize center-crop: shards hold the 256 x 256 centre; both sides take that centre and flip it
      (ImageFolder: Resize(256) + CenterCrop(256) + RandomHorizontalFlip(), the ADM recipe). Rounds alternate between the three loaders and each
keeps its best round, so a burst of load from other processes on the machine hurts all alike.
Two figures per loader: images/s (wall clock, steady state after the first batch) and CPU ms per
image (main process + workers, start-up included), which a shared, busy machine disturbs less.
A fourth loader, "mds_uint8", is the MDS one as a GPU trainer reads it (`data.unit_range_on: device`, the
default there): batches stay uint8 and the float conversion leaves the training process for the device.

    python bench/loader_throughput.py [--quick] [--images N] [--workers W] [--batch B]
Prints its figures last, as one JSON line.
"""
from __future__ import annotations

import argparse
import gc
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

RESOLUTION = 256


def _cpu_s() -> float:
    """CPU seconds of this process and of its finished (joined) children, e.g. DataLoader workers."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _measure(loader, max_batches: int) -> tuple[float, float]:
    """(images/s after the first batch, CPU ms per image over the whole iteration)."""
    cpu0 = _cpu_s()
    it = iter(loader)
    first = next(it)
    size = (lambda b: b[0].shape[0] if isinstance(b, (list, tuple)) else b["image"].shape[0])
    total, n, start = size(first), 0, time.perf_counter()
    for i, batch in enumerate(it):
        n += size(batch)
        if i + 1 >= max_batches:
            break
    rate = n / (time.perf_counter() - start)
    if hasattr(it, "close"):
        it.close()
    del it, first, batch
    gc.collect()  # the DataLoader iterator shuts down and joins its workers, so their CPU time counts
    return rate, 1000 * (_cpu_s() - cpu0) / (total + n)


def _imagefolder(root: Path, workers: int, batch: int, resize: str):
    from torchvision import datasets, transforms

    crop = transforms.RandomCrop(RESOLUTION) if resize == "short-side" else transforms.CenterCrop(RESOLUTION)
    tf = transforms.Compose([
        transforms.Resize(RESOLUTION), crop, transforms.RandomHorizontalFlip(),
        transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3),
    ])
    return torch.utils.data.DataLoader(datasets.ImageFolder(str(root), transform=tf), batch_size=batch,
                                       shuffle=True, num_workers=workers, drop_last=True,
                                       prefetch_factor=2 if workers else None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a run of under a minute")
    p.add_argument("--images", type=int, default=None)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--resize", choices=["short-side", "center-crop"], default="short-side",
                   help="how the shards are prepared; ImageFolder's crop is paired with it")
    p.add_argument("--dir", default=None, help="work folder (default: a temp dir)")
    args = p.parse_args()
    n_images = args.images or (192 if args.quick else 2048)
    rounds = args.rounds or (1 if args.quick else 3)

    from data_pipeline import build_loader
    from data_pipeline.config import DataConfig
    from data_pipeline.prepare.embedded import export_embedded_folder
    from data_pipeline.prepare.pipeline import run_prepare
    from data_pipeline.prepare.options import PrepareOptions

    work = Path(args.dir or tempfile.mkdtemp(prefix="hieratok-bench-loader-"))
    originals = work / "originals"
    if not originals.exists():
        export_embedded_folder(originals, n_images, workers=args.workers)
    shards = {}
    for fmt in ("mds", "wds"):
        shards[fmt] = work / f"{fmt}_{args.resize}"
        if not (shards[fmt] / "manifest.json").exists():
            run_prepare(PrepareOptions(src=str(originals), out=str(shards[fmt]), format=fmt, resolution=RESOLUTION,
                                       resize=args.resize, workers=args.workers, progress=False))

    def loaders():
        for fmt in ("mds", "wds"):
            cfg = DataConfig(path=str(shards[fmt]), format=fmt, resolution=RESOLUTION, num_workers=args.workers)
            yield fmt, build_loader(cfg, 0, 1, seed=0, batch_size=args.batch, train=True)
        yield "imagefolder", _imagefolder(originals, args.workers, args.batch, args.resize)
        cfg = DataConfig(path=str(shards["mds"]), format="mds", resolution=RESOLUTION, num_workers=args.workers)
        yield "mds_uint8", build_loader(cfg, 0, 1, seed=0, batch_size=args.batch, train=True, uint8_images=True)

    max_batches = n_images // args.batch - 2
    best: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for r in range(rounds):
        for name, loader in loaders():
            rate, cpu_ms = _measure(loader, max_batches)
            best[name] = max(best.get(name, 0.0), rate)
            cpu[name] = min(cpu.get(name, float("inf")), cpu_ms)
            print(f"round {r}: {name:12s} {rate:8.1f} images/s {cpu_ms:7.2f} CPU ms/image", flush=True)
    result = {
        "images": n_images, "resolution": RESOLUTION, "resize": args.resize, "batch": args.batch,
        "workers": args.workers, "rounds": rounds,
        "mds_images_per_s": round(best["mds"], 1), "wds_images_per_s": round(best["wds"], 1),
        "imagefolder_images_per_s": round(best["imagefolder"], 1),
        "mds_over_imagefolder": round(best["mds"] / best["imagefolder"], 2),
        "wds_over_imagefolder": round(best["wds"] / best["imagefolder"], 2),
        "cpu_ms_per_image": {k: round(v, 2) for k, v in cpu.items()},
        "mds_cpu_saving_over_imagefolder": round(cpu["imagefolder"] / cpu["mds"], 2),
        "wds_cpu_saving_over_imagefolder": round(cpu["imagefolder"] / cpu["wds"], 2),
        "mds_uint8_images_per_s": round(best["mds_uint8"], 1),
        "mds_uint8_over_mds": round(best["mds_uint8"] / best["mds"], 2),
        "mds_uint8_cpu_saving_over_mds": round(cpu["mds"] / cpu["mds_uint8"], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
