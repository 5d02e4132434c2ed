"""`prepare`: shard a source of images into WebDataset tars or MDS folders, in parallel, resumably.

    from data_pipeline.prepare import run_prepare
    from data_pipeline.prepare_options import PrepareOptions
    manifest = run_prepare(PrepareOptions(src="embedded", out="data/embedded", format="mds"))

How it runs:
  1. List the source (paths and labels only) and fix the plan (shard_plan.py). `OUT/.prepare/plan.json`
     records it; a re-run with another source or other options is refused.
  2. A pool of `workers` processes writes the parts that have no done-marker yet
     (`OUT/.prepare/parts/<part>.json`), each into a local staging folder, then publishes it under
     its final name. Memory is bounded: a worker holds one image and one shard (MDS) at a time.
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
import time
from pathlib import Path

from data_pipeline.errors import DataError
from data_pipeline.manifest import MANIFEST, build_manifest
from data_pipeline.mds_index import merge_part_indexes
from data_pipeline.part_worker import STATE_DIR, PartJob, init_worker, marker_path, write_part
from data_pipeline.prepare_options import PrepareOptions
from data_pipeline.shard_plan import Plan, fingerprint, make_plan
from data_pipeline.sources import open_source
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
    total = sum(len(p.items) for p in plan.parts)
    if not todo:
        return []
    remote = is_remote(opts.out)
    staging = Path(tempfile.mkdtemp(prefix="hieratok-prepare-")) if remote else Path(opts.out) / STATE_DIR / "staging"
    job = PartJob(opts.format, opts.image_spec(), opts.out, staging)
    warm_up(opts)
    ctx = mp.get_context("fork")  # workers inherit the imported libraries instead of re-importing them
    progress = ctx.Value("q", 0)
    bar = _progress_bar(opts, total, already)
    records = []
    pool = ctx.Pool(min(opts.workers, len(todo)), initializer=init_worker, initargs=(job, progress))
    try:
        pending = [pool.apply_async(write_part, (p,)) for p in todo]
        shown = 0
        while pending:
            time.sleep(0.1)
            still = []
            for r in pending:
                if r.ready():
                    records.append(r.get())  # re-raises a worker's unexpected error here
                else:
                    still.append(r)
            pending = still
            if bar is not None and progress.value > shown:
                bar.update(progress.value - shown)
                shown = progress.value
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
    """Import the writer and load the embedded photos once, before forking the workers."""
    if opts.format == "mds":
        import streaming.base.format.mds.writer  # noqa: F401
    if opts.src == "embedded":
        from data_pipeline.embedded import load_photos

        load_photos()


def _progress_bar(opts: PrepareOptions, total: int, already: int):
    if not opts.progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=already, unit="img", desc=f"prepare {opts.format}", smoothing=0.1)


def _merge_mds_indexes(plan: Plan, out: str) -> None:
    for split in plan.splits:
        parts = sorted((p for p in plan.parts if p.split == split), key=lambda p: p.index)
        merge_part_indexes(join_url(out, split), [p.rel_path("mds").rsplit("/", 1)[-1] for p in parts])
