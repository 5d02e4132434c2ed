"""`hieratok prepare --src SRC --out DEST --format {wds,mds} [...]`: shard images for training.

SRC: a folder tree `class_name/*.{jpg,jpeg,png,webp}`, a text/CSV file list of `path[,label]`
lines, or `embedded` (a few thousand crops of scikit-image's bundled photos; no network).
DEST: a folder, or `s3://bucket/prefix` for MDS (endpoint from S3_ENDPOINT_URL).
Re-running the same command after a kill completes the job without rewriting finished shards.
"""
from __future__ import annotations

import json
import logging
import os
import sys

from data_pipeline.errors import DataError


def add_arguments(p) -> None:
    p.add_argument("--src", required=True, help="folder tree, file list (text/CSV: path[,label]) or 'embedded'")
    p.add_argument("--out", required=True, help="output folder, or s3://bucket/prefix for --format mds")
    p.add_argument("--format", required=True, choices=["wds", "mds"], help="WebDataset tars or MosaicML MDS")
    p.add_argument("--resolution", type=int, default=256, help="short side / crop size in pixels (default 256)")
    p.add_argument("--resize", choices=["center-crop", "short-side"], default="center-crop",
                   help="center-crop: R x R; short-side: short side R, aspect kept (default center-crop)")
    p.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1), help="worker processes")
    p.add_argument("--shard-size", default="256MB", help="target shard size, e.g. 256MB or 64MiB")
    p.add_argument("--samples-per-shard", type=int, default=None,
                   help="fixed samples per shard (default: from --shard-size, and at least 64 shards when possible)")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    p.add_argument("--image-format", choices=["jpeg", "png"], default="jpeg", help="stored encoding")
    p.add_argument("--limit", type=int, default=None, help="use at most N images (a seeded random subset)")
    p.add_argument("--split-val", type=float, default=0.0, metavar="FRACTION",
                   help="hold out this fraction as val/ (train/ gets the rest)")
    p.add_argument("--seed", type=int, default=0, help="shuffle, val split and embedded crops (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from data_pipeline.prepare.options import PrepareOptions, parse_size
    from data_pipeline.prepare.pipeline import run_prepare

    try:
        opts = PrepareOptions(
            src=args.src, out=args.out, format=args.format, resolution=args.resolution, resize=args.resize,
            workers=args.workers, shard_size=parse_size(args.shard_size), quality=args.quality,
            image_format=args.image_format, limit=args.limit, split_val=args.split_val, seed=args.seed,
            samples_per_shard=args.samples_per_shard, progress=not args.no_progress,
        )
        manifest = run_prepare(opts)
    except DataError as e:
        print(f"hieratok prepare: {e}", file=sys.stderr)
        return 2
    summary = {
        "out": args.out, "format": manifest["format"], **manifest["counts"],
        "splits": {k: {"samples": v["samples"], "shards": len(v["shards"])} for k, v in manifest["splits"].items()},
    }
    print(json.dumps(summary))
    if manifest["skipped"]:
        logging.getLogger(__name__).warning("skipped %d unreadable images; see 'skipped' in %s/manifest.json",
                                            len(manifest["skipped"]), args.out)
    return 0
