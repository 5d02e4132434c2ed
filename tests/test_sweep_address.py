"""`hieratok sweep --address` joins a Ray cluster that is already running instead of starting its own:
here a 2-node one on this machine, started as users start one (`ray start --head`, then `ray start
--address` for a second node; 1 CPU each), so the two concurrent trials run one a node, and their
results land in the storage path the sweep names, which both nodes share."""
import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cluster.sweep import clusters_token_env

RAY = Path(sys.executable).with_name("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_start(log_path: Path, *args: str) -> subprocess.Popen:
    """`ray start --block ...`, returned once its log says the node is up."""
    with open(log_path, "w") as log:  # the node writes on through its own descriptor
        # as the sweep joins: a node joining a cluster that has a token must send it
        node = subprocess.Popen([str(RAY), "start", "--block", "--num-cpus=1", "--disable-usage-stats", *args],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **clusters_token_env()})
    deadline = time.monotonic() + 240
    while "Ray runtime started" not in log_path.read_text():
        assert node.poll() is None, f"ray start exited:\n{log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"the Ray node did not start:\n{log_path.read_text()[-3000:]}"
        time.sleep(0.5)
    return node


@pytest.fixture
def two_node_ray(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    nodes = [ray_start(tmp_path / "ray_head.log", "--head", f"--port={address.split(':')[1]}",
                       "--include-dashboard=false")]
    try:
        nodes.append(ray_start(tmp_path / "ray_worker.log", f"--address={address}"))
        yield address
    finally:
        for node in reversed(nodes):  # `ray start --block` stops what it started
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=60)


def test_sweep_joins_a_running_ray_cluster_and_spreads_over_its_nodes(two_node_ray, embedded_mds, tmp_path):
    sweep_file = tmp_path / "joined.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "name": "joined", "config": str(Path("configs/tokenizer/tiny_single.yaml").resolve()),
        "overrides": [f"data.path={embedded_mds}", "train.max_steps=4", "logging.every_steps=1",
                      "logging.progress=false"],
        "space": {"train.lr": {"choice": [1e-2, 1e-3]}}, "num_samples": 2, "asha": {"grace_period": 2},
        "max_concurrent_trials": 2, "storage": str(tmp_path / "sweeps"),
    }))
    out = subprocess.run([sys.executable, "-m", "hieratok", "sweep", "--config", str(sweep_file),
                          "--address", two_node_ray], capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Connected to Ray cluster" in out.stderr and "Started a local Ray instance" not in out.stderr
    with open(tmp_path / "sweeps" / "joined" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {r["status"] for r in rows} == {"finished"}, rows
    assert len({r["node"] for r in rows}) == 2 and all(rows[0]["node"]), rows  # one trial a node: 1 CPU each
    for row in rows:  # each trial's run dir in the shared storage path
        assert (tmp_path / "sweeps" / "joined" / "runs" / row["trial"] / "metrics.jsonl").exists()
