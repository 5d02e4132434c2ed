"""torch.distributed's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) from
the job's own, so that the trainer runs under SLURM exactly as under torchrun, with no torchrun.

Under SLURM: MASTER_ADDR is the first host of SLURM_JOB_NODELIST, the ranks are SLURM_PROCID,
SLURM_LOCALID and SLURM_NTASKS, and MASTER_PORT is derived from the job id (every task computes
the same one, and two jobs sharing a node rarely collide). Under submitit's local executor the same
numbers come from submitit's own variables.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping

PORT_BASE = 20000  # above Ray's worker ports (10002-19999), below torchrun's 29500
PORT_RANGE = 9000

_GROUP = re.compile(r"\[([^\]]*)\]")


class NodeListError(ValueError):
    pass


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM's compressed host list ("gpu[01-03,7],login-a,n[1-2]-ib") as host names, in order,
    as `scontrol show hostnames` prints them."""
    hosts: list[str] = []
    for item in _split_top_level(nodelist.strip()):
        hosts.extend(_expand_item(item, nodelist))
    return hosts


def _split_top_level(nodelist: str) -> list[str]:
    """Split on the commas that are outside brackets."""
    items, depth, start = [], 0, 0
    for i, c in enumerate(nodelist):
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
        elif c == "," and depth == 0:
            items.append(nodelist[start:i])
            start = i + 1
        if depth not in (0, 1):
            raise NodeListError(f"unbalanced brackets in node list '{nodelist}'")
    if depth != 0:
        raise NodeListError(f"unbalanced brackets in node list '{nodelist}'")
    items.append(nodelist[start:])
    return [item for item in items if item]


def _expand_item(item: str, nodelist: str) -> list[str]:
    names = [""]
    pos = 0
    for m in _GROUP.finditer(item):
        literal = item[pos:m.start()]
        values = _expand_ranges(m.group(1), nodelist)
        names = [n + literal + v for n in names for v in values]
        pos = m.end()
    return [n + item[pos:] for n in names]


def _expand_ranges(spec: str, nodelist: str) -> list[str]:
    values = []
    for part in spec.split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise NodeListError(f"bad range '{part}' in node list '{nodelist}'")
        if not sep:
            values.append(lo)
            continue
        if int(hi) < int(lo):
            raise NodeListError(f"descending range '{part}' in node list '{nodelist}'")
        width = len(lo)  # "01-10" keeps its zero padding
        values.extend(f"{n:0{width}d}" for n in range(int(lo), int(hi) + 1))
    return values


def master_port(job_id: str | int) -> int:
    """A port every task of a job derives alike from its job id (array elements have their own ids)."""
    digits = re.sub(r"\D", "", str(job_id))
    if not digits:
        raise ValueError(f"job id '{job_id}' holds no digits to derive a port from")
    return PORT_BASE + int(digits) % PORT_RANGE


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name)
    if value in (None, ""):
        raise KeyError(f"{name} is not set: not inside a SLURM task (run the job with srun / sbatch)")
    return value


def torch_env_from_slurm(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The torchrun-style variables for this SLURM task."""
    hosts = expand_nodelist(_required(environ, "SLURM_JOB_NODELIST"))
    return {
        "RANK": _required(environ, "SLURM_PROCID"),
        "LOCAL_RANK": _required(environ, "SLURM_LOCALID"),
        "WORLD_SIZE": _required(environ, "SLURM_NTASKS"),
        "MASTER_ADDR": hosts[0],
        "MASTER_PORT": str(master_port(_required(environ, "SLURM_JOB_ID"))),
    }


def torch_env_for_submitit_job() -> dict[str, str]:
    """The torchrun-style variables for the submitit task this process runs (SLURM or local)."""
    import submitit

    job = submitit.JobEnvironment()
    if job.cluster == "slurm":
        return torch_env_from_slurm()
    return {  # local executor: every task on this machine
        "RANK": str(job.global_rank),
        "LOCAL_RANK": str(job.local_rank),
        "WORLD_SIZE": str(job.num_tasks),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(master_port(job.raw_job_id)),
    }
