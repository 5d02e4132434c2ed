"""SLURM's environment -> torch.distributed's, through submitit's own helpers: node lists expanded as
`scontrol` expands them, ranks, and a port every task of a job (and every requeue of it) agrees on."""
import shutil
import subprocess

import pytest

from slurm_cluster import skip_unless_required
from cluster.slurm_env import torch_env_for_submitit_job

NODE_LISTS = ["vm", "gpu[01-03,7],login-a", "n[1-2]-ib[0-1]", "a[8-11],b[001-002]", "x,y,z"]


def _slurm_task(monkeypatch, nodelist="node[04-05]", job_id="1234", procid="3", localid="1", ntasks="4", nodes="2"):
    monkeypatch.setenv("_TEST_CLUSTER_", "slurm")  # submitit's switch for naming the cluster in tests
    for key in ("MASTER_PORT", "MASTER_ADDR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {"SLURM_JOB_NODELIST": nodelist, "SLURM_JOB_ID": job_id, "SLURM_PROCID": procid,
                       "SLURM_LOCALID": localid, "SLURM_NTASKS": ntasks, "SLURM_JOB_NUM_NODES": nodes,
                       "SLURM_NODEID": "1"}.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("nodelist", NODE_LISTS)
def test_submitits_node_list_expands_as_scontrol_does(nodelist, monkeypatch):
    import submitit

    if shutil.which("scontrol") is None:
        skip_unless_required("scontrol not installed (cluster/slurm_testbed.sh installs it)")
    reference = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                               check=True).stdout.split()
    _slurm_task(monkeypatch, nodelist=nodelist)
    assert submitit.JobEnvironment().hostnames == reference
    assert torch_env_for_submitit_job()["MASTER_ADDR"] == reference[0]


def test_torch_env_of_a_slurm_task(monkeypatch):
    _slurm_task(monkeypatch)
    env = torch_env_for_submitit_job()
    port = env.pop("MASTER_PORT")
    assert env == {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "node04"}
    assert 20000 <= int(port) < 32768  # outside Linux's ephemeral ports, where a connection may hold it
    _slurm_task(monkeypatch, procid="0", localid="0")  # another task of the same job, or the job requeued
    assert torch_env_for_submitit_job()["MASTER_PORT"] == port
    _slurm_task(monkeypatch, job_id="1235")
    assert torch_env_for_submitit_job()["MASTER_PORT"] != port  # jobs sharing a node get their own
    monkeypatch.setenv("MASTER_PORT", "29123")  # the user's own choice
    assert torch_env_for_submitit_job()["MASTER_PORT"] == "29123"


def test_master_ports_stay_below_the_ephemeral_range_and_spread():
    from cluster.slurm_env import master_port_of_job

    ports = [master_port_of_job(str(job)) for job in range(1000, 3000)]
    assert min(ports) >= 20000 and max(ports) < 32768
    assert len(set(ports)) > 1800  # 2000 jobs: few share a port


def test_a_missing_slurm_variable_is_named(monkeypatch):
    _slurm_task(monkeypatch)
    monkeypatch.delenv("SLURM_PROCID")
    with pytest.raises(KeyError, match="SLURM_PROCID"):
        torch_env_for_submitit_job()
