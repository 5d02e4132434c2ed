"""HieraTok's data pipeline: `prepare` (sharding) and the loaders.

    from data_pipeline import build_loader
    loader = build_loader(data_cfg, rank, world_size, seed, batch_size=B, train=True, split=None)

Where things live:
  prepare.py          `hieratok prepare`: plan -> parallel part workers -> MDS index merge -> manifest
    sources.py, embedded.py, keys.py      what is read (folder tree, file list, `embedded`)
    image_prep.py                         one image -> stored bytes, or a skip with its reason
    shard_plan.py                         which sample goes to which shard; one shard per part
    encode_pool.py, part_writer.py        workers encode images; this process writes each part
    shard_writers.py, storage.py          MDS/WDS writers; local folder or s3:// destination
    manifest.py, mds_index.py             manifest.json; merged MDS index.json
  loader.py           build_loader (the entry point; its docstring is the contract)
    mds_loader.py, wds_loader.py          the two readers and their resume guarantees
    decode.py, augment.py                 bytes -> uint8; crop/flip from (seed, epoch, key), collate
    streaming_world.py, shm_cleanup.py    streaming's rank/world detection; stale /dev/shm cleanup
    streaming_import.py                   imports streaming without its example datasets (transformers)
  latent_rows.py, latent_stats.py         the generator's latent cache (writer, merge, stats)

This package imports nothing heavy at import time (the config loader imports data_pipeline.config);
`build_loader` pulls in torch / streaming / webdataset on first use.
"""
from __future__ import annotations

from data_pipeline.streaming_import import defer_streaming_examples

defer_streaming_examples()  # before anything imports streaming: skips its transformers import

__all__ = ["build_loader"]


def __getattr__(name: str):
    if name == "build_loader":
        from data_pipeline.loader import build_loader

        return build_loader
    raise AttributeError(f"module 'data_pipeline' has no attribute {name!r}")
