"""Checkpoint folders: atomic publication, the `latest` pointer, retention, and stale-temp cleanup.

A checkpoint is written into `checkpoints/.tmp-step_XXXXXXXX/` by every rank, then rank 0 renames
it to `step_XXXXXXXX/` and only then rewrites `latest` (via a temp file and os.replace). A run
killed at any point therefore leaves `latest` naming a complete checkpoint, or no checkpoint.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

LATEST = "latest"
TMP_PREFIX = ".tmp-"
STATE_FILE = "trainer_state.json"


def step_name(step: int) -> str:
    return f"step_{step:08d}"


class CheckpointDirs:
    def __init__(self, run_dir: str | Path, keep_last: int):
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = max(1, keep_last)

    def latest(self) -> Path | None:
        """The checkpoint named by `latest`, if it is complete."""
        pointer = self.root / LATEST
        if not pointer.exists():
            return None
        path = self.root / pointer.read_text().strip()
        if not (path / STATE_FILE).exists():
            raise RuntimeError(f"{pointer} names {path}, which is not a complete checkpoint (no {STATE_FILE})")
        return path

    def staging(self, step: int) -> Path:
        return self.root / f"{TMP_PREFIX}{step_name(step)}"

    def prepare_staging(self, step: int) -> Path:
        """(rank 0) an empty staging folder for `step`."""
        tmp = self.staging(step)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def publish(self, step: int) -> Path:
        """(rank 0) rename the staged checkpoint into place, then point `latest` at it, then prune."""
        final = self.root / step_name(step)
        if final.exists():  # a re-save of the same step (e.g. preempted right after a periodic save)
            shutil.rmtree(final)
        os.replace(self.staging(step), final)
        tmp_pointer = self.root / f"{TMP_PREFIX}{LATEST}"
        tmp_pointer.write_text(final.name)
        os.replace(tmp_pointer, self.root / LATEST)
        self._prune(keep=final)
        return final

    def _prune(self, keep: Path) -> None:
        steps = sorted(p for p in self.root.glob("step_*") if p.is_dir())
        for old in steps[: max(0, len(steps) - self.keep_last)]:
            if old != keep:
                shutil.rmtree(old, ignore_errors=True)

    def remove_stale_staging(self) -> list[Path]:
        """(rank 0, at start-up) delete half-written checkpoints left by a killed run."""
        stale = [p for p in self.root.glob(f"{TMP_PREFIX}*")] if self.root.exists() else []
        for p in stale:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        return stale


def write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def read_trainer_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / STATE_FILE).read_text())
