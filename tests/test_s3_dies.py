"""An S3 endpoint that dies mid-read (issue 15.8): training from an MDS remote whose server is killed
stops with one closing line naming the data (exit 2) and a checkpoint of every finished step; once the
data is reachable again, the same command resumes there and finishes, each step's samples logged once."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from train_runs import REPO, HeldRun, env, keys_by_step, latest_step, run_train, tiny_overrides
from hieratok.metrics_file import read_records

BUCKET, PREFIX = "hieratok-dies", "emb"
TIMEOUT_S = 15


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _s3_with_data(port: int) -> subprocess.Popen:
    """A moto server on `port` holding the embedded photos (256, 32 px, 8 a shard) at s3://BUCKET/PREFIX."""
    import boto3

    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:  # noqa: BLE001 - the server is still starting
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.2)
    subprocess.run([sys.executable, "-m", "hieratok", "prepare", "--src", "embedded", "--out", f"s3://{BUCKET}/{PREFIX}",
                    "--format", "mds", "--resolution", "32", "--split-val", "0.1", "--limit", "256",
                    "--samples-per-shard", "8", "--workers", "2", "--no-progress"],
                   cwd=REPO, env=env(), check=True, capture_output=True, timeout=300)
    return server


def test_a_dying_endpoint_is_one_line_with_the_finished_steps_saved(tmp_path, monkeypatch):
    port = _free_port()
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    run_dir, url = tmp_path / "run", f"s3://{BUCKET}/{PREFIX}"
    # 230 training images: 28 steps an epoch at batch 8, so 20 steps never come back to a shard already read
    # no periodic checkpoints: the one written when the data fails is what the resume starts from.
    # A dead endpoint may surface only as no batch within data.timeout_s (below), so the test waits that
    # long: 15 s, where a healthy batch from the local server takes well under a second
    overrides = tiny_overrides(url, **{"data.cache_dir": str(tmp_path / "cache"), "data.timeout_s": TIMEOUT_S})
    server = _s3_with_data(port)
    try:
        run = HeldRun(tmp_path, run_dir, overrides)
        run.wait_for("step 2", lambda: (run_dir / "metrics.jsonl").exists()
                     and any(r.get("step", 0) >= 2 for r in read_records(run_dir / "metrics.jsonl")))
        os.kill(server.pid, signal.SIGKILL)  # the storage goes away; the shards read ahead run out
        server.wait()
        rc, _ = run.finish()
    finally:
        server.kill()
    last = run.stderr.strip().splitlines()[-1]
    assert rc == 2, run.stderr[-3000:]
    # streaming reports the dead endpoint as a failed read, or (its download thread stuck in retries) as no
    # batch within data.timeout_s: either is one line naming the data, with the finished steps saved
    assert last.startswith("hieratok train: data error: ") and f"MDS data {url}/train" in last, last
    assert "steps up to" in last and ("failed" in last or f"data.timeout_s={TIMEOUT_S}" in last), last
    stopped = latest_step(run_dir)
    logged = [r["step"] for r in read_records(run_dir / "metrics.jsonl") if "loss" in r]
    assert 2 <= stopped < 20 and f"step_{stopped:08d}" in last and stopped == logged[-1]  # every finished step

    server = _s3_with_data(port)  # the same shards (prepare is deterministic) back at the same URL
    try:
        proc = run_train(run_dir, overrides)
    finally:
        server.kill()
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["step"] == 20 and summary["export"]
    resumed = [r for r in read_records(run_dir / "metrics.jsonl") if r.get("event") == "resumed"]
    assert [r["step"] for r in resumed] == [stopped]
    by_step = keys_by_step(run_dir)
    assert sorted(by_step) == list(range(1, 21)) and all(len(keys) == 8 for keys in by_step.values())
    keys = [k for s in range(1, 21) for k in by_step[s]]
    assert len(set(keys)) == len(keys) == 160  # within one epoch: no sample twice, none lost
