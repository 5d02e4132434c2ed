"""Sample accounting with real processes: one MDS epoch read by 2 gloo processes up to a mid-epoch
stop, then resumed by 1 process. Every key is seen exactly once, each global step holds the samples
a single process accumulating 2 micro-batches would read, and a sample gets the same pixels
whichever rank reads it."""
import hashlib
import json
import multiprocessing as mp
import os
import socket

import torch
import torch.distributed as dist

from data_pipeline import build_loader
from data_pipeline.config import DataConfig

MICRO, STOP, SEED = 4, 7, 11


def _cfg(path):
    return DataConfig(path=str(path), format="mds", resolution=32, num_workers=1)


def _digest(image: torch.Tensor) -> str:
    return hashlib.sha1(image.numpy().tobytes()).hexdigest()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank, world, port, path, out, state_in):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    for k in ("LOCAL_RANK", "LOCAL_WORLD_SIZE"):  # like torch.multiprocessing.spawn: build_loader derives them
        os.environ.pop(k, None)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    loader = build_loader(_cfg(path), rank, world, SEED, batch_size=MICRO)
    if state_in is not None:
        loader.load_state_dict(json.loads(state_in.read_text()))
    steps = []
    for i, batch in enumerate(loader):
        steps.append({k: _digest(img) for k, img in zip(batch["key"], batch["image"])})
        if state_in is None and i + 1 == STOP:
            break
    (out / f"rank{rank}.json").write_text(json.dumps({"steps": steps, "state": loader.state_dict()}))
    dist.barrier()
    dist.destroy_process_group()


def _run(world, path, out, state_in=None):
    out.mkdir()
    ctx, port = mp.get_context("fork"), _free_port()
    procs = [ctx.Process(target=_rank_main, args=(r, world, port, path, out, state_in)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
        if p.is_alive():
            p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]


def test_two_process_stop_then_one_process_resume_sees_every_key_once(embedded_mds, tmp_path):
    two = _run(2, embedded_mds, tmp_path / "two")
    assert two[0]["state"] == two[1]["state"] and two[0]["state"]["sample_in_epoch"] == STOP * 2 * MICRO
    (tmp_path / "state.json").write_text(json.dumps(two[0]["state"]))
    one = _run(1, embedded_mds, tmp_path / "one", state_in=tmp_path / "state.json")

    before = [k for r in two for step in r["steps"] for k in step]
    after = [k for step in one[0]["steps"] for k in step]
    assert len(before) + len(after) == 144 == len(set(before) | set(after))

    # the same global steps as one process accumulating 2 micro-batches, with the same pixels
    single = build_loader(_cfg(embedded_mds), 0, 1, SEED, batch_size=MICRO)
    micro = [{k: _digest(img) for k, img in zip(b["key"], b["image"])} for b in single]
    reference = [{**micro[2 * s], **micro[2 * s + 1]} for s in range(len(micro) // 2)]
    distributed = [{**two[0]["steps"][s], **two[1]["steps"][s]} for s in range(STOP)]
    resumed = [{**one[0]["steps"][2 * s], **one[0]["steps"][2 * s + 1]} for s in range(len(one[0]["steps"]) // 2)]
    assert distributed + resumed == reference
