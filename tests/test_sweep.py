"""`hieratok sweep` on a real local Ray (2 CPUs): a 4-trial ASHA sweep, interrupted with Ctrl-C and
continued with --resume, finishes, stops weak trials early, and writes its table and best config."""
import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hieratok.config.loader import load_config

TESTS = Path(__file__).resolve().parent
CONFIG = Path("configs/tokenizer/tiny_single.yaml").resolve()
MAX_STEPS = 12
# the strong learning rates run first, so the weak ones meet a filled rung and are cut
LRS = [3e-2, 1e-2, 1e-5, 1e-6]


def write_sweep(tmp_path: Path, name: str, data: Path) -> Path:
    sweep = {
        "name": name, "config": str(CONFIG),
        "overrides": [f"data.path={data}", f"train.max_steps={MAX_STEPS}", "train.warmup_steps=0",
                      "checkpoint.every_steps=4", "logging.every_steps=1", "logging.progress=false"],
        "space": {"train.lr": {"grid": LRS}}, "metric": "loss", "mode": "min",
        "asha": {"grace_period": 4, "reduction_factor": 2}, "max_concurrent_trials": 2,
        "storage": "sweeps",  # relative to where the sweep starts; trials run elsewhere
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def sweep_command(sweep_file: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "hieratok", "sweep", "--config", str(sweep_file), *extra]


def read_table(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "results.csv") as f:
        return list(csv.DictReader(f))


def test_interrupted_asha_sweep_resumes_stops_weak_trials_and_writes_results(tmp_path, embedded_mds):
    sweep_file = write_sweep(tmp_path, "lr", embedded_mds)
    sweep_dir = tmp_path / "sweeps" / "lr"
    driver = subprocess.Popen(sweep_command(sweep_file), cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not any(p.stat().st_size for p in sweep_dir.glob("runs/*/metrics.jsonl")):
        assert driver.poll() is None and time.monotonic() < deadline, "the sweep never started training"
        time.sleep(0.5)
    driver.send_signal(signal.SIGINT)  # Ctrl-C: Tune saves the experiment state and stops
    output, _ = driver.communicate(timeout=120)
    assert driver.returncode == 130 and "continue it with --resume" in output, output[-3000:]
    assert not (sweep_dir / "results.csv").exists()

    again = subprocess.run(sweep_command(sweep_file), cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 2 and "pass --resume" in again.stderr

    out = subprocess.run(sweep_command(sweep_file, "--resume"), cwd=tmp_path, capture_output=True, text=True,
                         timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = read_table(sweep_dir)
    assert sorted(r["trial"] for r in rows) == sorted(p.name for p in (sweep_dir / "runs").iterdir())
    assert len(rows) == 4 and {r["status"] for r in rows} <= {"finished", "stopped early"}
    stopped = [r for r in rows if r["status"] == "stopped early"]
    assert stopped and all(int(r["steps"]) < MAX_STEPS for r in stopped)
    assert rows[0]["status"] == "finished" and float(rows[0]["train.lr"]) in LRS[:2]
    assert "| trial | train.lr | steps | final_loss | best_loss | status | node |" in (sweep_dir / "results.md").read_text()
    best = load_config(sweep_dir / "best_config.yaml")
    assert best.train.lr == float(rows[0]["train.lr"]) and best.train.max_steps == MAX_STEPS
    assert best.checkpoint.on_signal  # as a user trains it, not as a trial ran


def test_bad_sweep_file_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"config": str(CONFIG), "space": {"train.lrr": {"grid": [1, 2]}}}))
    out = subprocess.run(sweep_command(bad), capture_output=True, text=True)
    assert out.returncode == 2 and "unknown config key 'train.lrr'" in out.stderr
    bad.write_text(yaml.safe_dump({"config": str(CONFIG), "space": {"train.lr": {"uniform": [1, 0]}}}))
    out = subprocess.run(sweep_command(bad), capture_output=True, text=True)
    assert out.returncode == 2 and "space.train.lr.uniform needs [low, high]" in out.stderr


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(TESTS.parent)
