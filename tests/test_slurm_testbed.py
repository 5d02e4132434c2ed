"""cluster/slurm_testbed.sh: starting it again changes nothing, accounting (slurmdbd) reports the real
state of finished jobs, which is what submitit reads through sacct, and `stop` stops every daemon it
started while `status` says which ones still run. The stop test starts the testbed again and waits
for its status to say so: the tests after it need the cluster that .ci/run started."""
import os
import subprocess
from pathlib import Path

import pytest

from slurm_cluster import (  # noqa: F401
    TESTBED, cluster_status, daemon_lines, skip_unless_required, slurm_cluster, slurm_node_names, wait_for_final_state,
    wait_until)

pytestmark = pytest.mark.slurm

# Each daemon of the testbed and the process names that are it (MariaDB's server and its wrapper).
PROCESS_NAMES = {"munged": {"munged"}, "mariadb": {"mariadbd", "mysqld", "mysqld_safe"},
                 "slurmdbd": {"slurmdbd"}, "slurmctld": {"slurmctld", "slurmscriptd"}, "slurmd": {"slurmd"}}


def live_processes(names: set[str]) -> list[int]:
    """Pids of the processes with these names, zombies left out (as the script sees them, independently)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            line = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        comm, state = line[line.index("(") + 1:line.rindex(")")], line[line.rindex(")") + 2:].split()[0]
        if comm in names and state != "Z":
            pids.append(int(stat.parent.name))
    return pids


HOSTS_MARK = "# hieratok slurm testbed"


def start_command(nodes: int) -> list[str]:
    return ["bash", str(TESTBED), "start", "--nodes", str(nodes)]


def hosts_lines() -> list[str]:
    return [line for line in Path("/etc/hosts").read_text().splitlines() if line.endswith(HOSTS_MARK)]


def nodes_idle(nodes: list[str]) -> bool:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], capture_output=True, text=True, timeout=60).stdout
    states = dict(line.split() for line in out.splitlines() if line.strip())
    return all(states.get(n) == "idle" for n in nodes)


def test_starting_a_running_testbed_changes_nothing(slurm_cluster):
    nodes = slurm_node_names()
    # the previous test's job may still be COMPLETING (its processes exiting) on a node
    wait_until(lambda: nodes_idle(nodes), 300, f"nodes {nodes} to be idle")
    out = subprocess.run(start_command(len(nodes)), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ready: node(s) " + " ".join(f"{n} idle" for n in nodes) in out.stdout, out.stdout
    assert "starting" not in out.stdout and "stopping" not in out.stdout
    # the node names resolve as a cluster's do: one /etc/hosts line, to this machine
    assert hosts_lines() == [f"127.0.0.1 {' '.join(nodes)} {HOSTS_MARK}"]


def test_a_bad_node_count_is_named():
    out = subprocess.run(["bash", str(TESTBED), "start", "--nodes", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "start takes --nodes N (N >= 1), got: --nodes 0" in out.stderr, out.stderr


def test_sacct_reports_finished_job_states(slurm_cluster, tmp_path):
    def submit(command: str) -> str:
        return subprocess.run(["sbatch", "--parsable", f"--output={tmp_path}/%j.out", "--wrap", command],
                              capture_output=True, text=True, check=True).stdout.strip()

    ok, failing = submit("true"), submit("exit 3")
    assert wait_for_final_state(ok, timeout_s=60) == "COMPLETED"
    assert wait_for_final_state(failing, timeout_s=60) == "FAILED"
    exit_code = subprocess.run(["sacct", "-n", "-X", "-P", "-j", failing, "-o", "ExitCode"],
                               capture_output=True, text=True, check=True).stdout.strip()
    assert exit_code == "3:0"


@pytest.fixture
def testbed_started_again(slurm_cluster):
    """Whatever the test did to the testbed, the tests after it find it up: start it again, then poll
    its status until it says up (the start waits for the node already; this is what the tests see)."""
    if os.geteuid() != 0:
        skip_unless_required("stopping and starting the testbed's daemons needs root (CI runs as root)")
    nodes = len(slurm_node_names())
    yield slurm_cluster
    out = subprocess.run(start_command(nodes), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    wait_until(lambda: cluster_status().returncode == 0, 120, "the restarted SLURM testbed to say it is up")


def test_stop_stops_every_daemon_it_started_and_status_says_which_still_run(testbed_started_again):
    before = cluster_status()
    lines = daemon_lines(before.stdout)
    assert before.returncode == 0 and set(lines) == set(PROCESS_NAMES), before.stdout
    assert all(": running (pid " in line for line in lines.values()), before.stdout
    # on a clean machine (CI) the testbed started all five; munged or MariaDB that ran before it are not its to stop
    ours = {d for d, line in lines.items() if "not started by this script" not in line}
    assert {"slurmdbd", "slurmctld", "slurmd"} <= ours

    stop = subprocess.run(["bash", str(testbed_started_again), "stop"], capture_output=True, text=True, timeout=300)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    for daemon in ours:
        assert f"stopping {daemon} (pid " in stop.stdout, stop.stdout

    after = cluster_status()
    assert after.returncode != 0 and after.stdout.splitlines()[-1] == "not ready: slurmctld does not answer", after.stdout
    assert hosts_lines() == [], "stop leaves the nodes' /etc/hosts line behind"
    after_lines = daemon_lines(after.stdout)
    for daemon, names in PROCESS_NAMES.items():
        if daemon in ours:
            assert after_lines[daemon] == f"{daemon}: stopped", after.stdout
            assert live_processes(names) == [], f"{daemon} still runs after stop:\n{stop.stdout}"
        else:  # left running, and said so
            assert after_lines[daemon].startswith(f"{daemon}: running (pid "), after.stdout
            assert "not started by this script" in after_lines[daemon], after.stdout
