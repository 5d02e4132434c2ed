"""`manifest.json`, written last by `prepare` (its presence means the job is complete).

{
  "format": "mds" | "wds", "image_format": "jpeg" | "png", "quality": 95,
  "resolution": 256, "resize": "center-crop" | "short-side",
  "source": "...", "seed": 0, "limit": null, "split_val": 0.05,
  "samples_per_shard": 64, "fingerprint": "...",
  "classes": ["class names, label i is classes[i]"] | null, "num_classes": 16,
  "counts": {"listed": N, "written": W, "skipped": S},
  "splits": {"train": {"dir": "train", "samples": W_train, "per_class": {"0": 12, ...},
                       "shards": [{"path": "train/shard-00000.tar", "samples": 64,
                                   "bytes": 123, "sha256": "..."}]},
             "val": {...}},          # one split named "all" with dir "" when there is no val split
  "skipped": [{"split": "train", "path": "...", "key": "...", "reason": "corrupt or truncated: ..."}]
}
The document holds no timestamps, so a resumed job's manifest equals an uninterrupted one's.
"""
from __future__ import annotations

import json

from data_pipeline.errors import DataError
from data_pipeline.storage import open_destination

MANIFEST = "manifest.json"
ALL_SPLIT = "all"  # the split name of a job without --split-val (shards at the root)


def split_name(split_dir: str) -> str:
    return split_dir or ALL_SPLIT


def build_manifest(opts, source, plan, records: list[dict]) -> dict:
    splits: dict[str, dict] = {}
    skipped = []
    listed = 0
    for split_dir, items in plan.splits.items():
        listed += len(items)
        mine = sorted((r for r in records if r["split"] == split_dir), key=lambda r: r["part"])
        per_class: dict[str, int] = {}
        for r in mine:
            for k, v in r["per_class"].items():
                per_class[k] = per_class.get(k, 0) + v
            skipped.extend({"split": split_name(split_dir), **s} for s in r["skipped"])
        splits[split_name(split_dir)] = {
            "dir": split_dir,
            "samples": sum(r["samples"] for r in mine),
            "per_class": dict(sorted(per_class.items(), key=lambda kv: int(kv[0]))),
            "shards": [s for r in mine for s in r["shards"]],
        }
    written = sum(s["samples"] for s in splits.values())
    return {
        "format": opts.format, "image_format": opts.image_format, "quality": opts.quality,
        "resolution": opts.resolution, "resize": opts.resize,
        "source": source.description, "seed": opts.seed, "limit": opts.limit, "split_val": opts.split_val,
        "samples_per_shard": plan.samples_per_shard, "fingerprint": plan.fingerprint,
        "classes": source.classes, "num_classes": len(source.classes) if source.classes else None,
        "counts": {"listed": listed, "written": written, "skipped": len(skipped)},
        "splits": splits,
        "skipped": skipped,
    }


def read_manifest(root: str) -> dict:
    dest = open_destination(root)
    if not dest.exists(MANIFEST):
        raise DataError(f"{root} has no {MANIFEST}: it is not a finished `hieratok prepare` output "
                        f"(re-run prepare with the same options to complete it)")
    return json.loads(dest.read_text(MANIFEST))


def manifest_split(manifest: dict, root: str, split: str) -> dict:
    """The manifest entry of `split`; a job without a val split serves any split name from its root."""
    splits = manifest["splits"]
    if split in splits:
        return splits[split]
    if list(splits) == [ALL_SPLIT]:
        return splits[ALL_SPLIT]
    raise DataError(f"split '{split}' not in {root}; it holds: {', '.join(splits)}")
