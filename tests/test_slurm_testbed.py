"""cluster/slurm_testbed.sh: starting it again changes nothing, and accounting (slurmdbd) reports the
real state of finished jobs, which is what submitit reads through sacct."""
import subprocess

import pytest

from slurm_cluster import slurm_cluster, wait_for_final_state  # noqa: F401

pytestmark = pytest.mark.slurm


def test_starting_a_running_testbed_changes_nothing(slurm_cluster):
    out = subprocess.run(["bash", str(slurm_cluster), "start"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ready: node" in out.stdout
    assert "starting" not in out.stdout and "stopping" not in out.stdout


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
