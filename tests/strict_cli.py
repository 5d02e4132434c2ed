"""The `hieratok` CLI with every hot path run under `strict_devices()` (see device_discipline.py).

Run it as the CLI is run (`python tests/strict_cli.py train --config ... [overrides]`, or under
torchrun). Strict: each optimizer step, the tokenizer's and the generator's forward, encode and
decode (which eval, encode and the demo call), and each sampling batch. A tensor made there
without a device lands on `meta`, and a matmul or conv of mixed dtypes outside autocast raises: either
fails the command as it would on CUDA; the moved call sites
are printed as one `strict_devices:` JSON line at exit.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from device_discipline import strict_devices  # noqa: E402
from hieratok.cli import main  # noqa: E402
from hieratok.generator import sample_run  # noqa: E402
from hieratok.generator.model import Generator  # noqa: E402
from hieratok.tokenizer.model import Tokenizer  # noqa: E402
from hieratok.train.loop import TrainLoop  # noqa: E402

moved: set[str] = set()

# `torch.is_autocast_enabled()` without a device asks about CUDA only. Libraries call it so (DeepSpeed's engine
# decides by it whether to turn an outer autocast off around its forward), so on a CPU they take another branch
# than on a GPU. Here the argument-less form asks about the CPU, the device these runs use: the GPU's branch.
_is_autocast_enabled = torch.is_autocast_enabled
torch.is_autocast_enabled = lambda device_type=None: _is_autocast_enabled(device_type or "cpu")


def _strict(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with strict_devices() as mode:
            try:
                return fn(*args, **kwargs)
            finally:
                moved.update(mode.moved)
    return wrapper


for owner, name in ((TrainLoop, "_train_step"), (Tokenizer, "forward"), (Tokenizer, "encode"),
                    (Tokenizer, "decode"), (Generator, "forward"), (sample_run, "generate")):
    setattr(owner, name, _strict(getattr(owner, name)))

if __name__ == "__main__":
    try:
        code = main(sys.argv[1:])
    finally:
        print("strict_devices: " + json.dumps(sorted(moved)), flush=True)
    sys.exit(code)
