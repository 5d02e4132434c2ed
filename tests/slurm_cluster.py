"""The SLURM testbed as the tests see it: fixtures that skip (saying why) when it is not running, or
has fewer nodes than a test needs, and waits on job states as `sacct` reports them. `.ci/run` starts
the testbed with 2 nodes, so in CI these tests run. Test files import the fixtures:
`from slurm_cluster import slurm_cluster, two_slurm_nodes`."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

TESTBED = Path(__file__).resolve().parents[1] / "cluster" / "slurm_testbed.sh"
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                "BOOT_FAIL", "DEADLINE"}


def skip_unless_required(reason: str) -> None:
    """Skip, saying why; where HIERATOK_REQUIRE_SLURM=1 (.ci/run sets it) fail instead, so that CI can
    never go green by skipping its SLURM tests."""
    if os.environ.get("HIERATOK_REQUIRE_SLURM") == "1":
        pytest.fail(f"HIERATOK_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster():
    if shutil.which("sbatch") is None:
        skip_unless_required("SLURM is not installed; start the testbed with `sudo cluster/slurm_testbed.sh` "
                             "(.ci/run does this)")
    status = cluster_status()
    if status.returncode != 0:
        said = "; ".join((status.stdout.strip() or status.stderr.strip()).splitlines())
        skip_unless_required(f"the SLURM testbed is not running ({said}); start it with "
                             f"`sudo cluster/slurm_testbed.sh`")
    return TESTBED


@pytest.fixture(scope="session")
def two_slurm_nodes(slurm_cluster):
    nodes = slurm_node_names()
    if len(nodes) < 2:
        skip_unless_required(f"the SLURM testbed has {len(nodes)} node(s) ({nodes}); multi-node tests need 2: "
                             f"`sudo cluster/slurm_testbed.sh start --nodes 2`")
    return nodes


def slurm_node_names() -> list[str]:
    """The testbed's node names, as SLURM knows them (testbed1, testbed2, ...)."""
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, check=True, timeout=60)
    return sorted(set(out.stdout.split()))


def cluster_status() -> subprocess.CompletedProcess:
    """`slurm_testbed.sh status`: a line a daemon, then 'up: ...' (exit 0) or 'not ready: ...'."""
    return subprocess.run(["bash", str(TESTBED), "status"], capture_output=True, text=True, timeout=120)


def daemon_lines(status_stdout: str) -> dict[str, str]:
    """{daemon: its line} from the status output, e.g. {'munged': 'munged: running (pid 12)', ...}."""
    return {line.split(":")[0]: line for line in status_stdout.splitlines()
            if line.split(":")[0] in ("munged", "mariadb", "slurmdbd", "slurmctld", "slurmd")}


def job_nodes(job_id: str) -> list[str]:
    """The nodes of each start of the job (a requeue starts it again), as sacct writes them: 'testbed1',
    'testbed[1-2]'."""
    return subprocess.run(["sacct", "--duplicates", "-n", "-X", "-P", "-j", str(job_id), "-o", "NodeList"],
                          capture_output=True, text=True, check=True).stdout.split()


def job_state(job_id: str) -> str:
    """The job's state from accounting, e.g. RUNNING, PENDING, REQUEUED, COMPLETED ('' until known)."""
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "State"],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0].split()[0] if out else ""


def wait_until(predicate, timeout_s: float, what: str, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"gave up after {timeout_s:.0f} s waiting for {what}")


def wait_for_final_state(job_id: str, timeout_s: float = 240) -> str:
    return wait_until(lambda: (s := job_state(job_id)) in FINAL_STATES and s, timeout_s,
                      f"SLURM job {job_id} to finish")
