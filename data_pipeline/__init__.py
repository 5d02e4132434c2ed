"""HieraTok's data pipeline: `prepare` (sharding) and the loaders.

    from data_pipeline import build_loader
    loader = build_loader(data_cfg, rank, world_size, seed, batch_size=B, train=True, split=None)

This package imports nothing heavy at import time (the config loader imports data_pipeline.config);
`build_loader` pulls in torch / streaming / webdataset on first use.
"""
from __future__ import annotations

__all__ = ["build_loader"]


def __getattr__(name: str):
    if name == "build_loader":
        from data_pipeline.loader import build_loader

        return build_loader
    raise AttributeError(f"module 'data_pipeline' has no attribute {name!r}")
