"""`hieratok fid`: lands with its issue; until then it says so instead of pretending."""
from __future__ import annotations

import sys


def add_arguments(p) -> None:
    pass


def run(args) -> int:
    print("hieratok fid: not yet available in this version", file=sys.stderr)
    return 2
