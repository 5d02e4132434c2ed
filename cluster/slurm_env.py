"""torch.distributed's environment (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR,
MASTER_PORT) for the submitit task this process runs, so that the trainer runs under SLURM (or
submitit's local executor) exactly as under torchrun, with no torchrun.

submitit's `TorchDistributedEnvironment` computes them from the job's variables: the ranks from
SLURM_PROCID / SLURM_LOCALID / SLURM_NTASKS, MASTER_ADDR from the first host of SLURM_JOB_NODELIST
(its node-list parser agrees with `scontrol show hostnames`, tests/test_slurm_env.py), and a
MASTER_PORT drawn from the job id, so every task and every requeue of the job agrees on it. What it
does not cover is kept here: a SLURM variable that is missing is named (submitit would read a missing
rank as 0), and under the local executor the master is 127.0.0.1, since a container's host name need
not resolve. The port is drawn from the job id as submitit does, but from 20000-32767 instead of
submitit's 20000-60000: that range holds Linux's ephemeral ports (32768-60999), which any outgoing
connection on the master's node may hold, and in CI one did (rank 0's store failed with EADDRINUSE
and rank 1 waited for it for the whole 30 min timeout). Below 20000 sit Ray's worker ports. A
MASTER_PORT the user exported wins.
"""
from __future__ import annotations

import os
import random

MASTER_PORTS = range(20000, 32768)  # below the ephemeral ports, above Ray's worker ports
SLURM_VARIABLES = ("SLURM_JOB_ID", "SLURM_JOB_NODELIST", "SLURM_JOB_NUM_NODES", "SLURM_NTASKS", "SLURM_PROCID",
                   "SLURM_LOCALID")


def torch_env_for_submitit_job() -> dict[str, str]:
    import submitit

    job = submitit.JobEnvironment()
    local = job.cluster != "slurm"
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
        "MASTER_PORT": os.environ.get("MASTER_PORT") or str(master_port_of_job(job.job_id)),
    }


def master_port_of_job(job_id: str) -> int:
    """The same port for every task and every requeue of a job; jobs sharing a node get different ones."""
    return random.Random(f"hieratok-master-port-{job_id}").choice(MASTER_PORTS)
