"""`hieratok fid --ref {DIR,.npz,SHARDS,STATS} --gen {DIR,.npz}`: FID, ISC and KID between two image sets.

Prints its result as one JSON object on the last line of stdout (and to --out FILE).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar (none is drawn when stderr is not a terminal)")
    p.add_argument("--ref", required=True,
                   help="reference set: a folder of images, an ADM-layout .npz (arr_0 uint8 NHWC), prepared shards, "
                        "or a statistics .npz written by --save-stats (FID only)")
    p.add_argument("--gen", required=True, help="generated set: a folder of images or an ADM-layout .npz")
    p.add_argument("--metrics", default=None, help="comma list of fid,isc,kid (default: all that the inputs allow)")
    p.add_argument("--inception-weights", default=None,
                   help="torch-fidelity Inception weights (weights-inception-2015-12-05-6726825d.pth); "
                        "default: the torch hub cache ($TORCH_HOME/hub/checkpoints)")
    p.add_argument("--num", type=int, default=None, help="use at most N images of each set (default: all)")
    p.add_argument("--batch-size", type=int, default=50, help="images per Inception batch (default 50)")
    p.add_argument("--resolution", type=int, default=256, help="image side when --ref is shards (default 256)")
    p.add_argument("--device", default=None, help="device for in-process extraction (default: cuda if available)")
    p.add_argument("--ray-workers", type=int, default=0,
                   help="extract features on K Ray actors (0: in this process)")
    p.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--ray-gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor (default 0: CPU)")
    p.add_argument("--save-stats", default=None, help="write the reference's statistics to this .npz for reuse")
    p.add_argument("--out", default=None, help="also write the JSON result to this file")


def run(args) -> int:
    from hieratok import progress

    progress.set_enabled(not args.no_progress)
    import torch

    from hieratok.eval.fid import SetReader, compare_sets

    if args.num is not None and args.num < 2:
        print(f"hieratok fid: --num must be at least 2 (a covariance needs 2 images), got {args.num}", file=sys.stderr)
        return 2
    if args.batch_size < 1 or args.ray_workers < 0:
        print("hieratok fid: --batch-size must be >= 1 and --ray-workers >= 0", file=sys.stderr)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    started_ray, reader = False, None
    try:
        if args.ray_workers:
            from hieratok.eval.ray_fid import ensure_ray

            started_ray = ensure_ray(args.ray_address, num_cpus=args.ray_workers)
        reader = SetReader(args.inception_weights, args.batch_size, args.ray_workers, args.ray_gpus_per_worker, device)
        result = compare_sets(args.ref, args.gen, reader, metrics=args.metrics, num=args.num,
                              resolution=args.resolution, save_stats=args.save_stats)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"hieratok fid: {e}", file=sys.stderr)
        return 2
    finally:
        if reader is not None:
            reader.close()
        if started_ray:
            import ray

            ray.shutdown()
    line = json.dumps(result)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(line + "\n")
    print(line, flush=True)
    return 0
