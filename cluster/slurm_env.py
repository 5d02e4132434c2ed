"""torch.distributed's environment (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR,
MASTER_PORT) for the submitit task this process runs, so that the trainer runs under SLURM (or
submitit's local executor) exactly as under torchrun, with no torchrun.

submitit's `TorchDistributedEnvironment` computes them from the job's variables: the ranks from
SLURM_PROCID / SLURM_LOCALID / SLURM_NTASKS, MASTER_ADDR from the first host of SLURM_JOB_NODELIST
(its node-list parser agrees with `scontrol show hostnames`, tests/test_slurm_env.py), and a
MASTER_PORT drawn from the job id, so every task and every requeue of the job agrees on it. What it
does not cover is kept here: a SLURM variable that is missing is named (submitit would read a missing
rank as 0), and under the local executor the master is 127.0.0.1, since a container's host name need
not resolve.
"""
from __future__ import annotations

import os

SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_JOB_NODELIST", "SLURM_JOB_NUM_NODES", "SLURM_NTASKS", "SLURM_PROCID",
                   "SLURM_LOCALID")


def torch_env_for_submitit_job() -> dict[str, str]:
    import submitit

    local = submitit.JobEnvironment().cluster != "slurm"
    missing = [] if local else [v for v in SLURM_VARIABLES if v not in os.environ]
    if missing:
        raise KeyError(f"this SLURM task has no {', '.join(missing)} in its environment: was it started by srun?")
    env = submitit.helpers.TorchDistributedEnvironment()
    return {
        "RANK": str(env.rank),
        "LOCAL_RANK": str(env.local_rank),
        "WORLD_SIZE": str(env.world_size),
        "LOCAL_WORLD_SIZE": str(env.local_world_size),
        "MASTER_ADDR": "127.0.0.1" if local else env.master_addr,
        "MASTER_PORT": str(env.master_port),
    }
