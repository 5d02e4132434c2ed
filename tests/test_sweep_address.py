"""`hieratok sweep --address` joins a Ray cluster that is already running (here `ray start --head`)
instead of starting its own."""
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    port = free_port()
    log = open(tmp_path / "ray_head.log", "w+")
    head = subprocess.Popen([str(RAY), "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats"], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(240):
            log.seek(0)
            if "Ray runtime started" in log.read():
                break
            assert head.poll() is None, "ray start exited"
            time.sleep(0.5)
        else:
            pytest.fail("the Ray head did not start")
        yield f"127.0.0.1:{port}"
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
        head.wait(timeout=60)
        log.close()


def test_sweep_joins_a_running_ray_cluster(ray_head, embedded_mds, tmp_path):
    sweep_file = tmp_path / "joined.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "name": "joined", "config": str(Path("configs/tokenizer/tiny_single.yaml").resolve()),
        "overrides": [f"data.path={embedded_mds}", "train.max_steps=4", "logging.every_steps=1",
                      "logging.progress=false"],
        "space": {"train.lr": {"choice": [1e-2, 1e-3]}}, "num_samples": 2, "asha": {"grace_period": 2},
        "storage": str(tmp_path / "sweeps"),
    }))
    out = subprocess.run([sys.executable, "-m", "hieratok", "sweep", "--config", str(sweep_file),
                          "--address", ray_head], capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Connected to Ray cluster" in out.stderr and "Started a local Ray instance" not in out.stderr
    assert (tmp_path / "sweeps" / "joined" / "results.csv").read_text().count("\n") == 3  # header + 2 trials
