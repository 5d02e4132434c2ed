"""Remove the shared memory that killed `streaming` jobs left in /dev/shm, without touching a live one.

streaming's own `clean_stale_shared_memory()` unlinks every `NNNNNN_<name>` segment it finds, live
or not, so it breaks any other streaming job running on the machine (other users' tests, a second
training run). Here a prefix `NNNNNN` is stale only when
  * its segments are owned by our user (we can't and won't touch others'),
  * and no process can be seen holding any `NNNNNN_*` segment open or mapped: every process of
    our user is checked through /proc/<pid>/fd and /proc/<pid>/maps. A live streaming dataset keeps
    its segments mapped in the process that made it and in every DataLoader worker.
A prefix may have lost its `NNNNNN_locals` (unlinked by the resource tracker at exit) while an
`NNNNNN_epoch_shape`/`_epoch_data` stays: streaming makes those per epoch without auto-cleanup, so a
job killed between making and removing them leaves them behind. streaming then sees the prefix as
free, and the next job that claims it fails at its first epoch with `File exists:
/NNNNNN_epoch_shape`. Such orphans are stale too.
A stale prefix is removed in an order that keeps a starting job from claiming it half-way: its
other segments first, then its file locks in the temp dir, then `NNNNNN_locals` last (streaming
skips a prefix while its `locals` segment exists).
Limits: processes of our user in another PID namespace that share this /dev/shm are invisible
here; on such hosts don't call this (build_loader's `clean_stale_shm=False`).

`release_dataset_shm` frees a live dataset's segments once its job is done with it (MdsLoader.close).
"""
from __future__ import annotations

import atexit
import os
import re
import tempfile
from pathlib import Path

SHM_DIR = Path("/dev/shm")
_SEGMENT = re.compile(r"^(\d{6})_([a-z_]+)$")
_STREAMING_NAMES = {"locals", "barrier", "next_epoch", "cache_usage", "shard_states",
                    "shard_access_times", "resume", "epoch_shape", "epoch_data"}
_FILELOCKS = ("barrier_filelock", "cache_filelock")


def _our_segments() -> dict[str, list[Path]]:
    """prefix -> its streaming segments in /dev/shm that belong to our user."""
    by_prefix: dict[str, list[Path]] = {}
    if not SHM_DIR.is_dir():
        return by_prefix
    uid = os.getuid()
    for entry in os.scandir(SHM_DIR):
        m = _SEGMENT.match(entry.name)
        if not m or m.group(2) not in _STREAMING_NAMES:
            continue
        try:
            if entry.stat(follow_symlinks=False).st_uid != uid:
                continue
        except FileNotFoundError:
            continue
        by_prefix.setdefault(m.group(1), []).append(Path(entry.path))
    return by_prefix


def _segments_in_use() -> set[str]:
    """Names of /dev/shm entries that some process of ours holds open or mapped."""
    used: set[str] = set()
    uid = os.getuid()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        proc = Path("/proc", pid)
        try:
            if proc.stat().st_uid != uid:
                continue
            for fd in os.scandir(proc / "fd"):
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue
                if target.startswith("/dev/shm/"):
                    used.add(target[len("/dev/shm/"):].split(" ")[0])
            with open(proc / "maps") as f:
                for line in f:
                    i = line.find("/dev/shm/")
                    if i >= 0:
                        used.add(line[i + len("/dev/shm/"):].split(" ")[0].strip())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # the process ended meanwhile, or is not ours
    return used


def remove_stale_streaming_shm() -> list[str]:
    """Unlink the segments of dead streaming jobs of our user; returns the prefixes removed."""
    segments = _our_segments()
    if not segments:
        return []
    used = _segments_in_use()
    removed = []
    for prefix, segs in sorted(segments.items()):
        if any(s.name in used for s in segs):
            continue
        locals_seg = [s for s in segs if s.name.endswith("_locals")]
        for seg in [s for s in segs if s not in locals_seg]:
            seg.unlink(missing_ok=True)
        for lock in _FILELOCKS:
            try:
                Path(tempfile.gettempdir(), f"{prefix}_{lock}").unlink(missing_ok=True)
            except PermissionError:
                pass  # another user's lock file; the prefix stays skipped by streaming, which is harmless
        for seg in locals_seg:
            seg.unlink(missing_ok=True)
        removed.append(prefix)
    return removed


def release_dataset_shm(dataset) -> int:
    """Free a StreamingDataset's shared memory now, as its process's exit would; returns the segments freed.

    streaming registers each segment's cleanup with atexit, so a long-lived process (a Ray trial worker, a
    notebook) keeps every dataset's segments until it exits, and a Ray worker's exit kills its resource
    tracker before those handlers run, which then print a KeyError traceback per segment. Call this only
    when no rank will read the dataset again: the segments' names go (mappings stay valid)."""
    from streaming.base.shared.memory import SharedMemory

    found, seen = [], set()

    def walk(obj, depth: int) -> None:  # the dataset, then streaming's shared arrays, scalars and barrier
        if id(obj) in seen or depth > 4:
            return
        seen.add(id(obj))
        if isinstance(obj, SharedMemory):
            found.append(obj)
        elif obj is dataset or type(obj).__module__.startswith("streaming.base.shared"):
            for value in list(getattr(obj, "__dict__", {}).values()):
                walk(value, depth + 1)

    walk(dataset, 0)
    for shm in found:
        atexit.unregister(shm.cleanup)
        shm.cleanup()
    return len(found)
