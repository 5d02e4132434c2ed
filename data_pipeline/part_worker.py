"""What one `prepare` worker process does with one part: read, resize and encode its images one at a
time, write them as one shard in the staging area, publish the shard under its final name, then
record the part as done. A part is the unit of resumption: its done-marker is written last.
"""
from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from data_pipeline.image_prep import ImageSpec, SkippedImage, prepared_bytes
from data_pipeline.shard_plan import Part
from data_pipeline.shard_writers import open_shard_writer, sha256_of
from data_pipeline.storage import open_destination

STATE_DIR = ".prepare"  # under the output root: plan.json and parts/<part id>.json
PROGRESS_EVERY = 4  # items between updates of the shared progress counter


def marker_path(part_id: str) -> str:
    return f"{STATE_DIR}/parts/{part_id}.json"


@dataclass
class PartJob:
    fmt: str
    spec: ImageSpec
    out: str  # the destination URL; each worker opens its own client
    staging: Path  # a local folder for shards being written


_job: PartJob | None = None
_dest = None
_progress = None  # multiprocessing.Value shared with the parent's progress bar


def init_worker(job: PartJob, progress) -> None:
    global _job, _dest, _progress
    _job, _dest, _progress = job, open_destination(job.out), progress


def _tick(n: int) -> None:
    if _progress is not None and n:
        with _progress.get_lock():
            _progress.value += n


def write_part(part: Part) -> dict:
    job = _job
    staging = job.staging / (part.id if job.fmt == "mds" else f"{part.id}.tar")
    if staging.is_dir():
        shutil.rmtree(staging)  # a half-written part of a killed run
    elif staging.exists():
        staging.unlink()
    staging.parent.mkdir(parents=True, exist_ok=True)

    writer = open_shard_writer(job.fmt, staging, job.spec.image_format)
    skipped, per_class, pending = [], Counter(), 0
    for item in part.items:
        try:
            data = prepared_bytes(item, job.spec)
        except SkippedImage as e:
            skipped.append({"path": item.describe(), "key": item.key, "reason": str(e)})
        else:
            writer.write(item.key, item.label, data)
            per_class[item.label] += 1
        pending += 1
        if pending == PROGRESS_EVERY:
            _tick(pending)
            pending = 0
    _tick(pending)
    files = writer.close()

    rel = part.rel_path(job.fmt)
    written = sum(per_class.values())
    shards = [{
        "path": f"{rel}/{f.name}" if job.fmt == "mds" else rel,
        "samples": written,
        "bytes": f.stat().st_size,
        "sha256": sha256_of(f),
    } for f in files]
    record = {
        "part": part.id, "split": part.split, "samples": written,
        "per_class": {str(k): v for k, v in sorted(per_class.items())},
        "shards": shards, "skipped": skipped,
    }
    if files or job.fmt == "mds":  # an MDS part keeps its (possibly empty) index.json for the merge
        _dest.publish(staging, rel)
    _dest.write_text(marker_path(part.id), json.dumps(record))
    return record
