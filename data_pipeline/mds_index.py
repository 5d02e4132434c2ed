"""Merge the `index.json` of MDS part folders into one index at their parent (streaming's
`merge_index`), for `prepare` and for the distributed latent cache."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from data_pipeline.storage import is_remote


def merge_part_indexes(part_index_urls: list[str], out: str) -> None:
    """Write `out/index.json` listing the shards of every part, in the order given. Each part must
    be a direct sub-folder of `out`. `out` may be local or s3://."""
    from streaming.base.util import merge_index

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.setLevel(logging.ERROR)  # merge_index announces its temp folder with a root-logger warning
    try:
        if is_remote(out):
            with tempfile.TemporaryDirectory(prefix="hieratok-merge-") as tmp:
                merge_index(part_index_urls, (tmp, out), keep_local=False)
        else:
            (Path(out) / "index.json").unlink(missing_ok=True)  # it will not move over an existing file
            merge_index(part_index_urls, out)
    finally:
        root.setLevel(level)
        for h in root.handlers[:]:
            if h not in handlers:  # logging.warning() ran basicConfig() on an unconfigured root
                root.removeHandler(h)
