"""HieraTok's data pipeline: `prepare` (sharding) and the loaders.

    from data_pipeline import build_loader
    loader = build_loader(data_cfg, rank, world_size, seed, batch_size=B, train=True, split=None)

Where things live:
  prepare/         `hieratok prepare`: sources -> parallel encode -> MDS / WDS shards -> manifest
  loading/         build_loader and the MDS / WDS readers, augmentation, bounded batch waits
  latent_cache/    the generator's latent cache: rows, per-rank parts, merged statistics
  config.py, errors.py                  the `data:` section; DataError
  storage.py                            a local folder or an s3:// destination
  manifest.py, mds_index.py             manifest.json; the merged MDS index.json
  streaming_import.py                   imports streaming without its example datasets (transformers)

This package imports nothing heavy at import time (the config loader imports data_pipeline.config);
`build_loader` pulls in torch / streaming / webdataset on first use.
"""
from __future__ import annotations

from data_pipeline.streaming_import import defer_streaming_examples

defer_streaming_examples()  # before anything imports streaming: skips its transformers import

__all__ = ["build_loader"]


def __getattr__(name: str):
    if name == "build_loader":
        from data_pipeline.loading.loader import build_loader

        return build_loader
    raise AttributeError(f"module 'data_pipeline' has no attribute {name!r}")
