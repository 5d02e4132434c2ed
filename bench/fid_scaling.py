"""Inception feature extraction, images/s: a plain single process vs 1 and 2 Ray actors, side by side.

    python bench/fid_scaling.py [--quick] [--images N] [--inception-weights PATH]

Actors are started and warmed up (one batch) before timing, so the figures compare steady-state
extraction, not process start-up. Without --inception-weights (and none in the torch hub cache) a
test-made weights file is used: speed does not depend on the weight values. The last line of
stdout is one JSON object with the figures and the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hieratok.eval.extract import extract
from hieratok.eval.image_sources import NpzImageSource
from hieratok.eval.inception import load_inception, resolve_inception_weights


def _weights(path: str | None, workdir: Path) -> tuple[Path, bool]:
    try:
        return resolve_inception_weights(path), False
    except FileNotFoundError:
        if path is not None:
            raise
    from hieratok.eval.weights_for_tests import make_test_inception_weights

    calib = (torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    return make_test_inception_weights(calib, workdir / "inception-test-made.pth"), True


def _image_set(n: int, size: int, workdir: Path) -> NpzImageSource:
    rng = np.random.default_rng(0)
    np.savez(workdir / "images.npz", rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8))
    return NpzImageSource(str(workdir / "images.npz"))


def _rate(fn, n: int) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small run (< 1 minute on 2 CPU cores)")
    p.add_argument("--images", type=int, default=None, help="images per measurement (default 64; --quick 8)")
    p.add_argument("--size", type=int, default=64, help="image side before the extractor's resize to 299")
    p.add_argument("--batch-size", type=int, default=None, help="default 8; --quick 2")
    p.add_argument("--inception-weights", default=None)
    args = p.parse_args(argv)
    n = args.images or (8 if args.quick else 64)
    bs = args.batch_size or (2 if args.quick else 8)

    import ray

    from hieratok.eval.ray_fid import RayInceptionPool

    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as d:
        workdir = Path(d)
        weights, test_made = _weights(args.inception_weights, workdir)
        source = _image_set(n, args.size, workdir)
        warm = NpzImageSource(source.path)

        model = load_inception(weights)
        threads = torch.get_num_threads()
        extract(warm, model, bs, limit=bs)  # warm-up: first-call allocations and kernel selection
        single = _rate(lambda: extract(source, model, bs), n)
        torch.set_num_threads(1)  # what one actor gets when 2 share 2 cores: separates threads from processes
        single_1t = _rate(lambda: extract(source, model, bs), n)
        torch.set_num_threads(threads)
        print(f"single process: {single:.2f} images/s ({threads} threads), {single_1t:.2f} (1 thread)", file=sys.stderr)
        del model

        ray.init(address="local", num_cpus=max(2, cpus), include_dashboard=False, log_to_driver=False)
        rates = {}
        try:
            for workers in (1, 2):
                with RayInceptionPool(weights, workers) as pool:
                    pool.extract(warm, bs, limit=bs * workers, parts_per_worker=1)  # start + warm every actor
                    rates[workers] = _rate(lambda: pool.extract(source, bs), n)
                print(f"ray, {workers} worker(s): {rates[workers]:.2f} images/s", file=sys.stderr)
        finally:
            ray.shutdown()

    print(json.dumps({
        "images": n, "batch_size": bs, "image_size": args.size, "cpu_count": cpus,
        "weights_test_made": test_made,
        "single_process_threads": threads,
        "single_process_images_per_s": round(single, 3),
        "single_process_1_thread_images_per_s": round(single_1t, 3),
        "ray_1_worker_images_per_s": round(rates[1], 3),
        "ray_2_workers_images_per_s": round(rates[2], 3),
        "ray1_over_single": round(rates[1] / single, 3),
        "ray2_over_single": round(rates[2] / single, 3),
        "ray2_over_ray1": round(rates[2] / rates[1], 3),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
