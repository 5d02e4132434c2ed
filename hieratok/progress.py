"""Progress bars for the long commands (sample, encode, eval, fid, ablate): tqdm on rank 0, written to
stderr when it is a terminal, off with `--no-progress` (logs and pipes get none either way)."""
from __future__ import annotations

import os
import sys

_enabled = True


def set_enabled(enabled: bool) -> None:
    """Each command sets it from its `--no-progress` before it starts."""
    global _enabled
    _enabled = bool(enabled)


def _rank() -> int:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def bar(iterable, *, desc: str, total: int | None = None, unit: str = "batch"):
    """`iterable`, wrapped in a tqdm bar where one is wanted."""
    if not _enabled or _rank() != 0:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, disable=None, dynamic_ncols=True,
                mininterval=0.5)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def counter(*, desc: str, total: int, unit: str, file=None):
    """A bar advanced by hand (`update(n)`, `close()`), for work that is not one loop: the runs of an
    ablation finishing in Ray. `file`: another stream than stderr, shown whether or not it is a terminal."""
    if not _enabled or _rank() != 0:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(desc=desc, total=total, unit=unit, file=file or sys.stderr, disable=False if file else None,
                dynamic_ncols=True, mininterval=0.5)
