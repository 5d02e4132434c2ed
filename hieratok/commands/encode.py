"""`hieratok encode --tokenizer RUN_DIR_OR_EXPORT --data SHARDS --out LATENT_SHARDS [--flip]`: the latent cache.

Encodes the centre-cropped images of SHARDS (posterior means) into MDS rows of (latent, label, key),
with per-channel mean/std and the tokenizer's path and weights hash beside them. Under torchrun each
rank writes its own part; re-running the same command after a kill resumes (finished parts are kept).
"""
from __future__ import annotations

import json
import sys


def add_arguments(p) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar (none is drawn when stderr is not a terminal)")
    p.add_argument("--tokenizer", required=True, help="tokenizer run dir or export dir")
    p.add_argument("--data", required=True, help="prepared image shards (folder or s3:// URL)")
    p.add_argument("--out", required=True, help="latent cache folder (or s3:// URL) to write")
    p.add_argument("--flip", action="store_true", help="also encode the horizontal mirror of every image")
    p.add_argument("--split", default="train", help="split of --data to encode (default train)")
    p.add_argument("--format", default="mds", choices=["mds", "wds"], help="format of --data (default mds)")
    p.add_argument("--batch-size", type=int, default=64, help="images per encoder batch on each rank (default 64)")
    p.add_argument("--workers", type=int, default=2, help="data loader workers per rank (default 2)")


def run(args) -> int:
    from hieratok import progress

    progress.set_enabled(not args.no_progress)
    from data_pipeline.errors import DataError
    from hieratok.distributed.process_group import init_distributed
    from hieratok.generator.latent_cache import encode_dataset

    try:
        doc = encode_dataset(args.tokenizer, args.data, args.out, flip=args.flip, split=args.split,
                             data_format=args.format, batch_size=args.batch_size, num_workers=args.workers)
    except (DataError, FileNotFoundError) as e:
        print(f"hieratok encode: {e}", file=sys.stderr)
        return 2
    if init_distributed().is_main:
        print(json.dumps({"out": args.out, "rows": doc["rows"], "latent_shape": doc["latent_shape"],
                          "mean": [round(v, 4) for v in doc["mean"]], "std": [round(v, 4) for v in doc["std"]],
                          "tokenizer": doc["metadata"]["tokenizer"]}))
    return 0
