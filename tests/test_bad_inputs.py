"""Bad inputs end in a clear error or a safe recovery, and nothing is lost: a damaged checkpoint
(a DCP shard or a DeepSpeed rank file gone) makes training resume from the one before it and say so;
a torn metrics.jsonl tail is dropped on resume; a weights file of the wrong shape is one clear line."""
import json
import subprocess
import sys

import pytest

from hieratok.metrics_file import read_records
from train_runs import REPO, env, metrics, run_train, tiny_overrides

FIRST, EVERY, MORE = 6, 2, 8


def _steps(run_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in metrics(run_dir)}


@pytest.mark.parametrize("backend, damaged", [
    ("ddp", "dcp/*.distcp"),
    ("deepspeed", "ds/state/*optim_states.pt"),
])
def test_a_damaged_latest_checkpoint_resumes_from_the_one_before(tmp_path, embedded_mds, backend, damaged):
    run_dir = tmp_path / "run"
    common = {"checkpoint.every_steps": EVERY, "checkpoint.keep_last": 3, "dist.backend": backend,
              "dist.zero_stage": 2}
    # stopped at FIRST under the schedule of MORE steps, so the redone steps can be compared exactly
    run_train(run_dir, tiny_overrides(embedded_mds, **common, **{"train.max_steps": MORE, "train.stop_at_step": FIRST}))
    first = _steps(run_dir)
    files = sorted((run_dir / "checkpoints" / f"step_{FIRST:08d}").glob(damaged))
    assert files, f"no {damaged} in the checkpoint: the test damages nothing"
    files[0].unlink()

    proc = run_train(run_dir, tiny_overrides(embedded_mds, **common, **{"train.max_steps": MORE}))
    assert f"checkpoint {run_dir / 'checkpoints' / f'step_{FIRST:08d}'} is unreadable" in proc.stderr, proc.stderr[-3000:]
    events = [r for r in read_records(run_dir / "metrics.jsonl") if "event" in r]
    assert [e["path"] for e in events if e["event"] == "checkpoint_unreadable"] == \
        [str(run_dir / "checkpoints" / f"step_{FIRST:08d}")]
    resumed = [e for e in events if e["event"] == "resumed"]
    assert resumed[-1]["path"].endswith(f"step_{FIRST - EVERY:08d}") and resumed[-1]["step"] == FIRST - EVERY
    again = _steps(run_dir)
    assert sorted(again) == list(range(1, MORE + 1))
    # the steps redone after the fallback are the steps first trained: the resume is exact
    for step in range(FIRST - EVERY + 1, FIRST + 1):
        assert again[step] == pytest.approx(first[step], rel=1e-6, abs=1e-7), step


def test_no_readable_checkpoint_is_one_line_and_deletes_nothing(tmp_path, embedded_mds):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(embedded_mds, **{"checkpoint.every_steps": EVERY, "train.max_steps": 4})
    run_train(run_dir, overrides)
    for shard in (run_dir / "checkpoints").glob("step_*/dcp/*.distcp"):
        shard.unlink()
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    proc = run_train(run_dir, overrides[:-1] + ["train.max_steps=6"], check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "no checkpoint in" in lines[-1] and "step_00000004" in lines[-1] and "step_00000002" in lines[-1]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == kept


def test_a_torn_metrics_tail_is_dropped_on_resume(tmp_path, embedded_mds):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(embedded_mds, **{"checkpoint.every_steps": EVERY, "train.max_steps": 4})
    run_train(run_dir, overrides)
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "loss": 0.4')  # a writer killed mid-line
    proc = run_train(run_dir, overrides[:-1] + ["train.max_steps=6"])
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # every line whole again
    assert sorted(_steps(run_dir)) == [1, 2, 3, 4, 5, 6]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["step"] == 6


def test_weights_of_the_wrong_shape_are_one_line(tmp_path):
    import torch

    from hieratok.config.loader import load_config
    from hieratok.tokenizer.model import Tokenizer

    torch.manual_seed(0)
    export = tmp_path / "export"
    Tokenizer(load_config("configs/tokenizer/tiny_single.yaml").model).save_pretrained(export)
    config = json.loads((export / "config.json").read_text())
    config["latent_channels"] = 6  # the weights were made for 8
    (export / "config.json").write_text(json.dumps(config))
    proc = subprocess.run([sys.executable, "-m", "hieratok", "encode", "--tokenizer", str(export), "--data",
                           str(tmp_path), "--out", str(tmp_path / "cache")], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1 and "model.safetensors does not fit" in lines[0] and "size mismatch" in lines[0], lines
