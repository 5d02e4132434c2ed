"""`prepare --out s3://...` for MDS against a real S3-compatible server on loopback (moto's server,
started here), read back with the stock StreamingDataset and with build_loader; a re-run skips
the finished parts."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_pipeline.prepare.pipeline import run_prepare
from data_pipeline.prepare.options import PrepareOptions

BUCKET = "hieratok-data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = _free_port()
    server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_DEFAULT_REGION")}
    os.environ.update(S3_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=url)
        deadline = time.time() + 60
        while True:
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:  # noqa: BLE001 - the server is still starting
                if time.time() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield client
    finally:
        proc.terminate()
        proc.wait(10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_mds_to_s3_reads_back_with_stock_and_our_loaders_and_resumes(s3_endpoint, tmp_path):
    url = f"s3://{BUCKET}/embedded"
    opts = PrepareOptions(src="embedded", out=url, format="mds", resolution=32, limit=48, samples_per_shard=8,
                          split_val=0.25, workers=2, progress=False)
    manifest = run_prepare(opts)
    assert manifest["splits"]["train"]["samples"] == 36 and manifest["splits"]["val"]["samples"] == 12
    listed = s3_endpoint.list_objects_v2(Bucket=BUCKET, Prefix="embedded/")["Contents"]
    names = {o["Key"] for o in listed}
    assert {"embedded/manifest.json", "embedded/train/index.json", "embedded/val/index.json"} <= names
    assert {f"embedded/{s['path']}" for s in manifest["splits"]["train"]["shards"]} <= names

    from streaming import StreamingDataset

    stock = StreamingDataset(remote=f"{url}/val", local=str(tmp_path / "stock_cache"), shuffle=False, batch_size=4)
    val_keys = {stock[i]["key"] for i in range(stock.num_samples)}
    assert len(val_keys) == 12 and stock[0]["image"].size == (32, 32)

    from data_pipeline import build_loader
    from data_pipeline.config import DataConfig

    cfg = DataConfig(path=url, format="mds", resolution=32, num_workers=0, cache_dir=str(tmp_path / "cache"))
    loader = build_loader(cfg, 0, 1, seed=0, batch_size=4)
    assert not loader.dataset._nothing_to_download()  # streaming's download threads stay on for a remote
    keys = [k for b in loader for k in b["key"]]
    assert len(keys) == 36 == len(set(keys)) and not set(keys) & val_keys

    stamps = {o["Key"]: o["LastModified"] for o in listed if o["Key"].endswith(".mds")}
    time.sleep(1.1)  # S3 timestamps have a resolution of one second
    assert run_prepare(opts) == manifest
    again = s3_endpoint.list_objects_v2(Bucket=BUCKET, Prefix="embedded/")["Contents"]
    assert {o["Key"]: o["LastModified"] for o in again if o["Key"].endswith(".mds")} == stamps
