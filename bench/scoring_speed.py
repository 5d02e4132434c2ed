"""Per-run scoring cost of an ablation: Inception (rFID) and LPIPS in the NCHW layout vs channels_last.

    python bench/scoring_speed.py [--quick] [--images N] [--size PX] [--threads T]

Both layouts run the same weights on the same images, side by side, after one warm-up batch; the
ratio is NCHW seconds over channels_last seconds (what `load_inception` and `LPIPS.from_files` now
use), and `max_feature_diff` says how far the features moved (fp32 summation order only). The
default is one thread, what each of an ablation's two concurrent runs has on 2 cores. Weights are
test-made (random, same architecture): speed does not depend on the values. The last line of stdout
is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from hieratok.eval.inception import FID_FEATURE, load_inception
from hieratok.eval.scoring_weights import scoring_weights
from hieratok.tokenizer.lpips import LPIPS


def _seconds(fn, batches) -> tuple[float, list[torch.Tensor]]:
    fn(batches[0])  # warm-up: first-call allocations and kernel selection
    t = time.perf_counter()
    outs = [fn(b) for b in batches]
    return time.perf_counter() - t, outs


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


@torch.no_grad()
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small run (< 1 minute on 2 CPU cores)")
    p.add_argument("--images", type=int, default=None, help="images per measurement (default 128; --quick 8)")
    p.add_argument("--size", type=int, default=64, help="image side (the CPU ablation's 64 px)")
    p.add_argument("--batch-size", type=int, default=64, help="the ablation scorer's batch")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    n = args.images or (8 if args.quick else 128)
    torch.set_num_threads(args.threads)
    images = torch.rand(n, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    batches = list(images.split(args.batch_size))
    as_uint8 = [((b + 1) * 127.5).round().to(torch.uint8) for b in batches]
    with tempfile.TemporaryDirectory() as d:
        weights = scoring_weights(Path(d), images[:8])
        models = {"inception": load_inception(weights.inception),
                  "lpips": LPIPS.from_files(weights.vgg, weights.lpips_heads)}

    def inception(model):
        index = model.features_list.index(FID_FEATURE)
        return lambda b: model(b)[index]

    def lpips(model):
        return lambda b: model(b, b.flip(-1))

    figures = {}
    for name, build, inputs in (("inception", inception, as_uint8), ("lpips", lpips, batches)):
        model = models[name].to(memory_format=torch.contiguous_format)  # the layout before this change
        nchw_s, nchw_out = _seconds(build(model), inputs)
        model.to(memory_format=torch.channels_last)
        fast_s, fast_out = _seconds(build(model), inputs)
        figures[name] = {"nchw_images_per_s": round(n / nchw_s, 2), "channels_last_images_per_s": round(n / fast_s, 2),
                         "speedup": round(nchw_s / fast_s, 3), "max_feature_diff": _max_diff(nchw_out, fast_out)}
        print(f"{name}: NCHW {n / nchw_s:.1f} images/s, channels_last {n / fast_s:.1f} images/s "
              f"({nchw_s / fast_s:.2f}x)", file=sys.stderr)
    print(json.dumps({"images": n, "image_size": args.size, "threads": args.threads, "weights": "test-made", **figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
