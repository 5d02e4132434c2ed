"""Merge the `index.json` of MDS part folders into one index at their parent (streaming's
`merge_index`), for `prepare` and for the distributed latent cache."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from data_pipeline.storage import is_remote, open_destination


def merge_part_indexes(out: str, parts: list[str]) -> None:
    """Write `out/index.json` listing the shards of the part folders `out/<part>/`, in the order
    given. `out` may be local or s3://; remote part indexes are fetched with one client (streaming
    would open a new client for each) and the merged index is uploaded by streaming."""
    from streaming.base.util import merge_index

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.setLevel(logging.ERROR)  # merge_index announces its temp folder with a root-logger warning
    try:
        if is_remote(out):
            dest = open_destination(out)
            with tempfile.TemporaryDirectory(prefix="hieratok-merge-") as tmp:
                local = []
                for part in parts:
                    path = Path(tmp, "parts", part, "index.json")
                    path.parent.mkdir(parents=True)
                    path.write_text(dest.read_text(f"{part}/index.json"))
                    local.append(str(path))
                merge_index(local, (str(Path(tmp, "merged")), out), keep_local=False)
        else:
            (Path(out) / "index.json").unlink(missing_ok=True)  # it will not move over an existing file
            merge_index([str(Path(out, p, "index.json")) for p in parts], out)
    finally:
        root.setLevel(level)
        for h in root.handlers[:]:
            if h not in handlers:  # logging.warning() ran basicConfig() on an unconfigured root
                root.removeHandler(h)
