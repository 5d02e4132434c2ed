"""What `prepare` reads: a folder tree, a file list, or `embedded`, as a list of `SourceItem`s.

Only paths and labels are listed here (small); images are opened later, one at a time, by the
workers. Every problem with the source as a whole (missing, empty, a malformed list) is a
`DataError` that names the source and what was expected.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from data_pipeline.errors import DataError
from data_pipeline.prepare.keys import key_from_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
EMBEDDED = "embedded"
NO_LABEL = -1


@dataclass(frozen=True)
class SourceItem:
    key: str
    label: int
    path: str | None = None  # a file on disk
    embedded_index: int | None = None  # sample number of the `embedded` dataset

    def describe(self) -> str:
        return self.path if self.path is not None else f"{EMBEDDED}:{self.embedded_index}"


@dataclass
class Source:
    kind: str  # folder | list | embedded
    description: str
    items: list[SourceItem]
    classes: list[str] | None  # label i is classes[i]; None for unlabelled or integer-labelled lists


def open_source(src: str, *, seed: int = 0, limit: int | None = None) -> Source:
    """List the items of SRC. `limit` caps `embedded` at generation time (others are capped later,
    after the shuffle, so a limited run is a random subset rather than the first classes)."""
    if src == EMBEDDED:
        return _embedded_source(seed, limit)
    path = Path(src)
    if not path.exists():
        raise DataError(
            f"source not found: {src} (expected a folder of class sub-folders, a text/CSV file list "
            f"of path[,label] lines, or '{EMBEDDED}')"
        )
    source = _folder_source(path) if path.is_dir() else _file_list_source(path)
    if not source.items:
        raise DataError(f"source {src} holds no images ({_EXPECTED[source.kind]})")
    return source


_EXPECTED = {
    "folder": f"expected class_name/*{{{','.join(IMAGE_SUFFIXES)}}} under it",
    "list": "expected lines of path[,label]",
}


def _embedded_source(seed: int, limit: int | None) -> Source:
    from data_pipeline.prepare.embedded import DEFAULT_COUNT, PHOTOS, embedded_class_names

    classes = embedded_class_names()
    count = DEFAULT_COUNT if limit is None else min(limit, DEFAULT_COUNT)
    items = [
        SourceItem(key=f"{EMBEDDED}/{classes[i % len(PHOTOS)]}/{i // len(PHOTOS):05d}",
                   label=i % len(PHOTOS), embedded_index=i)
        for i in range(count)
    ]
    return Source(EMBEDDED, f"{EMBEDDED} (scikit-image photos, seed {seed})", items, classes)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def _folder_source(root: Path) -> Source:
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    items: list[SourceItem] = []
    for label, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(root / name):
            dirnames.sort()
            for f in sorted(filenames):
                if _is_image(f):
                    full = os.path.join(dirpath, f)
                    items.append(SourceItem(key_from_path(os.path.relpath(full, root)), label, full))
    return Source("folder", f"folder tree {root}", items, classes or None)


def _file_list_source(list_path: Path) -> Source:
    base = list_path.parent
    rows: list[tuple[int, str, str | None]] = []
    try:
        with open(list_path, newline="", encoding="utf-8") as f:
            for lineno, row in enumerate(csv.reader(f), start=1):
                row = [c.strip() for c in row]
                if not row or not row[0] or row[0].startswith("#"):
                    continue
                if not rows and row[0].lower() == "path":  # header line
                    continue
                if len(row) > 2:
                    raise DataError(f"{list_path}:{lineno}: expected 'path[,label]', got {len(row)} fields: {row}")
                rows.append((lineno, row[0], row[1] if len(row) == 2 and row[1] else None))
    except UnicodeDecodeError as e:
        raise DataError(f"source {list_path} is not a text/CSV file list (or a folder): {e}") from None
    labelled = [r for r in rows if r[2] is not None]
    if labelled and len(labelled) != len(rows):
        first = next(r for r in rows if r[2] is None)
        raise DataError(f"{list_path}:{first[0]}: line has no label while other lines do; label every line or none")
    label_of, classes = _list_labels([r[2] for r in labelled])
    items, seen = [], {}
    for lineno, p, label in rows:
        key = key_from_path(p)
        if key in seen:
            raise DataError(f"{list_path}:{lineno}: '{p}' repeats the sample key of line {seen[key]} ({key})")
        seen[key] = lineno
        full = p if os.path.isabs(p) else str(base / p)
        items.append(SourceItem(key, label_of(label), full))
    return Source("list", f"file list {list_path}", items, classes)


def _list_labels(labels: list[str]):
    """Integer labels are used as given; class names map to their sorted index."""
    if not labels:
        return (lambda _: NO_LABEL), None
    if all(x.lstrip("-").isdigit() for x in labels):
        return (lambda x: int(x)), None
    classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    return (lambda x: index[x]), classes
