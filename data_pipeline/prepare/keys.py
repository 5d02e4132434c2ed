"""Sample keys: stable ids that are safe as WebDataset tar member names and MDS strings.

WebDataset splits a member name at the first dot of its basename (`a/b.c.jpg` -> key `a/b`,
suffix `c.jpg`), so a key must hold no dot. Dots (and `%`, to keep the mapping reversible and
keys unique) are percent-encoded; path separators become `/`; a leading `/` is dropped.
"""
from __future__ import annotations

import os
import posixpath


def key_from_path(path: str) -> str:
    """The key of a file path as written in a folder tree or file list: its extension dropped."""
    norm = posixpath.normpath(path.replace(os.sep, "/")).lstrip("/")
    stem, _ = posixpath.splitext(norm)
    return stem.replace("%", "%25").replace(".", "%2E")
