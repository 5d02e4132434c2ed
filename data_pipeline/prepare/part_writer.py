"""One part of a `prepare` job -> one shard: written into the staging area as its images arrive,
published under its final name, then recorded as done. A part is the unit of resumption: its
done-marker is written last.
"""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

from data_pipeline.prepare.image_prep import SkippedImage
from data_pipeline.prepare.shard_plan import Part
from data_pipeline.prepare.shard_writers import open_shard_writer, sha256_of
from data_pipeline.prepare.sources import SourceItem

STATE_DIR = ".prepare"  # under the output root: plan.json and parts/<part id>.json


def marker_path(part_id: str) -> str:
    return f"{STATE_DIR}/parts/{part_id}.json"


class PartWriter:
    def __init__(self, part: Part, fmt: str, image_format: str, dest, staging_root: Path):
        self.part, self.fmt, self.dest = part, fmt, dest
        self.staging = staging_root / (part.id if fmt == "mds" else f"{part.id}.tar")
        if self.staging.is_dir():
            shutil.rmtree(self.staging)  # a half-written part of a killed run
        elif self.staging.exists():
            self.staging.unlink()
        self.staging.parent.mkdir(parents=True, exist_ok=True)
        self._writer = open_shard_writer(fmt, self.staging, image_format)
        self.skipped: list[dict] = []
        self.per_class: Counter = Counter()

    def add(self, item: SourceItem, encoded: bytes | SkippedImage) -> None:
        if isinstance(encoded, SkippedImage):
            self.skipped.append({"path": item.describe(), "key": item.key, "reason": str(encoded)})
        else:
            self._writer.write(item.key, item.label, encoded)
            self.per_class[item.label] += 1

    def finish(self) -> dict:
        """Close the shard, publish it and write the done-marker; returns the part's record."""
        files = self._writer.close()
        rel = self.part.rel_path(self.fmt)
        written = sum(self.per_class.values())
        shards = [{
            "path": f"{rel}/{f.name}" if self.fmt == "mds" else rel,
            "samples": written,
            "bytes": f.stat().st_size,
            "sha256": sha256_of(f),
        } for f in files]
        record = {
            "part": self.part.id, "split": self.part.split, "samples": written,
            "per_class": {str(k): v for k, v in sorted(self.per_class.items())},
            "shards": shards, "skipped": self.skipped,
        }
        if files or self.fmt == "mds":  # an MDS part keeps its (possibly empty) index.json for the merge
            self.dest.publish(self.staging, rel)
        self.dest.write_text(marker_path(self.part.id), json.dumps(record))
        return record
