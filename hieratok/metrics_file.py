"""Reading a run's `metrics.jsonl` (one JSON object a log step or event, written by rank 0), whole or as it
grows. A line torn by a killed writer is skipped wherever the file is read. The same JSON-lines form,
one record a step, is used by the key logs (keys_rank<R>.jsonl), which a resume trims the same way."""
from __future__ import annotations

import json
import os
from pathlib import Path


class MetricsTail:
    """New complete records of a growing metrics.jsonl, each call; a half-written last line waits.

    A resumed trainer rewrites the file in place (it drops the steps after its checkpoint), so each
    call first checks that the last line read is still where it was; if not, it reads from the top
    again and the caller sees those steps once more.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._offset = 0
        self._last_line = b""  # the last complete line read, ending at _offset

    def _unchanged(self, f) -> bool:
        start = self._offset - len(self._last_line)
        f.seek(start)
        return f.read(len(self._last_line)) == self._last_line

    def read_new(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            if self._offset and not self._unchanged(f):
                self._offset, self._last_line = 0, b""
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # only whole lines
        lines = chunk[:end].splitlines(keepends=True)
        if lines:
            self._offset += end
            self._last_line = lines[-1]
        return [record for line in lines if (record := _parse(line)) is not None]


def _parse(line: bytes) -> dict | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None  # a line torn by a killed writer
    return record if isinstance(record, dict) else None


def is_event(record: dict) -> bool:
    """The trainer also writes events (resumed, checkpoint_saved, ...) beside its log steps."""
    return "event" in record


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The log-step records of a run, in step order (events left out); a step logged twice (a
    resumed run redoing steps after its last checkpoint) keeps its last record."""
    by_step: dict[int, dict] = {}
    for record in MetricsTail(Path(run_dir) / "metrics.jsonl").read_new():
        if not is_event(record) and "step" in record:
            by_step[int(record["step"])] = record
    return [by_step[s] for s in sorted(by_step)]


def train_seconds(run_dir: str | Path) -> float | None:
    """The wall seconds a run trained for, summed over its resumes (its last log row's `train_seconds`;
    None for a run from before that column)."""
    rows = read_metrics(run_dir)
    return rows[-1].get("train_seconds") if rows else None


def read_records(path: str | Path) -> list[dict]:
    """Every complete record of a metrics.jsonl in file order, events included (a torn line skipped)."""
    return MetricsTail(path).read_new()


def truncate_after(path: str | Path, step: int) -> None:
    """Keep the records up to `step`: a resumed run redoes the steps after its checkpoint and writes
    them again. A line torn by a kill goes too."""
    path = Path(path)
    if not path.exists():
        return
    kept = [r for r in read_records(path) if r.get("step", 0) <= step]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, path)  # a crash mid-rewrite leaves the old file, never a truncated one
