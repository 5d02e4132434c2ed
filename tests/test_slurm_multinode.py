"""Two SLURM nodes on one machine (`cluster/slurm_testbed.sh start --nodes 2`, as .ci/run starts it).

* Equal to one node: 2 nodes x 1 task give exactly the loss trace, sample keys and exported weights
  of 1 node x 2 tasks, with DDP, FSDP2 and DeepSpeed ZeRO-2.
* A lost node: a job launched with `--nodes 1-2` loses one of its nodes mid-run (set DOWN, its
  slurmd and its task killed, as a power cut does); SLURM requeues it, it starts on the node left at
  world size 1, resumes from the last checkpoint and finishes, with every sample of every epoch seen
  exactly once and the global batch unchanged.
"""
import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slurm_cluster import (  # noqa: F401
    TESTBED, cluster_status, job_nodes, slurm_cluster, two_slurm_nodes, wait_for_final_state, wait_until)
from train_runs import REPO, TINY, assert_epoch_seen_once, exported, keys_by_step, losses, tiny_overrides
from hieratok.metrics_file import read_records

pytestmark = pytest.mark.slurm

BACKENDS = ["ddp", "fsdp", "deepspeed"]  # DeepSpeed at ZeRO-2 (tiny_overrides leaves dist.zero_stage at 2)
LAYOUTS = {"2x1": ("2", "1"), "1x2": ("1", "2")}  # nodes, tasks a node


def launch(run_dir: Path, nodes: str, tasks_per_node: str, overrides: list[str], wait: bool = False):
    """`hieratok launch --executor slurm`; without `wait` returns the job id, with it the live CLI."""
    command = [sys.executable, "-m", "hieratok", "launch", "--config", TINY, "--executor", "slurm",
               "--nodes", nodes, "--tasks-per-node", tasks_per_node, "--time", "10", "--run-dir", str(run_dir),
               *(["--wait"] if wait else []), *overrides]
    cli = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = cli.stdout.readline()
    match = re.match(r"submitted SLURM job (\d+) ", first)
    assert match, first + cli.communicate(timeout=120)[0]
    if not wait:
        assert cli.wait(timeout=120) == 0, cli.stdout.read()
    return match.group(1), cli


@pytest.fixture(scope="module")
def layouts(two_slurm_nodes, embedded_mds, tmp_path_factory):
    """{(backend, layout): (job id, run dir)}: all six jobs submitted at once, then waited for."""
    root = tmp_path_factory.mktemp("layouts")
    jobs = {}
    for backend in BACKENDS:
        for layout, (nodes, tasks) in LAYOUTS.items():
            run_dir = root / f"{backend}-{layout}"
            job_id, _ = launch(run_dir, nodes, tasks, tiny_overrides(embedded_mds, **{"dist.backend": backend}))
            jobs[backend, layout] = job_id, run_dir
    for job_id, _ in jobs.values():
        wait_for_final_state(job_id, timeout_s=900)
    return jobs


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_nodes_train_exactly_like_one(layouts, backend):
    (job_a, two_nodes), (job_b, one_node) = layouts[backend, "2x1"], layouts[backend, "1x2"]
    for job_id, run_dir in ((job_a, two_nodes), (job_b, one_node)):
        state = wait_for_final_state(job_id, timeout_s=60)
        assert state == "COMPLETED", (state, *(p.read_text()[-2000:] for p in (run_dir / "submitit").glob("*.err")))
    assert job_nodes(job_a) == ["testbed[1-2]"] and job_nodes(job_b) in (["testbed1"], ["testbed2"])
    assert len(losses(one_node)) == 20 and losses(two_nodes) == losses(one_node)  # identical, not close
    assert keys_by_step(two_nodes) == keys_by_step(one_node)
    a, b = exported(two_nodes), exported(one_node)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------------------
# a node lost mid-run

def _tasks_on(node: str) -> list[int]:
    """Pids of the job tasks that the testbed's node `node` runs (srun gives each SLURMD_NODENAME)."""
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if f"SLURMD_NODENAME={node}".encode() in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
    return pids


def lose_node(node: str) -> None:
    """What a power cut does, as SLURM sees it: the node's slurmd and tasks are gone, and it is DOWN (set
    at once rather than after SlurmdTimeout; set after the kill, or a last answer of its slurmd would
    return it to service)."""
    slurmd = subprocess.run(["pgrep", "-f", f"slurmd -N {node}$"], capture_output=True, text=True).stdout.split()
    for pid in [*map(int, slurmd), *_tasks_on(node)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    subprocess.run(["scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=test: node lost"], check=True)


@pytest.fixture
def node_restored(two_slurm_nodes):
    """Both nodes take jobs before the test; whatever it did to a node, the testbed has both up again after
    it, and no job of its left."""
    wait_until(lambda: cluster_status().returncode == 0, 120, "both SLURM nodes to take jobs")
    yield two_slurm_nodes
    subprocess.run(["scancel", "--jobname", "hieratok-run"], check=False)
    out = subprocess.run(["bash", str(TESTBED), "start", "--nodes", str(len(two_slurm_nodes))],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


MAX_STEPS = 60  # 3 epochs and a third of `embedded_mds` at global batch 8


def test_a_lost_node_requeues_the_job_onto_the_node_left(node_restored, embedded_mds, tmp_path):
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(embedded_mds, **{"dist.backend": "ddp", "train.max_steps": MAX_STEPS,
                                                "checkpoint.every_steps": 2})
    job_id, cli = launch(run_dir, "1-2", "1", overrides, wait=True)
    # the node is lost once the job has a checkpoint on two nodes: an event, and 50-odd steps from the end
    wait_until(lambda: (run_dir / "checkpoints" / "latest").exists(), 300, "the job's first checkpoint")
    lose_node("testbed2")
    output = cli.communicate(timeout=900)[0]

    assert cli.returncode == 0, output
    assert f"finished at step {MAX_STEPS} after 1 requeue(s)" in output, output
    assert job_nodes(job_id) == ["testbed[1-2]", "testbed1"]  # a start on both nodes, then one on the node left
    resumed = [e for e in read_records(run_dir / "metrics.jsonl") if e.get("event") == "resumed"]
    assert [(e["saved_world_size"], e["world_size"]) for e in resumed] == [(2, 1)], resumed
    assert 2 <= resumed[0]["step"] < MAX_STEPS, "the node must be lost mid-run"
    # the global batch is unchanged at world size 1, and the data elastic: each epoch seen exactly once
    by_step = keys_by_step(run_dir)
    assert sorted(by_step) == list(range(1, MAX_STEPS + 1)) and {len(k) for k in by_step.values()} == {8}
    assert_epoch_seen_once(run_dir, epochs=MAX_STEPS // 18)
