"""Every README code block marked runnable (```bash runnable) works as written: the blocks run in
order, in one shell, in a fresh folder that sees the repository's configs/, bench/ and cluster/."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```bash runnable\n(.*?)^```", re.S | re.M)


def runnable_blocks() -> list[str]:
    return BLOCK.findall((REPO / "README.md").read_text())


def test_readme_has_runnable_blocks_for_every_command():
    text = "\n".join(runnable_blocks())
    for command in ("prepare", "train", "export", "eval", "encode", "sample", "fid", "launch", "model-info"):
        assert re.search(rf"\bhieratok {command}\b", text), f"no runnable README example of `hieratok {command}`"


@pytest.mark.timeout(1200)
def test_readme_runnable_blocks_work_as_written(tmp_path):
    for name in ("configs", "bench", "cluster"):
        (tmp_path / name).symlink_to(REPO / name)
    script = "set -euo pipefail\n" + "\n".join(runnable_blocks())
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", OMP_NUM_THREADS="1",
               WANDB_MODE="disabled")
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"README commands failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
