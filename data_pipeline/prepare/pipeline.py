"""`prepare`: shard a source of images into WebDataset tars or MDS folders, in parallel, resumably.

    from data_pipeline.prepare.pipeline import run_prepare
    from data_pipeline.prepare.options import PrepareOptions
    manifest = run_prepare(PrepareOptions(src="embedded", out="data/embedded", format="mds"))

How it runs:
  1. List the source (paths and labels only) and fix the plan (shard_plan.py). `OUT/.prepare/plan.json`
     records it; a re-run with another source or other options is refused.
  2. A pool of `workers` processes reads, resizes and encodes the images of the parts that have no
     done-marker yet (`OUT/.prepare/parts/<part>.json`), in order (encode_pool.py); this process
     writes each part as they arrive into a local staging folder, then publishes it under its final
     name (part_writer.py). Memory is bounded: a few chunks of 8 encoded images are in flight, and
     one shard is open at a time.
  3. MDS: the parts' `index.json` files are merged per split with `streaming`'s `merge_index`.
  4. `manifest.json` is written last.
A killed job re-run with the same arguments skips finished parts (their shards are not touched),
rewrites the unfinished ones, and ends with the same shards and manifest as an uninterrupted run.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import tempfile
from pathlib import Path

from data_pipeline.errors import DataError
from data_pipeline.manifest import MANIFEST, build_manifest
from data_pipeline.mds_index import merge_part_indexes
from data_pipeline.prepare.encode_pool import encoded_in_order, init_encoder
from data_pipeline.prepare.options import PrepareOptions
from data_pipeline.prepare.part_writer import STATE_DIR, PartWriter, marker_path
from data_pipeline.prepare.shard_plan import Plan, fingerprint, make_plan
from data_pipeline.prepare.sources import open_source
from data_pipeline.storage import is_remote, join_url, open_destination

PLAN = f"{STATE_DIR}/plan.json"


def run_prepare(opts: PrepareOptions) -> dict:
    opts.validate()
    source = open_source(opts.src, seed=opts.seed, limit=opts.limit)
    dest = open_destination(opts.out)
    saved = _read_plan(dest, opts, fingerprint(source, opts))
    plan = make_plan(source, opts, saved["samples_per_shard"] if saved else None)
    if saved is None:
        dest.write_text(PLAN, json.dumps({"fingerprint": plan.fingerprint,
                                          "samples_per_shard": plan.samples_per_shard,
                                          "options": opts.fingerprint_fields()}, indent=1))
    done = {p.id: json.loads(dest.read_text(marker_path(p.id))) for p in plan.parts
            if dest.exists(marker_path(p.id))}
    todo = [p for p in plan.parts if p.id not in done]
    records = list(done.values()) + _run_parts(plan, todo, opts, dest, already=sum(
        len(p.items) for p in plan.parts if p.id in done))
    if opts.format == "mds":
        _merge_mds_indexes(plan, opts.out)
    manifest = build_manifest(opts, source, plan, records)
    dest.write_text(MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def _read_plan(dest, opts: PrepareOptions, fp: str) -> dict | None:
    if dest.exists(PLAN):
        saved = json.loads(dest.read_text(PLAN))
        if saved["fingerprint"] != fp:
            raise DataError(
                f"{opts.out} holds a prepare job with another source or other options "
                f"(saved: {saved['options']}); remove it or choose another --out")
        return saved
    if [n for n in dest.list("") if n != STATE_DIR]:
        raise DataError(f"--out {opts.out} is not empty and holds no prepare job; choose an empty or new folder")
    return None


def _run_parts(plan: Plan, todo, opts: PrepareOptions, dest, already: int) -> list[dict]:
    if not todo:
        return []
    total = sum(len(p.items) for p in plan.parts)
    items = [item for part in todo for item in part.items]
    remote = is_remote(opts.out)
    staging = Path(tempfile.mkdtemp(prefix="hieratok-prepare-")) if remote else Path(opts.out) / STATE_DIR / "staging"
    spec = opts.image_spec()
    warm_up(opts)
    workers = max(1, min(opts.workers, len(items)))
    bar = _progress_bar(opts, total, already)
    records = []
    # spawn: the workers import PIL and numpy only, never the torch behind streaming (encode_pool.py)
    pool = mp.get_context("spawn").Pool(workers, initializer=init_encoder, initargs=(spec,))
    try:
        encoded = encoded_in_order(pool, items, workers)
        for part in todo:
            writer = PartWriter(part, opts.format, spec.image_format, dest, staging)
            for item in part.items:
                writer.add(item, next(encoded))
                if bar is not None:
                    bar.update(1)
            records.append(writer.finish())
        pool.close()
        shutil.rmtree(staging, ignore_errors=True)  # every part was published: only empty folders left
    finally:
        pool.terminate()
        pool.join()
        if bar is not None:
            bar.close()
        if remote:
            shutil.rmtree(staging, ignore_errors=True)
    return records


def warm_up(opts: PrepareOptions) -> None:
    """Import the shard writer before the clock of a benchmark starts (the workers never import it)."""
    if opts.format == "mds":
        import streaming.base.format.mds.writer  # noqa: F401


def _progress_bar(opts: PrepareOptions, total: int, already: int):
    if not opts.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=already, unit="img", desc=f"prepare {opts.format}", smoothing=0.1)


def _merge_mds_indexes(plan: Plan, out: str) -> None:
    for split in plan.splits:
        parts = sorted((p for p in plan.parts if p.split == split), key=lambda p: p.index)
        merge_part_indexes(join_url(out, split), [p.rel_path("mds").rsplit("/", 1)[-1] for p in parts])
