"""Every README code block marked runnable (```bash runnable) works as written: the blocks run in
order, in one shell, in a fresh folder that sees the repository's configs/, bench/ and cluster/. Where
the README shows a block's output, its JSON lines' deterministic fields (counts, steps, shapes, events,
names) must be what the block prints now; timings, losses and paths may differ."""
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```bash runnable\n(.*?)^```\n(?:```\n(.*?)^```\n)?", re.S | re.M)
MARK = "@@readme-block-{}@@"


def runnable_blocks() -> list[str]:
    return [code for code, _ in BLOCK.findall((REPO / "README.md").read_text())]


def shown_outputs() -> list[str]:
    """The output block that follows each runnable block ("" where none does)."""
    return [out for _, out in BLOCK.findall((REPO / "README.md").read_text())]


def deterministic(value):
    """What of a JSON value must not change between runs: ints, bools, names and lists of them; a
    float, a path or a hash is None (not compared)."""
    if isinstance(value, dict):
        return {k: deterministic(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [deterministic(v) for v in value]
        return None if any(v is None for v in items) and value else items
    if isinstance(value, float):
        return None
    if isinstance(value, str) and ("/" in value or re.fullmatch(r"[0-9a-f]{12,}", value)):
        return None
    return value


def json_lines(text: str) -> list:
    return [deterministic(json.loads(line)) for line in text.splitlines() if line.startswith("{")]


def test_deterministic_fields_ignore_timings_paths_and_hashes():
    shown = json_lines('{"step": 40, "loss": 0.41, "run_dir": "runs/a", "shape": [64, 8], "event": "resumed", '
                       '"mean": [0.1, 0.2], "sha": "e16d098de037111e"}')
    assert shown == [{"step": 40, "loss": None, "run_dir": None, "shape": [64, 8], "event": "resumed",
                      "mean": None, "sha": None}]
    assert json_lines('{"step": 41, "loss": 0.5}') != [{"step": 40, "loss": None}]


def test_readme_has_runnable_blocks_for_every_command():
    text = "\n".join(runnable_blocks())
    for command in ("prepare", "train", "export", "eval", "encode", "sample", "fid", "launch", "model-info"):
        assert re.search(rf"\bhieratok {command}\b", text), f"no runnable README example of `hieratok {command}`"


@pytest.mark.timeout(1200)
def test_readme_runnable_blocks_work_as_written(tmp_path):
    for name in ("configs", "bench", "cluster"):
        (tmp_path / name).symlink_to(REPO / name)
    script = "set -euo pipefail\n" + "\n".join(f"echo {MARK.format(i)}\n{block}" for i, block in enumerate(runnable_blocks()))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", OMP_NUM_THREADS="1",
               WANDB_MODE="disabled")
    proc = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=1140)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the blocks' own session: every process they started
        stdout, stderr = proc.communicate()
        marks = re.findall(r"^@@readme-block-(\d+)@@$", stdout, flags=re.M)
        block = runnable_blocks()[int(marks[-1])] if marks else "(none started)"
        pytest.fail(f"README block {marks[-1] if marks else '?'} ran past 1140 s:\n{block}\n"
                    f"its output so far:\n{stdout[-4000:]}\n{stderr[-8000:]}")
    assert proc.returncode == 0, f"README commands failed:\n{stdout[-4000:]}\n{stderr[-8000:]}"
    printed = re.split(r"^@@readme-block-\d+@@\n", stdout, flags=re.M)[1:]
    for code, shown, got in zip(runnable_blocks(), shown_outputs(), printed, strict=True):
        expected = json_lines(shown)
        if expected:
            assert json_lines(got) == expected, f"README output of\n{code}\nno longer matches what it prints:\n{got}"
