"""SLURM's environment -> torch.distributed's: node lists, ranks, a port every task agrees on."""
import shutil
import subprocess

import pytest

from slurm_cluster import skip_unless_required
from cluster.slurm_env import NodeListError, expand_nodelist, master_port, torch_env_from_slurm

NODE_LISTS = ["vm", "gpu[01-03,7],login-a", "n[1-2]-ib[0-1]", "a[8-11],b[001-002]", "x,y,z"]


@pytest.mark.parametrize("nodelist", NODE_LISTS)
def test_nodelist_expands_as_scontrol_does(nodelist):
    if shutil.which("scontrol") is None:
        skip_unless_required("scontrol not installed (cluster/slurm_testbed.sh installs it)")
    reference = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                               check=True).stdout.split()
    assert expand_nodelist(nodelist) == reference


def test_nodelist_expansion_without_scontrol():
    assert expand_nodelist("gpu[09-11],cpu3") == ["gpu09", "gpu10", "gpu11", "cpu3"]


@pytest.mark.parametrize("bad", ["gpu[1-", "gpu[a-b]", "gpu[3-1]", "gpu]1["])
def test_bad_nodelist_names_itself(bad):
    with pytest.raises(NodeListError, match="node list"):
        expand_nodelist(bad)


def test_torch_env_from_slurm_variables():
    env = torch_env_from_slurm({"SLURM_JOB_NODELIST": "node[04-05]", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
                                "SLURM_NTASKS": "4", "SLURM_JOB_ID": "1234"})
    assert env == {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "MASTER_ADDR": "node04",
                   "MASTER_PORT": str(master_port("1234"))}


def test_master_port_is_deterministic_and_outside_common_ranges():
    ports = {master_port(j) for j in range(100_000, 100_500)}
    assert master_port("777") == master_port(777)
    assert all(20000 <= p < 29000 for p in ports) and len(ports) == 500


def test_missing_slurm_variable_is_named():
    with pytest.raises(KeyError, match="SLURM_PROCID"):
        torch_env_from_slurm({"SLURM_JOB_NODELIST": "vm", "SLURM_JOB_ID": "1"})
