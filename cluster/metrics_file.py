"""Reading a run's `metrics.jsonl` (one JSON object a log step, written by rank 0), whole or as it grows."""
from __future__ import annotations

import json
from pathlib import Path


class MetricsTail:
    """New complete records of a growing metrics.jsonl, each call; a half-written last line waits."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._offset = 0

    def read_new(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # only whole lines
        self._offset += end
        return [json.loads(line) for line in chunk[:end].splitlines() if line.strip()]


def is_event(record: dict) -> bool:
    """The trainer also writes events (resumed, checkpoint_saved, ...) beside its log steps."""
    return "event" in record


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The log-step records of a run, in step order (events left out); a step logged twice (a
    resumed run redoing steps after its last checkpoint) keeps its last record."""
    by_step: dict[int, dict] = {}
    for record in MetricsTail(Path(run_dir) / "metrics.jsonl").read_new():
        if not is_event(record):
            by_step[int(record["step"])] = record
    return [by_step[s] for s in sorted(by_step)]
